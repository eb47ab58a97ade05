//! [`ReplicationSource`]: a `BASE_BACKUP` running on a [`ReplicationClient`] as a
//! [`BackupSource`]. The protocol (the command in each major's syntax, both COPY framings)
//! is the client's ([`crate::pgconn::BaseBackupStream`]); this file only maps its events to
//! the backup pipeline's: it marks where each tar archive ends, names each archive's
//! tablespace by OID, and refuses archives walship did not ask for (compressed ones).

use std::collections::VecDeque;
use std::time::Duration;

use crate::catalog::TablespaceInfo;
use crate::pgconn::{self, BaseBackupOptions, BaseBackupStream, ReplicationClient};

use super::error::BackupError;
use super::event::{BackupEvent, BackupSource, ServerInfo};

/// How long to wait for each message of a running backup: generous, because the server
/// says nothing while a spread checkpoint runs before the first archive.
pub const BACKUP_READ_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What `walship backup` asks of the server besides its options: progress, a tablespace map,
/// a manifest with CRC32C checksums, and no server-side wait for WAL archiving (walship
/// waits itself, bounded, for its own repository).
pub fn base_backup_options(
    label: &str,
    fast_checkpoint: bool,
    max_rate_kb: Option<u32>,
) -> BaseBackupOptions {
    BaseBackupOptions {
        label: label.to_string(),
        progress: true,
        fast_checkpoint,
        wal: false,
        wait_for_wal_archive: false,
        max_rate_kb,
        tablespace_map: true,
        verify_checksums: true,
        manifest: true,
        manifest_checksums: Some("CRC32C".to_string()),
        incremental: false,
    }
}

/// The output of one `BASE_BACKUP` as backup events.
#[derive(Debug)]
pub struct ReplicationSource<'a> {
    stream: BaseBackupStream<'a>,
    in_archive: bool,
    pending: VecDeque<BackupEvent>,
}

fn connection(e: pgconn::PgConnError) -> BackupError {
    BackupError::Connection(Box::new(e))
}

/// Asks the server who it is (`IDENTIFY_SYSTEM`, `SHOW wal_segment_size`, its version),
/// then starts `BASE_BACKUP` with `opts`.
pub async fn start_base_backup<'a>(
    client: &'a mut ReplicationClient,
    opts: &BaseBackupOptions,
) -> Result<(ServerInfo, ReplicationSource<'a>), BackupError> {
    let system = client.identify_system().await.map_err(connection)?;
    let seg_size = client.wal_segment_size().await.map_err(connection)?;
    let info = ServerInfo {
        system_identifier: system.systemid,
        pg_version_num: client.server_version_num(),
        wal_segment_size: u32::try_from(seg_size)
            .map_err(|_| BackupError::Protocol(format!("wal_segment_size {seg_size}")))?,
    };
    if info.major() < 13 {
        return Err(BackupError::Protocol(format!(
            "PostgreSQL {} is not supported: walship needs 13 or newer",
            info.major()
        )));
    }
    client.set_read_timeout(BACKUP_READ_TIMEOUT);
    let stream = client.base_backup(opts).await.map_err(connection)?;
    Ok((
        info,
        ReplicationSource {
            stream,
            in_archive: false,
            pending: VecDeque::new(),
        },
    ))
}

impl ReplicationSource<'_> {
    /// Ends the current archive, if any, before `next`.
    fn after_archive(&mut self, next: BackupEvent) {
        if std::mem::take(&mut self.in_archive) {
            self.pending.push_back(BackupEvent::ArchiveEnd);
        }
        self.pending.push_back(next);
    }

    fn map(&mut self, event: pgconn::BackupEvent) -> Result<(), BackupError> {
        match event {
            pgconn::BackupEvent::Started { lsn, timeline } => {
                self.pending.push_back(BackupEvent::Started {
                    start_lsn: lsn,
                    timeline,
                });
            }
            pgconn::BackupEvent::Tablespaces(rows) => {
                let estimated = rows
                    .iter()
                    .filter_map(|r| r.size_kb)
                    .map(|kb| u64::try_from(kb).unwrap_or(0) * 1024)
                    .reduce(|a, b| a + b);
                let tablespaces = rows
                    .into_iter()
                    .filter_map(|r| {
                        Some(TablespaceInfo {
                            oid: r.oid?,
                            location: r.location.unwrap_or_default(),
                        })
                    })
                    .collect();
                self.pending.push_back(BackupEvent::Tablespaces {
                    tablespaces,
                    estimated_bytes: estimated,
                });
            }
            pgconn::BackupEvent::ArchiveStart { name, .. } => {
                let tablespace = archive_tablespace(&name)?;
                self.after_archive(BackupEvent::ArchiveStart { name, tablespace });
                self.in_archive = true;
            }
            pgconn::BackupEvent::Data(data) if self.in_archive => {
                self.pending.push_back(BackupEvent::Data(data));
            }
            pgconn::BackupEvent::Data(_) => {
                return Err(BackupError::Protocol(
                    "archive data before any archive".into(),
                ));
            }
            pgconn::BackupEvent::Progress(n) => self.pending.push_back(BackupEvent::Progress(n)),
            pgconn::BackupEvent::Manifest(chunk) => {
                self.after_archive(BackupEvent::Manifest(chunk))
            }
            pgconn::BackupEvent::End { lsn, timeline } => self.after_archive(BackupEvent::Ended {
                stop_lsn: lsn,
                timeline,
            }),
        }
        Ok(())
    }
}

impl BackupSource for ReplicationSource<'_> {
    async fn next_event(&mut self) -> Result<Option<BackupEvent>, BackupError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            match self.stream.next_event().await.map_err(connection)? {
                Some(event) => self.map(event)?,
                None if self.in_archive => {
                    self.in_archive = false;
                    return Ok(Some(BackupEvent::ArchiveEnd));
                }
                None => return Ok(None),
            }
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn archive_names_give_the_tablespace() {
        assert_eq!(archive_tablespace("base.tar").unwrap(), None);
        assert_eq!(archive_tablespace("16384.tar").unwrap(), Some(16384));
        for bad in ["base.tar.gz", "16384.tar.lz4", ".tar", "x.tar", "../1.tar"] {
            assert!(archive_tablespace(bad).is_err(), "{bad}");
        }
    }
}
