//! [`BackupEvent`]: what a base backup source yields, in order, whatever produced it (the
//! walsender's `BASE_BACKUP` output through [`super::base_backup`], or a test stream).
//!
//! The backup pipeline consumes nothing else, so the replication protocol is one input among
//! others and every later stage (tar parsing, bundling, manifest) can be tested on crafted
//! streams.

use std::future::Future;

use bytes::Bytes;

use super::error::BackupError;
use crate::catalog::TablespaceInfo;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// One step of a base backup as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupEvent {
    /// The backup started: the checkpoint's redo location and timeline.
    Started {
        /// WAL location where the backup starts.
        start_lsn: Lsn,
        /// Timeline at the start.
        timeline: TimelineId,
    },
    /// The tablespaces besides the main data directory, with the server's size estimate of
    /// everything in kB when it sent one (`PROGRESS`).
    Tablespaces {
        /// Each tablespace's OID and location.
        tablespaces: Vec<TablespaceInfo>,
        /// Estimated total size in bytes, main directory included, when known.
        estimated_bytes: Option<u64>,
    },
    /// A tar archive begins: the main data directory (`tablespace` = `None`) or one
    /// tablespace's directory.
    ArchiveStart {
        /// The archive's name as the server gave it (`base.tar`, `16384.tar`).
        name: String,
        /// The tablespace OID, `None` for the main data directory.
        tablespace: Option<u32>,
    },
    /// The next bytes of the current tar archive.
    Data(Bytes),
    /// The current tar archive ended.
    ArchiveEnd,
    /// The server's progress counter: bytes sent so far.
    Progress(u64),
    /// The next bytes of Postgres's `backup_manifest`.
    Manifest(Bytes),
    /// The backup ended: the stop location and timeline.
    Ended {
        /// WAL location where the backup ends.
        stop_lsn: Lsn,
        /// Timeline at the end.
        timeline: TimelineId,
    },
}

/// What the server backed up, known before the stream starts (`IDENTIFY_SYSTEM`, `SHOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// `server_version_num`.
    pub pg_version_num: u32,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u32,
}

impl ServerInfo {
    /// The major version (13..=18).
    pub fn major(&self) -> u32 {
        self.pg_version_num / 10_000
    }
}

/// A producer of [`BackupEvent`]s; `Ok(None)` after the last one.
pub trait BackupSource: Send {
    /// The next event. Cancel safety: dropping the future may lose data; the backup is then
    /// abandoned as a whole.
    fn next_event(
        &mut self,
    ) -> impl Future<Output = Result<Option<BackupEvent>, BackupError>> + Send;
}

/// A source replaying a fixed list of events (tests, and data already in memory).
#[derive(Debug, Clone, Default)]
pub struct EventList {
    events: std::collections::VecDeque<BackupEvent>,
}

impl EventList {
    /// A source yielding `events` in order.
    pub fn new(events: impl IntoIterator<Item = BackupEvent>) -> EventList {
        EventList {
            events: events.into_iter().collect(),
        }
    }
}

impl BackupSource for EventList {
    async fn next_event(&mut self) -> Result<Option<BackupEvent>, BackupError> {
        Ok(self.events.pop_front())
    }
}
