//! [`StreamError`]: why `walship stream` stopped receiving, and whether reconnecting can help.

use crate::archive::ArchiveError;
use crate::lsn::Lsn;
use crate::pg::file_name::FileNameError;
use crate::pgconn::PgConnError;
use crate::repo::RepoError;
use crate::storage::StorageError;

/// What went wrong while streaming.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The replication connection failed (refused, lost, timed out, or a server error).
    #[error(transparent)]
    Connection(#[from] PgConnError),
    /// Storing a segment, history file or tail failed, or a safety rule refused it.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The repository failed or belongs to another cluster.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Listing or deleting objects failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The server sent WAL that does not continue where the previous message ended.
    #[error("WAL stream from {endpoint} jumped: expected data at {expected}, got {got}")]
    Discontinuity {
        /// The server.
        endpoint: String,
        /// Where the next byte was expected.
        expected: Lsn,
        /// Where the message said its data starts.
        got: Lsn,
    },
    /// The server sent nothing, not even a keepalive, for too long.
    #[error("{endpoint} sent nothing for {seconds} s (not even a keepalive)")]
    Silent {
        /// The server.
        endpoint: String,
        /// How long it was silent.
        seconds: u64,
    },
    /// The WAL the repository needs next is gone from the server: streaming from what the
    /// server still has would leave a gap in the archive.
    #[error(
        "{endpoint} no longer has the WAL at {start} on timeline {timeline} that the repository needs next ({source}); refusing to leave a gap: archive the missing segments (walship archive) or start with an empty repository"
    )]
    WalRemoved {
        /// The server.
        endpoint: String,
        /// Where streaming had to start.
        start: Lsn,
        /// The timeline.
        timeline: u32,
        /// The server's error.
        #[source]
        source: PgConnError,
    },
    /// A WAL file name could not be formed (timeline 0, segment number out of range).
    #[error(transparent)]
    Name(#[from] FileNameError),
    /// The server and the repository disagree in a way no retry fixes.
    #[error("{0}")]
    Refused(String),
    /// The uploader task stopped (it failed; its error was reported first).
    #[error("the uploader stopped: {0}")]
    UploaderGone(String),
    /// Stopping (SIGTERM), the storage kept failing for the whole stop timeout: what was
    /// received after `stored` is not in the repository. Nothing past `stored` was reported
    /// to the server, so its slot keeps that WAL and the next start streams it again.
    #[error(
        "gave up storing after {} of stopping: WAL from {stored} on is not in the repository \
         (the storage kept failing); nothing past {stored} was reported to the server, whose \
         slot keeps it for the next start",
        humantime::format_duration(*waited)
    )]
    StopTimeout {
        /// WAL durably stored up to here.
        stored: Lsn,
        /// The stop timeout that passed.
        waited: std::time::Duration,
    },
}

impl StreamError {
    /// True when reconnecting (after a backoff) may help: a lost or refused connection, a
    /// silent server, a discontinuity. False when a safety rule refused the work or the
    /// configuration is wrong: the command must stop and say why.
    pub fn is_retryable(&self) -> bool {
        match self {
            StreamError::Connection(e) => !matches!(
                e,
                PgConnError::ConnInfo(_)
                    | PgConnError::InvalidName { .. }
                    | PgConnError::Unsupported { .. }
                    | PgConnError::Auth { .. }
            ),
            StreamError::Silent { .. } | StreamError::Discontinuity { .. } => true,
            StreamError::Archive(_)
            | StreamError::Repo(_)
            | StreamError::Storage(_)
            | StreamError::WalRemoved { .. }
            | StreamError::Name(_)
            | StreamError::Refused(_)
            | StreamError::UploaderGone(_)
            | StreamError::StopTimeout { .. } => false,
        }
    }
}
