//! `manifest.json`: the record of one base backup, written last.
//!
//! Everything restore needs is here: which cluster, timeline and WAL range the backup
//! covers (to choose it and check the WAL chain), the backup label and tablespace map to
//! write verbatim, every file with its size, mode, mtime and crc32c, and where its bytes are
//! (bundle index and offset in the bundle's raw content). Postgres's own `backup_manifest` is
//! kept verbatim so that `pg_verifybackup` can check a restored directory.
//!
//! Serialised with serde; the field names are part of the repository format
//! (`docs/FORMAT.md`, "Backups"), stable from the first write. Readers refuse a
//! `format_version` they do not know.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backup_id::BackupId;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// The manifest format of a full backup, written and read by every build.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// The manifest format of an incremental backup (PG17+ `BASE_BACKUP (INCREMENTAL)`): version
/// 1 plus [`BackupManifest::parent`] and [`BackupManifest::chain_depth`]. A distinct version
/// so that a build that does not know chains refuses the manifest (it would otherwise restore
/// the `INCREMENTAL.*` files as they are: a data directory that looks whole and is not).
pub const INCREMENTAL_MANIFEST_FORMAT_VERSION: u32 = 2;

/// The manifest of one base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// The backup's id (its UTC start time).
    pub id: BackupId,
    /// The label given to `BASE_BACKUP`.
    pub label: String,
    /// The cluster's system identifier (a string in JSON: it does not fit a double).
    #[serde(with = "crate::json::u64_as_string")]
    pub system_identifier: u64,
    /// PostgreSQL major version (13..=18).
    pub pg_major: u32,
    /// `server_version_num` of the server backed up.
    pub pg_version_num: u32,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u32,
    /// Timeline the backup started on.
    pub start_timeline: TimelineId,
    /// Timeline the backup ended on (differs from start only for a standby that was promoted meanwhile).
    pub stop_timeline: TimelineId,
    /// WAL location where the backup starts (the checkpoint's redo point).
    pub start_lsn: Lsn,
    /// WAL location where the backup ends: recovery must replay at least this far to be consistent.
    pub stop_lsn: Lsn,
    /// When the backup started.
    pub start_time: DateTime<Utc>,
    /// When the backup ended.
    pub stop_time: DateTime<Utc>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// The `backup_label` file, verbatim.
    pub backup_label: String,
    /// The `tablespace_map` file, verbatim, if the cluster has tablespaces.
    pub tablespace_map: Option<String>,
    /// Tablespaces other than the main data directory.
    pub tablespaces: Vec<TablespaceInfo>,
    /// PostgreSQL's own `backup_manifest`, verbatim.
    pub pg_backup_manifest: Option<String>,
    /// Sum of the raw sizes of all files.
    pub bytes_raw: u64,
    /// Sum of the stored (compressed) sizes of all bundles.
    pub bytes_stored: u64,
    /// The walship version that took the backup.
    pub walship_version: String,
    /// The bundles, indexed by [`FileEntry::bundle`].
    pub bundles: Vec<BundleInfo>,
    /// Every file, directory and link of the backup.
    pub files: Vec<FileEntry>,
    /// The backup this one is an incremental of; `None` for a full backup (then absent from
    /// the JSON, which stays format version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<BackupId>,
    /// How many backups the chain has below this one: 0 for a full, the parent's + 1 for an
    /// incremental.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chain_depth: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl BackupManifest {
    /// True for an incremental backup (it needs its chain to be restored).
    pub fn is_incremental(&self) -> bool {
        self.parent.is_some()
    }
}

/// A tablespace as `BASE_BACKUP` reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablespaceInfo {
    /// The tablespace OID (its directory name under `pg_tblspc`).
    pub oid: u32,
    /// Its location on the server backed up.
    pub location: String,
}

/// One bundle object: `backups/<id>/bundles/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// Object name under `backups/<id>/bundles/`.
    pub name: String,
    /// Raw (uncompressed) length: the sum of its files' sizes.
    pub raw_len: u64,
    /// Stored length.
    pub stored_len: u64,
}

/// What a [`FileEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file; its bytes are in a bundle.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only `pg_tblspc/<oid>` links in a valid backup).
    Symlink,
}

/// One entry of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the data directory, `/`-separated; tablespace files are under
    /// `pg_tblspc/<oid>/`, as in Postgres's `backup_manifest`. Validated on read: never
    /// absolute, never `..`.
    pub path: String,
    /// File, directory or link.
    pub kind: FileKind,
    /// Size in bytes (0 for directories and links).
    pub size: u64,
    /// Permission bits as the server sent them.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// crc32c of the file's bytes (files only).
    pub crc32c: Option<u32>,
    /// Index into [`BackupManifest::bundles`] (files only).
    pub bundle: Option<u32>,
    /// Offset of the file's first byte in the bundle's raw content (files only).
    pub offset: Option<u64>,
    /// Link target (links only).
    pub link_target: Option<String>,
}
