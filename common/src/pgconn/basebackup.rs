//! BASE_BACKUP: the command in the syntax of the server's major (keywords for 13-14,
//! parenthesised options with `TARGET 'client'` for 15+), and [`BaseBackupStream`], which
//! turns either wire shape into one typed event stream.
//!
//! Wire shapes (basebackup.c, basebackup_copy.c):
//! - PG13-14: result set (start LSN, TLI), result set (tablespaces, main directory last), then
//!   one CopyOutResponse ... CopyDone per tablespace in row order carrying a raw tar, then one
//!   more for the manifest when requested, then the end result set.
//! - PG15+ with `TARGET 'client'`: the same result sets, but a single COPY whose CopyData
//!   bodies start with a type byte: `n` (new archive: name, tablespace path), `d` (data),
//!   `p` (progress: bytes so far), `m` (the manifest follows as `d` chunks).

use bytes::{Buf, Bytes};

use super::client::ReplicationClient;
use super::copy::{CopyOutEvent, CopyOutStream};
use super::error::PgConnError;
use super::query::ResultSet;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// Options of a BASE_BACKUP; [`BaseBackupOptions::command`] renders them for a major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupOptions {
    /// The backup label (written into `backup_label`).
    pub label: String,
    /// Ask the server to estimate sizes (tablespace sizes; PG15+ progress messages).
    pub progress: bool,
    /// Request an immediate checkpoint instead of a spread one.
    pub fast_checkpoint: bool,
    /// Include the WAL needed for consistency in the main archive.
    pub wal: bool,
    /// Wait for the WAL to be archived before ending (false = libpq's NOWAIT).
    pub wait_for_wal_archive: bool,
    /// Rate limit in kB/s.
    pub max_rate_kb: Option<u32>,
    /// Send `tablespace_map` instead of symbolic links for tablespaces.
    pub tablespace_map: bool,
    /// Verify data checksums while reading (server default: on).
    pub verify_checksums: bool,
    /// Ask for a backup manifest.
    pub manifest: bool,
    /// The manifest's file checksum algorithm (`CRC32C`, `SHA256`, ...); `None` = server default.
    pub manifest_checksums: Option<String>,
    /// `INCREMENTAL` (PG17+): an incremental backup against the manifest uploaded earlier in
    /// the session with [`ReplicationClient::upload_manifest`].
    pub incremental: bool,
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        BaseBackupOptions {
            label: "walship base backup".to_string(),
            progress: false,
            fast_checkpoint: false,
            wal: false,
            wait_for_wal_archive: true,
            max_rate_kb: None,
            tablespace_map: false,
            verify_checksums: true,
            manifest: true,
            manifest_checksums: None,
            incremental: false,
        }
    }
}

/// A string literal for a replication command (single quotes doubled).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl BaseBackupOptions {
    /// The BASE_BACKUP command for a server of `major` version.
    pub fn command(&self, major: u32) -> String {
        let mut opts: Vec<String> = vec![format!("LABEL {}", quote(&self.label))];
        let new = major >= 15;
        if self.progress {
            opts.push("PROGRESS".into());
        }
        if self.fast_checkpoint {
            opts.push(if new { "CHECKPOINT 'fast'" } else { "FAST" }.into());
        }
        if self.wal {
            opts.push("WAL".into());
        }
        if !self.wait_for_wal_archive {
            opts.push(if new { "WAIT false" } else { "NOWAIT" }.into());
        }
        if let Some(rate) = self.max_rate_kb {
            opts.push(format!("MAX_RATE {rate}"));
        }
        if self.tablespace_map {
            opts.push("TABLESPACE_MAP".into());
        }
        if !self.verify_checksums {
            opts.push(
                if new {
                    "VERIFY_CHECKSUMS false"
                } else {
                    "NOVERIFY_CHECKSUMS"
                }
                .into(),
            );
        }
        if self.manifest {
            opts.push("MANIFEST 'yes'".into());
            if let Some(alg) = &self.manifest_checksums {
                opts.push(format!("MANIFEST_CHECKSUMS {}", quote(alg)));
            }
        } else if major >= 13 {
            opts.push("MANIFEST 'no'".into());
        }
        if self.incremental {
            opts.push("INCREMENTAL".into());
        }
        if new {
            opts.push("TARGET 'client'".into());
            format!("BASE_BACKUP ({})", opts.join(", "))
        } else {
            format!("BASE_BACKUP {}", opts.join(" "))
        }
    }
}

/// One row of the tablespace result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceInfo {
    /// The tablespace OID; `None` for the main data directory.
    pub oid: Option<u32>,
    /// The tablespace directory on the server; `None` for the main data directory.
    pub location: Option<String>,
    /// Estimated size in kB (only with PROGRESS).
    pub size_kb: Option<i64>,
}

/// One step of a base backup, the same for every major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupEvent {
    /// The backup started at `lsn` on `timeline` (the checkpoint's redo point).
    Started {
        /// Start LSN.
        lsn: Lsn,
        /// Start timeline.
        timeline: TimelineId,
    },
    /// The tablespaces, main data directory last.
    Tablespaces(Vec<TablespaceInfo>),
    /// A new tar archive begins: `base.tar` or `<oid>.tar`; `tablespace_path` is empty for
    /// the main data directory.
    ArchiveStart {
        /// Archive file name.
        name: String,
        /// The tablespace's server directory ("" for the main directory).
        tablespace_path: String,
    },
    /// A chunk of the current archive.
    Data(Bytes),
    /// Archive bytes sent so far (with PROGRESS; reported by PG15+, counted for PG13-14).
    Progress(u64),
    /// A chunk of the backup manifest.
    Manifest(Bytes),
    /// The backup ended at `lsn` on `timeline`.
    End {
        /// End LSN.
        lsn: Lsn,
        /// End timeline.
        timeline: TimelineId,
    },
}

/// Where the stream is in the server's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first COPY.
    Header,
    /// Inside a legacy per-tablespace COPY (index into the tablespace list).
    LegacyArchive,
    /// Inside the legacy manifest COPY.
    LegacyManifest,
    /// Inside the PG15+ single COPY, current content an archive.
    NewArchive,
    /// Inside the PG15+ single COPY, after `m`.
    NewManifest,
    /// After the COPY(s).
    Trailer,
}

/// A BASE_BACKUP in progress as typed events; borrows the client until it ends.
#[derive(Debug)]
pub struct BaseBackupStream<'a> {
    copy: CopyOutStream<'a>,
    tablespaces: Vec<TablespaceInfo>,
    copies_seen: usize,
    phase: Phase,
    multiplexed: bool,
    endpoint: String,
    /// PG13-14 send no progress messages: with PROGRESS, archive bytes are counted here and a
    /// [`BackupEvent::Progress`] follows each data chunk, as PG15+ would report.
    legacy_progress: Option<u64>,
    pending: Option<BackupEvent>,
}

impl ReplicationClient {
    /// Starts a BASE_BACKUP with `options` in the syntax of this server's major.
    pub async fn base_backup(
        &mut self,
        options: &BaseBackupOptions,
    ) -> Result<BaseBackupStream<'_>, PgConnError> {
        let major = self.server_major();
        let command = options.command(major);
        let endpoint = self.endpoint.clone();
        let copy = self.copy_out(&command).await?;
        Ok(BaseBackupStream {
            copy,
            tablespaces: Vec::new(),
            copies_seen: 0,
            phase: Phase::Header,
            multiplexed: major >= 15,
            endpoint,
            legacy_progress: (options.progress && major < 15).then_some(0),
            pending: None,
        })
    }
}

impl BaseBackupStream<'_> {
    /// The next event, or `None` when the backup is complete and the connection is ready.
    pub async fn next_event(&mut self) -> Result<Option<BackupEvent>, PgConnError> {
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        loop {
            let Some(event) = self.copy.next_event().await? else {
                return Ok(None);
            };
            let mapped = match event {
                CopyOutEvent::ResultSet(set) => Some(self.result_set(&set)?),
                CopyOutEvent::CopyStart => self.copy_start()?,
                CopyOutEvent::Data(body) => self.data(body)?,
                CopyOutEvent::CopyEnd => {
                    self.phase = Phase::Trailer;
                    None
                }
            };
            if let Some(event) = mapped {
                return Ok(Some(event));
            }
        }
    }

    fn result_set(&mut self, set: &ResultSet) -> Result<BackupEvent, PgConnError> {
        let bad =
            |what: &str| self.copy_client_error(format!("malformed {what} result set: {set:?}"));
        if set.columns.len() == 3 && self.phase == Phase::Header {
            let mut rows = Vec::with_capacity(set.rows.len());
            for r in 0..set.rows.len() {
                rows.push(TablespaceInfo {
                    oid: set
                        .text(r, 0)
                        .map(|t| t.parse())
                        .transpose()
                        .map_err(|_| bad("tablespace"))?,
                    location: set.text(r, 1).map(str::to_string),
                    size_kb: set
                        .text(r, 2)
                        .map(|t| t.parse())
                        .transpose()
                        .map_err(|_| bad("tablespace"))?,
                });
            }
            self.tablespaces = rows.clone();
            return Ok(BackupEvent::Tablespaces(rows));
        }
        let lsn = set.text(0, 0).and_then(|t| t.parse::<Lsn>().ok());
        let tli = set.text(0, 1).and_then(|t| t.parse::<u32>().ok());
        let (Some(lsn), Some(tli)) = (lsn, tli) else {
            return Err(bad("position"));
        };
        let timeline = TimelineId(tli);
        Ok(if self.phase == Phase::Header {
            BackupEvent::Started { lsn, timeline }
        } else {
            BackupEvent::End { lsn, timeline }
        })
    }

    fn copy_start(&mut self) -> Result<Option<BackupEvent>, PgConnError> {
        let index = self.copies_seen;
        self.copies_seen += 1;
        if self.multiplexed {
            self.phase = Phase::NewArchive;
            return Ok(None);
        }
        match self.tablespaces.get(index) {
            Some(ts) => {
                self.phase = Phase::LegacyArchive;
                Ok(Some(BackupEvent::ArchiveStart {
                    name: ts
                        .oid
                        .map_or_else(|| "base.tar".to_string(), |oid| format!("{oid}.tar")),
                    tablespace_path: ts.location.clone().unwrap_or_default(),
                }))
            }
            None if index == self.tablespaces.len() => {
                self.phase = Phase::LegacyManifest;
                Ok(None)
            }
            None => Err(self.copy_client_error(format!(
                "COPY stream {} but only {} tablespaces",
                index + 1,
                self.tablespaces.len()
            ))),
        }
    }

    fn data(&mut self, mut body: Bytes) -> Result<Option<BackupEvent>, PgConnError> {
        match self.phase {
            Phase::LegacyArchive => {
                if let Some(done) = self.legacy_progress.as_mut() {
                    *done += body.len() as u64;
                    self.pending = Some(BackupEvent::Progress(*done));
                }
                return Ok(Some(BackupEvent::Data(body)));
            }
            Phase::LegacyManifest => return Ok(Some(BackupEvent::Manifest(body))),
            Phase::NewArchive | Phase::NewManifest => {}
            Phase::Header | Phase::Trailer => {
                return Err(self.copy_client_error("CopyData outside a COPY".to_string()));
            }
        }
        let Some(&kind) = body.first() else {
            return Err(self.copy_client_error("empty CopyData".to_string()));
        };
        body.advance(1);
        match kind {
            b'n' => {
                let name = take_cstr(&mut body);
                let path = take_cstr(&mut body);
                match (name, path) {
                    (Some(name), Some(tablespace_path)) => {
                        self.phase = Phase::NewArchive;
                        Ok(Some(BackupEvent::ArchiveStart {
                            name,
                            tablespace_path,
                        }))
                    }
                    _ => {
                        Err(self
                            .copy_client_error("malformed 'n' (new archive) message".to_string()))
                    }
                }
            }
            b'd' if self.phase == Phase::NewManifest => Ok(Some(BackupEvent::Manifest(body))),
            b'd' => Ok(Some(BackupEvent::Data(body))),
            b'p' if body.len() == 8 => Ok(Some(BackupEvent::Progress(body.get_u64()))),
            b'm' => {
                self.phase = Phase::NewManifest;
                Ok(None)
            }
            other => {
                Err(self
                    .copy_client_error(format!("unknown BASE_BACKUP message type {other:#04x}")))
            }
        }
    }

    fn copy_client_error(&self, message: String) -> PgConnError {
        PgConnError::Protocol {
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}

/// A NUL-terminated UTF-8 string off the front of `buf`.
fn take_cstr(buf: &mut Bytes) -> Option<String> {
    let end = buf.iter().position(|b| *b == 0)?;
    let s = String::from_utf8(buf.split_to(end).to_vec()).ok()?;
    buf.advance(1);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_syntax_by_major() {
        let opts = BaseBackupOptions {
            label: "it's".into(),
            progress: true,
            fast_checkpoint: true,
            wal: true,
            wait_for_wal_archive: false,
            max_rate_kb: Some(1024),
            tablespace_map: true,
            verify_checksums: false,
            manifest: true,
            manifest_checksums: Some("CRC32C".into()),
            incremental: false,
        };
        assert_eq!(
            opts.command(14),
            "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT MAX_RATE 1024 TABLESPACE_MAP \
             NOVERIFY_CHECKSUMS MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"
        );
        assert_eq!(
            opts.command(15),
            "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAL, WAIT false, MAX_RATE 1024, \
             TABLESPACE_MAP, VERIFY_CHECKSUMS false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client')"
        );
        let plain = BaseBackupOptions {
            manifest: false,
            ..BaseBackupOptions::default()
        };
        assert_eq!(
            plain.command(13),
            "BASE_BACKUP LABEL 'walship base backup' MANIFEST 'no'"
        );
    }

    #[test]
    fn cstrings() {
        let mut b = Bytes::from_static(b"base.tar\0\0rest");
        assert_eq!(take_cstr(&mut b).as_deref(), Some("base.tar"));
        assert_eq!(take_cstr(&mut b).as_deref(), Some(""));
        assert_eq!(&b[..], b"rest");
        assert_eq!(take_cstr(&mut b), None);
    }
}
