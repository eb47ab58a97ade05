//! `walship verify`: proves a repository sound, or names every problem in it.
//!
//! Inputs: a [`Repository`] and [`VerifyOptions`]. Output: a [`VerifyReport`] with every
//! [`Problem`] (the repository cannot be trusted: a corrupt object, a gap, a missing bundle)
//! and every [`Warning`] (worth a look, not unsound: stale backups or WAL, incomplete
//! backups, orphaned objects), and what was checked. It reads the repository only.
//!
//! - [`objects`]: one object read and checked (WAL and `.history` whole, bundles streamed).
//! - [`continuity`]: WAL gaps per timeline and `.history` ancestry, pure.
//! - [`pg_manifest`]: Postgres's `backup_manifest` against walship's file list, pure.
//!
//! **Invariants:** a storage failure is an error, never a verdict ("could not read" is not
//! "sound", nor "corrupt"); memory is bounded by `parallel` objects of one segment or one
//! bundle buffer each; it never writes.

mod continuity;
mod objects;
mod pg_manifest;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use continuity::check_continuity;

use crate::catalog::BackupId;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::SegNo;
use crate::pg::timeline::TimelineId;
use crate::repo::{Repository, layout};
use crate::retention::{InventoryError, StoredBackup, read_inventory_tolerant};
use crate::storage::StorageError;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only this backup (and the WAL it needs).
    pub backup: Option<BackupId>,
    /// Listings, manifests and object headers only: no content is read.
    pub quick: bool,
    /// A newest complete backup older than this is a warning.
    pub max_backup_age: Duration,
    /// A newest WAL object older than this is a warning.
    pub max_wal_age: Duration,
    /// Objects read at once.
    pub parallel: usize,
    /// The time ages are measured from.
    pub now: DateTime<Utc>,
}

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

/// Why verification could not finish.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The repository could not be read: nothing can be said of it.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Storage failed while reading an object.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `--backup` names no complete backup.
    #[error("backup {0} not found (no manifest under backups/{0}/)")]
    NoSuchBackup(BackupId),
}

enum Job<'a> {
    Wal(&'a crate::retention::StoredWal),
    Bundle(&'a StoredBackup, usize),
}

/// Verifies the repository.
pub async fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let inv = read_inventory_tolerant(repo).await?;
    let seg_size = inv.seg_size;
    let mut report = VerifyReport::default();
    report.checked.quick = opts.quick;
    for (id, _, message) in &inv.unreadable {
        report.problems.push(Problem::BadManifest {
            backup: id.to_string(),
            message: message.clone(),
        });
    }
    let backups: Vec<&StoredBackup> = match opts.backup {
        Some(id) => vec![
            inv.backups
                .iter()
                .find(|b| b.id() == id)
                .ok_or(VerifyError::NoSuchBackup(id))?,
        ],
        None => inv.backups.iter().collect(),
    };
    let present = |tli_max: TimelineId, tli_min: TimelineId, segno: SegNo| {
        inv.wal.iter().any(|w| match w.name {
            ArchiveFileName::Segment(s) | ArchiveFileName::Partial(s) => {
                s.segno() == segno && s.timeline() >= tli_min && s.timeline() <= tli_max
            }
            _ => false,
        })
    };
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut backup_wal: Vec<(TimelineId, SegNo, SegNo)> = Vec::new();
    for b in &backups {
        let m = &b.manifest;
        report.checked.backups += 1;
        let backup = m.id.to_string();
        let mut known = vec![layout::manifest_key(m.id)];
        for (i, bundle) in m.bundles.iter().enumerate() {
            let Ok(key) = layout::bundle_key(m.id, &bundle.name) else {
                report.problems.push(Problem::BadManifest {
                    backup: backup.clone(),
                    message: format!("bundle name {:?} is not a valid key", bundle.name),
                });
                continue;
            };
            match b.objects.iter().find(|o| o.key == key) {
                None => report.problems.push(Problem::MissingObject {
                    key: key.to_string(),
                }),
                Some(o) if o.size != bundle.stored_len => {
                    report.problems.push(Problem::BundleSize {
                        backup: backup.clone(),
                        bundle: bundle.name.clone(),
                        expected: bundle.stored_len,
                        found: o.size,
                    })
                }
                Some(_) => jobs.push(Job::Bundle(b, i)),
            }
            known.push(key);
        }
        let strays: Vec<_> = b
            .objects
            .iter()
            .filter(|o| !known.contains(&o.key) && layout::pin_seq_of(&o.key).is_none())
            .collect();
        if let Some(first) = strays.first() {
            report.warnings.push(Warning::Orphans {
                what: format!("objects under backups/{backup}/ its manifest does not name"),
                objects: strays.len(),
                bytes: strays.iter().map(|o| o.size).sum(),
                first: first.key.to_string(),
            });
        }
        for (path, message) in pg_manifest::compare(m) {
            report.problems.push(Problem::PgManifestMismatch {
                backup: backup.clone(),
                path,
                message,
            });
        }
        let first = SegNo::containing(m.start_lsn, seg_size);
        let last =
            SegNo::containing_end(m.stop_lsn.max(crate::lsn::Lsn(m.start_lsn.0 + 1)), seg_size);
        backup_wal.push((m.stop_timeline, first, last));
        let missing: Vec<SegNo> = (first.0..=last.0)
            .map(SegNo)
            .filter(|&s| !present(m.stop_timeline, m.start_timeline, s))
            .collect();
        if let Some(&s) = missing.first() {
            report.problems.push(Problem::BackupWalMissing {
                backup: backup.clone(),
                segment: WalFileName::new(m.stop_timeline, s, seg_size)
                    .map_or_else(|_| s.0.to_string(), |n| n.to_string()),
                missing: missing.len(),
            });
        }
    }
    for w in &inv.wal {
        let wanted = match (opts.backup, w.name.segment()) {
            (None, _) | (Some(_), None) => true,
            (Some(_), Some(s)) => backup_wal
                .iter()
                .any(|&(tli, a, z)| s.timeline() <= tli && a <= s.segno() && s.segno() <= z),
        };
        if wanted {
            jobs.push(Job::Wal(w));
        }
    }

    let sysid = inv.identity.system_identifier;
    let results: Vec<Result<objects::Checked, StorageError>> = futures::stream::iter(jobs)
        .map(|job| async move {
            match job {
                Job::Wal(w) => objects::check_wal(repo, w, sysid, opts.quick).await,
                Job::Bundle(b, i) => objects::check_bundle(repo, &b.manifest, i, opts.quick).await,
            }
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    let mut histories = BTreeMap::new();
    for result in results {
        let checked = result?;
        report.checked.objects += 1;
        report.checked.bytes += checked.bytes;
        report.problems.extend(checked.problems);
        if let Some((tli, history)) = checked.history {
            histories.insert(tli, history);
        }
    }
    for w in &inv.wal {
        if let ArchiveFileName::Segment(s) = w.name {
            *report
                .checked
                .wal_segments
                .entry(s.timeline().0)
                .or_default() += 1;
        }
    }

    let floor = inv
        .backups
        .iter()
        .map(|b| SegNo::containing(b.manifest.start_lsn, seg_size))
        .min();
    if opts.backup.is_none() {
        let names: Vec<ArchiveFileName> = inv.wal.iter().map(|w| w.name).collect();
        report
            .problems
            .extend(check_continuity(&names, &histories, floor, seg_size));
        orphans(&inv, floor, &mut report);
    }
    freshness(&inv, opts, &mut report);
    report.problems.sort();
    report.problems.dedup();
    report.sound = report.problems.is_empty();
    report.checked.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn orphans(inv: &crate::retention::Inventory, floor: Option<SegNo>, report: &mut VerifyReport) {
    for i in &inv.incomplete {
        report.warnings.push(Warning::IncompleteBackup {
            backup: i.id,
            objects: i.objects,
            bytes: i.bytes,
        });
    }
    if let Some(floor) = floor {
        let old: Vec<_> = inv
            .wal
            .iter()
            .filter(|w| w.name.segment().is_some_and(|s| s.segno() < floor))
            .collect();
        if let Some(first) = old.first() {
            report.warnings.push(Warning::Orphans {
                what: "WAL older than the oldest backup (no backup needs it; expire removes it)"
                    .into(),
                objects: old.len(),
                bytes: old.iter().map(|w| w.meta.size).sum(),
                first: first.meta.key.to_string(),
            });
        }
    }
    if let Some(first) = inv.stray_wal.first() {
        report.warnings.push(Warning::Orphans {
            what: "objects under wal/ that are not WAL files walship stores".into(),
            objects: inv.stray_wal.len(),
            bytes: inv.stray_wal.iter().map(|m| m.size).sum(),
            first: first.key.to_string(),
        });
    }
}

fn freshness(inv: &crate::retention::Inventory, opts: &VerifyOptions, report: &mut VerifyReport) {
    let age = |then: DateTime<Utc>| (opts.now - then).to_std().unwrap_or_default();
    let text =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    match inv.backups.iter().max_by_key(|b| b.manifest.stop_time) {
        None => report.warnings.push(Warning::NoBackups),
        Some(b) => {
            let a = age(b.manifest.stop_time);
            if a > opts.max_backup_age {
                report.warnings.push(Warning::StaleBackup {
                    backup: b.id(),
                    age: text(a),
                    limit: text(opts.max_backup_age),
                });
            }
        }
    }
    let newest = inv
        .wal
        .iter()
        .filter(|w| w.name.segment().is_some())
        .filter_map(|w| w.meta.last_modified.map(|t| (t, &w.meta.key)))
        .max_by_key(|(t, _)| *t);
    if let Some((t, key)) = newest {
        let a = age(DateTime::<Utc>::from(t.max(SystemTime::UNIX_EPOCH)));
        if a > opts.max_wal_age {
            report.warnings.push(Warning::StaleWal {
                key: key.to_string(),
                age: text(a),
                limit: text(opts.max_wal_age),
            });
        }
    }
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
        }
    }
}
