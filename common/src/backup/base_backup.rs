//! The `BASE_BACKUP` replication command: building it in the syntax of the server's major
//! version ([`base_backup_command`]), and turning its COPY OUT output into
//! [`BackupEvent`]s ([`FrameDecoder`]), for both framings:
//!
//! - legacy (PG 13-14): one CopyOut stream of raw tar per tablespace, in the order of the
//!   tablespace result set (main directory last), then one more carrying `backup_manifest`;
//! - new (PG 15+ with `TARGET 'client'`): one CopyOut stream whose CopyData bodies start
//!   with a type byte: `n` new archive (name, tablespace path), `d` data, `p` progress,
//!   `m` the manifest follows (as `d` messages).
//!
//! The decoder works on [`CopyFrame`]s, the protocol client's COPY OUT events stripped to
//! what matters here, so it is tested without a server.

use bytes::{Buf, Bytes};

use crate::catalog::TablespaceInfo;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

use super::error::BackupError;
use super::event::BackupEvent;

/// `CHECKPOINT 'fast'` or `'spread'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoint {
    /// Request an immediate checkpoint.
    Fast,
    /// Wait for the next spread checkpoint (the server's default).
    #[default]
    Spread,
}

/// Options of the `BASE_BACKUP` command walship sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupOptions {
    /// `LABEL`.
    pub label: String,
    /// `FAST` / `CHECKPOINT`.
    pub checkpoint: Checkpoint,
    /// `MAX_RATE` in kB/s (32..=1048576), if limited.
    pub max_rate_kb: Option<u32>,
}

/// Why a `BASE_BACKUP` cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The server is older than PostgreSQL 13 (no backup manifests).
    #[error("PostgreSQL {0} is not supported: walship needs 13 or newer")]
    TooOld(u32),
    /// `MAX_RATE` out of the server's range.
    #[error("max rate {0} kB/s is out of the server's range 32..=1048576")]
    BadRate(u32),
    /// A label with a character the replication grammar cannot carry.
    #[error("backup label {0:?} contains a NUL or newline")]
    BadLabel(String),
}

/// The `BASE_BACKUP` command for a server of major version `major`: the keyword syntax for
/// 13-14, the parenthesised one with `TARGET 'client'` for 15+. Always asks for progress,
/// the tablespace map, a manifest with CRC32C checksums, and no server-side wait for WAL
/// archiving (walship waits itself, bounded, and checks its own repository).
pub fn base_backup_command(major: u32, opts: &BaseBackupOptions) -> Result<String, CommandError> {
    if major < 13 {
        return Err(CommandError::TooOld(major));
    }
    if opts.label.contains(['\0', '\n', '\r']) {
        return Err(CommandError::BadLabel(opts.label.clone()));
    }
    if let Some(rate) = opts.max_rate_kb
        && !(32..=1_048_576).contains(&rate)
    {
        return Err(CommandError::BadRate(rate));
    }
    let label = format!("'{}'", opts.label.replace('\'', "''"));
    let fast = opts.checkpoint == Checkpoint::Fast;
    if major <= 14 {
        let mut cmd = format!("BASE_BACKUP LABEL {label} PROGRESS");
        if fast {
            cmd.push_str(" FAST");
        }
        cmd.push_str(" NOWAIT");
        if let Some(rate) = opts.max_rate_kb {
            cmd.push_str(&format!(" MAX_RATE {rate}"));
        }
        cmd.push_str(" TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'");
        return Ok(cmd);
    }
    let mut parts = vec![format!("LABEL {label}"), "PROGRESS".to_string()];
    parts.push(format!(
        "CHECKPOINT '{}'",
        if fast { "fast" } else { "spread" }
    ));
    parts.push("WAIT false".to_string());
    if let Some(rate) = opts.max_rate_kb {
        parts.push(format!("MAX_RATE {rate}"));
    }
    parts.extend(
        [
            "TABLESPACE_MAP",
            "MANIFEST 'yes'",
            "MANIFEST_CHECKSUMS 'CRC32C'",
            "TARGET 'client'",
        ]
        .map(String::from),
    );
    Ok(format!("BASE_BACKUP ({})", parts.join(", ")))
}

/// One COPY OUT event of the protocol client, reduced to what the decoder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrame {
    /// A result set's rows (text values; `None` = NULL).
    Rows(Vec<Vec<Option<String>>>),
    /// CopyOutResponse.
    CopyStart,
    /// One CopyData body.
    Data(Bytes),
    /// CopyDone.
    CopyEnd,
}

/// Which framing the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One CopyOut per tablespace, then one for the manifest (13-14).
    Legacy,
    /// One CopyOut with typed messages (15+ with `TARGET 'client'`).
    Typed,
}

impl Framing {
    /// The framing a server of `major` uses for [`base_backup_command`]'s command.
    pub fn for_major(major: u32) -> Framing {
        if major >= 15 {
            Framing::Typed
        } else {
            Framing::Legacy
        }
    }
}

/// Turns [`CopyFrame`]s into [`BackupEvent`]s; see the module doc.
#[derive(Debug)]
pub struct FrameDecoder {
    framing: Framing,
    result_sets: usize,
    /// Legacy: archives expected, in order (tablespaces then main = `None`).
    order: Vec<Option<u32>>,
    copies: usize,
    in_archive: bool,
    in_manifest: bool,
}

impl FrameDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> FrameDecoder {
        FrameDecoder {
            framing,
            result_sets: 0,
            order: Vec::new(),
            copies: 0,
            in_archive: false,
            in_manifest: false,
        }
    }

    /// The events `frame` stands for (none, one, or two when a new archive ends the last).
    pub fn decode(&mut self, frame: CopyFrame) -> Result<Vec<BackupEvent>, BackupError> {
        match frame {
            CopyFrame::Rows(rows) => self.rows(rows),
            CopyFrame::CopyStart => self.copy_start(),
            CopyFrame::Data(body) => self.data(body),
            CopyFrame::CopyEnd => Ok(self.end_current()),
        }
    }

    fn rows(&mut self, rows: Vec<Vec<Option<String>>>) -> Result<Vec<BackupEvent>, BackupError> {
        self.result_sets += 1;
        match self.result_sets {
            1 => {
                let (start_lsn, timeline) = position(&rows, "start")?;
                Ok(vec![BackupEvent::Started {
                    start_lsn,
                    timeline,
                }])
            }
            2 => {
                let mut tablespaces = Vec::new();
                let mut estimated: Option<u64> = None;
                for row in &rows {
                    let cell = |i: usize| row.get(i).cloned().flatten();
                    if let Some(kb) = cell(2).and_then(|s| s.parse::<u64>().ok()) {
                        *estimated.get_or_insert(0) += kb * 1024;
                    }
                    match cell(0) {
                        None => self.order.push(None),
                        Some(oid) => {
                            let oid: u32 = oid.parse().map_err(|_| {
                                BackupError::Protocol(format!("tablespace oid {oid:?}"))
                            })?;
                            self.order.push(Some(oid));
                            tablespaces.push(TablespaceInfo {
                                oid,
                                location: cell(1).unwrap_or_default(),
                            });
                        }
                    }
                }
                Ok(vec![BackupEvent::Tablespaces {
                    tablespaces,
                    estimated_bytes: estimated,
                }])
            }
            3 => {
                let mut events = self.end_current();
                let (stop_lsn, timeline) = position(&rows, "stop")?;
                events.push(BackupEvent::Ended { stop_lsn, timeline });
                Ok(events)
            }
            n => Err(BackupError::Protocol(format!("unexpected result set #{n}"))),
        }
    }

    fn copy_start(&mut self) -> Result<Vec<BackupEvent>, BackupError> {
        self.copies += 1;
        match self.framing {
            Framing::Typed if self.copies == 1 => Ok(Vec::new()),
            Framing::Typed => Err(BackupError::Protocol(
                "a second COPY stream in the typed framing".into(),
            )),
            Framing::Legacy => match self.order.get(self.copies - 1) {
                Some(&tablespace) => {
                    self.in_archive = true;
                    let name = match tablespace {
                        Some(oid) => format!("{oid}.tar"),
                        None => "base.tar".to_string(),
                    };
                    Ok(vec![BackupEvent::ArchiveStart { name, tablespace }])
                }
                None if self.copies == self.order.len() + 1 => {
                    self.in_manifest = true;
                    Ok(Vec::new())
                }
                None => Err(BackupError::Protocol(
                    "more COPY streams than tablespaces".into(),
                )),
            },
        }
    }

    fn data(&mut self, mut body: Bytes) -> Result<Vec<BackupEvent>, BackupError> {
        if self.framing == Framing::Legacy {
            return if self.in_archive {
                Ok(vec![BackupEvent::Data(body)])
            } else if self.in_manifest {
                Ok(vec![BackupEvent::Manifest(body)])
            } else {
                Err(BackupError::Protocol(
                    "CopyData outside a COPY stream".into(),
                ))
            };
        }
        if body.is_empty() {
            return Err(BackupError::Protocol("empty CopyData message".into()));
        }
        let kind = body.get_u8();
        match kind {
            b'n' => {
                let mut events = self.end_current();
                let name = cstring(&mut body)?;
                let _path = cstring(&mut body)?;
                let tablespace = archive_tablespace(&name)?;
                self.in_archive = true;
                events.push(BackupEvent::ArchiveStart { name, tablespace });
                Ok(events)
            }
            b'd' if self.in_archive => Ok(vec![BackupEvent::Data(body)]),
            b'd' if self.in_manifest => Ok(vec![BackupEvent::Manifest(body)]),
            b'd' => Err(BackupError::Protocol("data before any archive".into())),
            b'p' => {
                if body.len() < 8 {
                    return Err(BackupError::Protocol("short progress message".into()));
                }
                Ok(vec![BackupEvent::Progress(body.get_u64())])
            }
            b'm' => {
                let events = self.end_current();
                self.in_manifest = true;
                Ok(events)
            }
            other => Err(BackupError::Protocol(format!(
                "unknown message type {:?} in the backup stream",
                other as char
            ))),
        }
    }

    fn end_current(&mut self) -> Vec<BackupEvent> {
        self.in_manifest = false;
        if std::mem::take(&mut self.in_archive) {
            vec![BackupEvent::ArchiveEnd]
        } else {
            Vec::new()
        }
    }
}

/// `(recptr text, tli int8)` of the first and last result sets.
fn position(rows: &[Vec<Option<String>>], which: &str) -> Result<(Lsn, TimelineId), BackupError> {
    let bad = || BackupError::Protocol(format!("malformed {which} position {rows:?}"));
    let row = rows.first().ok_or_else(bad)?;
    let lsn: Lsn = row
        .first()
        .cloned()
        .flatten()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let tli: u32 = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((lsn, TimelineId(tli)))
}

fn cstring(body: &mut Bytes) -> Result<String, BackupError> {
    let end = body.iter().position(|&b| b == 0).ok_or_else(|| {
        BackupError::Protocol("unterminated string in a new-archive message".into())
    })?;
    let text = String::from_utf8(body.split_to(end).to_vec())
        .map_err(|_| BackupError::Protocol("archive name is not UTF-8".into()))?;
    body.advance(1);
    Ok(text)
}

/// `base.tar` is the main directory, `<oid>.tar` a tablespace; anything else (a compressed
/// archive walship did not ask for) is refused.
fn archive_tablespace(name: &str) -> Result<Option<u32>, BackupError> {
    if name == "base.tar" {
        return Ok(None);
    }
    name.strip_suffix(".tar")
        .filter(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|oid| oid.parse().ok())
        .map(Some)
        .ok_or_else(|| BackupError::Protocol(format!("unexpected archive name {name:?}")))
}

#[cfg(test)]
#[path = "base_backup_tests.rs"]
mod tests;
