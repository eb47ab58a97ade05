//! `walship verify`: proves a repository sound, or names every problem in it.
//!
//! Inputs: a [`Repository`] and [`VerifyOptions`]. Output: a [`VerifyReport`] with every
//! [`Problem`] (the repository cannot be trusted: a corrupt object, a gap, a missing bundle)
//! and every [`Warning`] (worth a look, not unsound: stale backups or WAL, incomplete
//! backups, orphaned objects), and what was checked. It reads the repository only.
//!
//! - `objects`: one object read and checked (WAL and `.history` whole, bundles streamed).
//! - `continuity`: WAL gaps per timeline and `.history` ancestry, pure ([`check_continuity`]).
//! - `pg_manifest`: Postgres's `backup_manifest` against walship's file list, pure.
//! - `report`: the verdict's types.
//!
//! **Invariants:** a storage failure is an error, never a verdict ("could not read" is not
//! "sound", nor "corrupt"); memory is bounded by `parallel` objects of one segment or one
//! bundle buffer each; it never writes.

mod continuity;
mod objects;
mod pg_manifest;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use continuity::check_continuity;
pub use report::{Checked, Problem, VerifyReport, Warning};

use crate::catalog::BackupId;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::SegNo;
use crate::pg::timeline::TimelineId;
use crate::repo::{Repository, layout};
use crate::retention::{InventoryError, PlanInputs, Policy, StoredBackup, read_inventory_tolerant};
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
    /// The configured retention policy, if any. With one, WAL must be continuous from the
    /// floor the policy keeps (evaluated at `now`); below it, backups kept by a calendar rule
    /// or a pin need only their own WAL, so the gaps `expire` leaves between them are not
    /// problems. Without one, WAL must be continuous from the oldest backup's start.
    pub policy: Option<Policy>,
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
    for (key, message) in &inv.bad_pins {
        report.problems.push(Problem::BadPinRecord {
            key: key.clone(),
            message: message.clone(),
        });
    }
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
    let stored: BTreeSet<(SegNo, TimelineId)> = inv
        .wal
        .iter()
        .filter_map(|w| match w.name {
            ArchiveFileName::Segment(s) | ArchiveFileName::Partial(s) => {
                Some((s.segno(), s.timeline()))
            }
            _ => None,
        })
        .collect();
    let present = |tli_max: TimelineId, tli_min: TimelineId, segno: SegNo| {
        stored
            .range((segno, tli_min)..=(segno, tli_max))
            .next()
            .is_some()
    };
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut backup_wal: Vec<(TimelineId, SegNo, SegNo)> = Vec::new();
    for b in &backups {
        let m = &b.manifest;
        report.checked.backups += 1;
        // The inventory read and verified the manifest.
        let manifest_key = layout::manifest_key(m.id);
        report.checked.objects += 1;
        report.checked.bytes += b
            .objects
            .iter()
            .filter(|o| o.key == manifest_key)
            .map(|o| o.size)
            .sum::<u64>();
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
        let continuous_from = match &opts.policy {
            Some(policy) => policy_floor(&inv, policy, opts.now).or(floor),
            None => floor,
        };
        report.problems.extend(check_continuity(
            &names,
            &histories,
            continuous_from,
            seg_size,
        ));
        orphans(&inv, floor, &mut report);
        tail_pieces(repo, &inv, &mut report).await?;
    }
    chains(&inv, &backups, &mut report);
    freshness(&inv, opts, &mut report);
    report.problems.sort();
    report.problems.dedup();
    report.sound = report.problems.is_empty();
    report.checked.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The lowest WAL floor `policy` keeps at `now` (see `retention::plan`): WAL is unbroken
/// from there on. `None` when the policy is not set, there is no backup, or a timeline's
/// ancestry is unknown (then `expire` removes no WAL, so the oldest backup's start applies).
fn policy_floor(
    inv: &crate::retention::Inventory,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<SegNo> {
    if !policy.is_set() {
        return None;
    }
    let backups = inv.summaries();
    let wal = inv.wal_objects();
    let plan = crate::retention::plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &inv.histories,
        seg_size: inv.seg_size,
        policy,
        now,
    });
    if !plan.unknown_timelines.is_empty() {
        return None;
    }
    let lowest = plan.wal_floors.values().min()?;
    Some(SegNo::containing(*lowest, inv.seg_size))
}

/// An incremental restores only with its whole chain: a member that is missing, or that
/// has a problem of its own, makes it (and every later member) unrestorable; say so for each.
fn chains(inv: &crate::retention::Inventory, checked: &[&StoredBackup], report: &mut VerifyReport) {
    let by_id: BTreeMap<BackupId, &crate::catalog::BackupManifest> =
        inv.backups.iter().map(|b| (b.id(), &b.manifest)).collect();
    let troubled: BTreeSet<String> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::BadManifest { backup, .. }
            | Problem::BundleSize { backup, .. }
            | Problem::FileMismatch { backup, .. }
            | Problem::PgManifestMismatch { backup, .. }
            | Problem::BackupWalMissing { backup, .. } => Some(backup.clone()),
            Problem::MissingObject { key } | Problem::CorruptObject { key, .. } => key
                .strip_prefix(layout::BACKUPS_PREFIX)
                .and_then(|rest| rest.split('/').next())
                .map(str::to_string),
            _ => None,
        })
        .collect();
    let mut broken = Vec::new();
    for b in checked.iter().filter(|b| b.manifest.is_incremental()) {
        let backup = b.id().to_string();
        match crate::backup::incremental::chain_in(&by_id, b.id()) {
            Err(message) => broken.push(Problem::BrokenChain { backup, message }),
            Ok(chain) => {
                for member in &chain[..chain.len() - 1] {
                    let id = member.id.to_string();
                    if troubled.contains(&id) {
                        broken.push(Problem::BrokenChain {
                            backup: backup.clone(),
                            message: format!("its chain member {id} has problems (listed above)"),
                        });
                        break;
                    }
                }
            }
        }
    }
    report.problems.extend(broken);
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

/// Reports each segment's stream tail pieces: how far they reach, whether a gap stops them
/// (bytes past a gap are never delivered), or that the complete segment supersedes them.
async fn tail_pieces(
    repo: &Repository,
    inv: &crate::retention::Inventory,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let mut segments: Vec<_> = inv.tail_pieces.iter().map(|(p, _)| p.segment()).collect();
    segments.sort();
    segments.dedup();
    for segment in segments {
        let pieces = inv
            .tail_pieces
            .iter()
            .filter(|(p, _)| p.segment() == segment);
        let (count, bytes) = pieces.fold((0, 0), |(n, b), (_, m)| (n + 1, b + m.size));
        let complete = inv
            .wal
            .iter()
            .any(|w| w.name == ArchiveFileName::Segment(segment));
        if complete {
            report.warnings.push(Warning::Orphans {
                what: format!(
                    "stream tail pieces of {segment}, whose complete segment is stored (left by a stream that stopped before removing them; expire removes them with the segment)"
                ),
                objects: count,
                bytes,
                first: layout::tail_pieces_prefix(segment),
            });
            continue;
        }
        let found = match crate::repo::partial::read_partial(repo, segment).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(crate::repo::RepoError::Corrupt { key, source, .. }) => {
                report.problems.push(Problem::CorruptObject {
                    key,
                    message: source.to_string(),
                });
                continue;
            }
            Err(e) => return Err(crate::retention::InventoryError::from(e).into()),
        };
        if let Some(j) = &found.journal
            && let crate::repo::journal::JournalEnd::Corrupt { at, next } = j.end
        {
            report.problems.push(Problem::CorruptObject {
                key: layout::tail_journal_key(segment).to_string(),
                message: format!(
                    "the journal frame at byte {at} is damaged (short or failing its crc32c) but a valid frame follows at byte {next}: frames from byte {at} on are not delivered"
                ),
            });
        }
        report.warnings.push(Warning::TailPieces {
            segment: segment.to_string(),
            base_len: found.base_len,
            pieces: found.pieces.len(),
            pieces_used: found.pieces_used,
            contiguous: found.content.len() as u64,
            gap: found.gap,
            journal: found.journal.map(|j| (j.frames, j.frames_used)),
        });
    }
    Ok(())
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
