//! [`BackupError`]: everything that can stop a backup or a listing of backups, each
//! variant carrying the path, key, LSN or segment involved.

use std::time::Duration;

use crate::codec::CodecError;
use crate::lsn::Lsn;
use crate::repo::RepoError;
use crate::storage::{InvalidKey, StorageError};

/// Why a backup (or reading one) failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A tar entry's path is absolute, holds `..`, or otherwise would leave the data
    /// directory; the backup is refused as a whole.
    #[error("unsafe path {path:?} in archive {archive}: {reason}")]
    UnsafePath {
        /// The archive (`base.tar`, `16384.tar`).
        archive: String,
        /// The path as the stream gave it.
        path: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// A tar entry of a kind a base backup never holds (hard link, device, FIFO), or a
    /// symbolic link other than a tablespace's `pg_tblspc/<oid>`.
    #[error("refused entry {path:?} in archive {archive}: {reason}")]
    RefusedEntry {
        /// The archive.
        archive: String,
        /// The entry's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tar stream cannot be parsed.
    #[error("malformed tar archive {archive}: {source}")]
    Tar {
        /// The archive.
        archive: String,
        /// What the parser found.
        #[source]
        source: std::io::Error,
    },
    /// The events came in an order no server produces (data outside an archive, no start).
    #[error("unexpected base backup stream: {0}")]
    Protocol(String),
    /// The connection to the server failed.
    #[error("replication connection: {0}")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The repository refused or failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Storage failed while uploading a bundle or listing.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A key could not be built from a name read back from the repository.
    #[error(transparent)]
    Key(#[from] InvalidKey),
    /// Compressing or decoding a bundle failed.
    #[error("bundle {key}: {source}")]
    Codec {
        /// The bundle's key.
        key: String,
        /// What the codec found.
        #[source]
        source: CodecError,
    },
    /// The WAL the backup needs did not reach the repository in time: the backup would not
    /// restore to consistency, so no manifest is written.
    #[error(
        "WAL segment {segment} (needed from start LSN {start_lsn} to stop LSN {stop_lsn}) is not in the repository after waiting {waited:?}; is archive_command = 'walship archive %p' set and succeeding? The backup was not completed"
    )]
    MissingWal {
        /// The first missing segment.
        segment: String,
        /// The backup's start.
        start_lsn: Lsn,
        /// The backup's stop.
        stop_lsn: Lsn,
        /// How long walship waited.
        waited: Duration,
    },
    /// A manifest cannot be read or written.
    #[error("manifest {key}: {message}")]
    Manifest {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file's content does not match the checksum the manifest records.
    #[error("{path}: content read from bundle {bundle} does not match the manifest ({reason})")]
    Mismatch {
        /// The file.
        path: String,
        /// The bundle.
        bundle: String,
        /// What differed.
        reason: String,
    },
    /// An incremental backup cannot be taken (server older than 17, `summarize_wal` off, a
    /// parent missing or incomplete, the server refusing the parent's manifest or its WAL
    /// summaries); nothing was stored.
    #[error("{message}{}", hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    IncrementalRefused {
        /// What is wrong.
        message: String,
        /// What to do (the server's hint, or ours).
        hint: Option<String>,
    },
    /// No backup has this id (or there is no backup at all, for `latest`).
    #[error("no backup {0} in the repository")]
    NotFound(String),
}

impl BackupError {
    /// True for errors that mean the input itself is unsafe or wrong (a refused path, another
    /// cluster's repository), which retrying will not fix.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackupError::UnsafePath { .. }
                | BackupError::RefusedEntry { .. }
                | BackupError::IncrementalRefused { .. }
                | BackupError::Repo(RepoError::OtherCluster { .. })
        )
    }
}
