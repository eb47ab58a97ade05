//! The verdict of `walship verify`: every [`Problem`] (the repository cannot be trusted),
//! every [`Warning`] (worth a look), and what was [`Checked`]. Serialised as `verify --json`
//! prints it; each variant's `kind` is its snake_case name.

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::BackupId;
use crate::pg::timeline::TimelineId;

/// Something that makes the repository unsound.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// Segments missing on a timeline, between the oldest backup and the archive's end.
    WalGap {
        /// The timeline.
        timeline: TimelineId,
        /// First missing segment.
        first_missing: String,
        /// Last missing segment.
        last_missing: String,
        /// How many.
        segments: u64,
    },
    /// A timeline (after 1) holds WAL but its `.history` is missing.
    MissingHistory {
        /// The timeline.
        timeline: TimelineId,
    },
    /// A `.history` names a parent timeline whose own `.history` is missing.
    MissingParentHistory {
        /// The timeline whose history names the parent.
        timeline: TimelineId,
        /// The parent.
        parent: TimelineId,
    },
    /// An object does not decode or its checksums do not match (flipped bytes, truncation).
    CorruptObject {
        /// Its key.
        key: String,
        /// What the codec found.
        message: String,
    },
    /// A WAL object decodes but is not the WAL its name says (page headers, system
    /// identifier), or a `.history` does not parse.
    BadWal {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An object a manifest or the listing named is gone.
    MissingObject {
        /// Its key.
        key: String,
    },
    /// A manifest that cannot be read, or that contradicts itself.
    BadManifest {
        /// The backup.
        backup: String,
        /// What is wrong.
        message: String,
    },
    /// A pin record that cannot be read: whether its backup is pinned is unknown (`expire`
    /// refuses to run until it is fixed).
    BadPinRecord {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A bundle's stored size is not the one its manifest records.
    BundleSize {
        /// The backup.
        backup: String,
        /// The bundle.
        bundle: String,
        /// The manifest's size.
        expected: u64,
        /// The stored size.
        found: u64,
    },
    /// A file is not in its bundle as the manifest says (offset, size, crc32c).
    FileMismatch {
        /// The backup.
        backup: String,
        /// The bundle.
        bundle: String,
        /// The file's path (empty for the bundle as a whole).
        path: String,
        /// What differs.
        message: String,
    },
    /// Postgres's `backup_manifest` disagrees with the backup's file list.
    PgManifestMismatch {
        /// The backup.
        backup: String,
        /// The file's path.
        path: String,
        /// What differs.
        message: String,
    },
    /// WAL between a backup's start and stop is missing: it cannot become consistent.
    BackupWalMissing {
        /// The backup.
        backup: String,
        /// The first missing segment.
        segment: String,
        /// How many of its segments are missing.
        missing: usize,
    },
    /// An incremental backup cannot be restored: a member of its chain is missing, incomplete,
    /// unreadable, or has problems of its own (listed separately).
    BrokenChain {
        /// The incremental.
        backup: String,
        /// Which member, and what is wrong with it.
        message: String,
    },
}

/// Worth a look, but the repository is sound.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// The repository has no complete backup.
    NoBackups,
    /// The newest complete backup is older than `--max-backup-age`.
    StaleBackup {
        /// The newest backup.
        backup: BackupId,
        /// Its age.
        age: String,
        /// The limit.
        limit: String,
    },
    /// The newest WAL object is older than `--max-wal-age`.
    StaleWal {
        /// Its key.
        key: String,
        /// Its age.
        age: String,
        /// The limit.
        limit: String,
    },
    /// A backup without a manifest: interrupted, still running, or left by an interrupted
    /// `expire` (the next `expire` or `backup` removes those older than the newest backup).
    IncompleteBackup {
        /// Its id.
        backup: BackupId,
        /// Its objects.
        objects: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// Objects that no backup and no kept WAL range refers to.
    Orphans {
        /// What they are.
        what: String,
        /// How many.
        objects: usize,
        /// Their bytes.
        bytes: u64,
        /// The first one's key.
        first: String,
    },
    /// A segment's stream tail held as pieces (`<segment>.partial.<offset>`): what `fetch
    /// --allow-partial` delivers of it, and where a gap stops it.
    TailPieces {
        /// The segment.
        segment: String,
        /// Length of its base `.partial`, if any.
        base_len: Option<u64>,
        /// Pieces stored.
        pieces: usize,
        /// Pieces delivered (contiguous with the base).
        pieces_used: usize,
        /// Bytes delivered from the segment's start.
        contiguous: u64,
        /// Where a gap (or a piece disagreeing with the bytes before it) stops delivery: the
        /// first byte missing, and the offset of the first piece not delivered.
        gap: Option<(u64, u64)>,
        /// Its journal's valid frames and how many of them are delivered, if it has one.
        journal: Option<(usize, usize)>,
    },
}

/// What was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    /// Objects read (whole, or their header with `--quick`).
    pub objects: usize,
    /// Stored bytes read.
    pub bytes: u64,
    /// Complete backups checked.
    pub backups: usize,
    /// WAL segments checked per timeline.
    pub wal_segments: BTreeMap<u32, usize>,
    /// Only listings, manifests and headers.
    pub quick: bool,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// The verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// No problem found.
    pub sound: bool,
    /// Every problem.
    pub problems: Vec<Problem>,
    /// Every warning.
    pub warnings: Vec<Warning>,
    /// What was checked.
    pub checked: Checked,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::WalGap {
                timeline,
                first_missing,
                last_missing,
                segments,
            } => write!(
                f,
                "WAL gap on timeline {timeline}: {first_missing}..{last_missing} ({segments} segments missing)"
            ),
            Problem::MissingHistory { timeline } => write!(
                f,
                "timeline {timeline} holds WAL but wal/{:08X}.history is missing",
                timeline.0
            ),
            Problem::MissingParentHistory { timeline, parent } => write!(
                f,
                "timeline {timeline}'s history names parent {parent}, whose wal/{:08X}.history is missing",
                parent.0
            ),
            Problem::CorruptObject { key, message } => write!(f, "{key}: corrupt: {message}"),
            Problem::BadWal { key, message } => write!(f, "{key}: {message}"),
            Problem::MissingObject { key } => write!(f, "{key}: missing"),
            Problem::BadPinRecord { key, message } => {
                write!(f, "{key}: unreadable pin record: {message}")
            }
            Problem::BadManifest { backup, message } => {
                write!(f, "backup {backup}: manifest: {message}")
            }
            Problem::BundleSize {
                backup,
                bundle,
                expected,
                found,
            } => write!(
                f,
                "backup {backup}: bundle {bundle} is {found} bytes, the manifest says {expected}"
            ),
            Problem::FileMismatch {
                backup,
                bundle,
                path,
                message,
            } => {
                write!(f, "backup {backup}: bundle {bundle}: {path}: {message}")
            }
            Problem::PgManifestMismatch {
                backup,
                path,
                message,
            } => {
                write!(
                    f,
                    "backup {backup}: Postgres's backup_manifest: {path}: {message}"
                )
            }
            Problem::BackupWalMissing {
                backup,
                segment,
                missing,
            } => write!(
                f,
                "backup {backup}: {missing} WAL segments between its start and stop are missing, first {segment}"
            ),
            Problem::BrokenChain { backup, message } => {
                write!(f, "backup {backup} cannot be restored: {message}")
            }
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NoBackups => write!(f, "the repository has no complete backup"),
            Warning::StaleBackup { backup, age, limit } => {
                write!(
                    f,
                    "the newest backup, {backup}, ended {age} ago (more than {limit})"
                )
            }
            Warning::StaleWal { key, age, limit } => {
                write!(
                    f,
                    "the newest WAL, {key}, was stored {age} ago (more than {limit})"
                )
            }
            Warning::IncompleteBackup {
                backup,
                objects,
                bytes,
            } => write!(
                f,
                "backup {backup} is incomplete (no manifest; {objects} objects, {bytes} bytes)"
            ),
            Warning::Orphans {
                what,
                objects,
                bytes,
                first,
            } => {
                write!(f, "{objects} {what} ({bytes} bytes), first {first}")
            }
            Warning::TailPieces {
                segment,
                base_len,
                pieces,
                pieces_used,
                contiguous,
                gap,
                journal,
            } => {
                let base = base_len.map_or("no base .partial".to_string(), |n| {
                    format!("a {n}-byte base .partial")
                });
                write!(
                    f,
                    "the stream tail of {segment} is {base} and {pieces} pieces"
                )?;
                if let Some((frames, used)) = journal {
                    write!(f, " and a journal of {frames} frames ({used} delivered)")?;
                }
                write!(
                    f,
                    "; fetch --allow-partial delivers {contiguous} bytes ({pieces_used} pieces)"
                )?;
                if let Some((at, next)) = gap {
                    write!(
                        f,
                        "; GAP: byte {at:#X} is missing, so {} pieces from offset {next:#X} on are not delivered",
                        pieces - pieces_used
                    )?;
                }
                Ok(())
            }
        }
    }
}
