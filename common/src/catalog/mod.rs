//! The backup catalog: what a base backup in the repository is made of.
//!
//! A backup lives under `backups/<id>/`: its data as compressed *bundles* (each an object
//! holding many files' bytes back to back) and a [`BackupManifest`] (`manifest.json`) that
//! lists every file and where its bytes are. The manifest is written last: a backup
//! without one does not exist. The layout is documented in `docs/FORMAT.md` ("Backups").

pub mod backup_id;
pub mod manifest;

pub use backup_id::{BackupId, BackupIdError};
pub use manifest::{
    BackupManifest, BundleInfo, FileEntry, FileKind, INCREMENTAL_MANIFEST_FORMAT_VERSION,
    MANIFEST_FORMAT_VERSION, TablespaceInfo,
};
