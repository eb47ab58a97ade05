//! [`RestoreError`]: why a restore could not run at all (storage failing, a corrupt bundle,
//! a file-system error). A target the archive cannot reach is not an error but a
//! [`crate::plan::Problem`] in the plan, so that `--dry-run` lists every one.

use walship_common::fsutil::FsError;
use walship_common::repo::RepoError;
use walship_common::storage::StorageError;

use crate::plan::Problem;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The repository failed, is not initialised, or holds a corrupt small object.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The backup catalog could not be read (a manifest is unreadable or of another format).
    #[error(transparent)]
    Catalog(#[from] walship_common::backup::BackupError),
    /// The storage backend failed while streaming.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The plan found problems: nothing was written.
    #[error("refusing to restore (nothing was written): {}", problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// A manifest is malformed: a path escapes the directory, a bundle is unknown, ...
    #[error("backup {backup}: bad manifest: {message}")]
    BadManifest {
        /// The backup id.
        backup: String,
        /// What is wrong.
        message: String,
    },
    /// A bundle does not decode, or a file in it does not match its checksum or size.
    #[error("backup {backup}: bundle {bundle} is corrupt at file {file}: {message}")]
    CorruptBundle {
        /// The backup id.
        backup: String,
        /// The bundle name.
        bundle: String,
        /// The file being restored (relative path).
        file: String,
        /// What was found.
        message: String,
    },
    /// Writing the data directory failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl RestoreError {
    /// True when the restore was refused before any data moved (exit "refused").
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RestoreError::Refused { .. } | RestoreError::BadManifest { .. }
        )
    }
}
