//! The policy engine: a pure function from what the repository holds (backup summaries, the
//! WAL listing), a [`Policy`] and a time to a [`Plan`] of what to keep and what to remove.
//!
//! No I/O happens here, so every rule is tested on random histories (`plan_tests.rs`). The
//! rules, in the order they are applied:
//!
//! 1. `pinned`: a pinned backup is kept.
//! 2. `after_now`: a backup that ended after the evaluation time is kept (`--now` in the past).
//! 3. `pitr`: for every timeline `T` (every one that holds WAL or a backup, or has a
//!    `.history`), among the backups on `T`'s ancestry (those whose stop LSN lies on the
//!    path of `T`'s history), the *anchor*, the newest whose consistency point (stop time) is
//!    at or before `now - pitr_window`, and every one after it, are kept; with no such
//!    backup, every backup on the path is (the window is not covered yet, and the plan says
//!    so). Every timeline counts, not only the newest: a restore drill that promoted and
//!    archived may own the highest id while production continues on another.
//! 4. `daily`/`weekly`/`monthly`/`yearly`: in each of the N most recent calendar buckets that
//!    hold a backup, the newest one is kept.
//! 5. `min_backups`: the newest N backups are kept (pins elsewhere do not count towards them).
//! 6. `chain_parent`: the parent of a kept incremental is kept, and so on down to its full
//!    backup (an incremental restores only with its whole chain).
//!
//! WAL: for every timeline `T`, every object on `T` or an ancestor of `T`, from `T`'s *floor*
//! on (its anchor's start with a PITR window, else the start of the newest backup on its path;
//! with no backup on its path, from the beginning), is kept, so the archive's end, a backup in
//! progress and the window stay whole on every branch. Below the floors, a kept backup keeps
//! the segments from its start to its stop LSN on its timeline and every lower one
//! (over-approximating its ancestors is cheap and safe); a kept incremental keeps them from
//! its chain's full on, so WAL is unbroken across each kept chain. A timeline after 1 without a
//! `.history` has an unknown ancestry: then no WAL at all is removed (the plan names it).
//! Timeline `.history` files are never removed (a few bytes each, and a timeline's ancestry
//! must stay readable). Everything else is removed.
//!
//! Backups are ordered by start LSN, then start time, then id: from the manifests, never by
//! object name, and independent of the listing's order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::policy::{Period, Policy, Rule};
use crate::catalog::{BackupId, BackupManifest};
use crate::lsn::Lsn;
use crate::pg::file_name::ArchiveFileName;
use crate::pg::history::TimelineHistory;
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::timeline::TimelineId;

/// What the engine needs to know of one complete backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The backup's id.
    pub id: BackupId,
    /// Where its WAL starts.
    pub start_lsn: Lsn,
    /// Where it is consistent.
    pub stop_lsn: Lsn,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// When it ended (its consistency point).
    pub stop_time: DateTime<Utc>,
    /// Timeline it started on.
    pub start_timeline: TimelineId,
    /// Timeline it ended on.
    pub stop_timeline: TimelineId,
    /// Pinned with `walship pin`.
    pub pinned: bool,
    /// Bytes stored under `backups/<id>/`.
    pub bytes: u64,
    /// For an incremental: the backup it was taken against (restoring it needs that one).
    pub parent: Option<BackupId>,
}

impl BackupSummary {
    /// The summary of a manifest.
    pub fn from_manifest(m: &BackupManifest, pinned: bool, bytes: u64) -> BackupSummary {
        BackupSummary {
            id: m.id,
            start_lsn: m.start_lsn,
            stop_lsn: m.stop_lsn,
            start_time: m.start_time,
            stop_time: m.stop_time,
            start_timeline: m.start_timeline,
            stop_timeline: m.stop_timeline,
            pinned,
            bytes,
            parent: m.parent,
        }
    }

    fn order_key(&self) -> (Lsn, DateTime<Utc>, BackupId) {
        (self.start_lsn, self.start_time, self.id)
    }
}

/// One object under `wal/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalObject {
    /// Its parsed name.
    pub name: ArchiveFileName,
    /// Stored size.
    pub size: u64,
    /// For a stream tail piece (`<name>.partial.<offset>`) or journal
    /// (`<name>.partial.journal`), `name` then being the segment's `.partial`: the object,
    /// kept or removed with its segment like the `.partial`.
    pub tail: Option<crate::repo::layout::TailObject>,
}

impl WalObject {
    /// The object's key.
    pub fn key(&self) -> crate::storage::ObjectKey {
        match self.tail {
            Some(tail) => tail.key(),
            None => crate::repo::layout::wal_key(&self.name),
        }
    }
}

/// Everything the engine decides from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    /// Complete backups, in any order.
    pub backups: &'a [BackupSummary],
    /// The WAL listing, in any order.
    pub wal: &'a [WalObject],
    /// The repository's `.history` files, parsed, in any order.
    pub histories: &'a [TimelineHistory],
    /// The repository's segment size.
    pub seg_size: WalSegSize,
    /// The policy.
    pub policy: &'a Policy,
    /// The time the policy is evaluated at.
    pub now: DateTime<Utc>,
}

/// A backup the plan keeps, and every rule that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptBackup {
    /// Its id.
    pub id: BackupId,
    /// The rules keeping it (at least one).
    pub rules: Vec<Rule>,
}

/// A backup the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemovedBackup {
    /// Its id.
    pub id: BackupId,
    /// Bytes stored under `backups/<id>/`.
    pub bytes: u64,
}

/// A run of WAL objects removed on one timeline, for people: first and last segment names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalRange {
    /// The timeline.
    pub timeline: TimelineId,
    /// First segment of the run.
    pub first: String,
    /// Last segment of the run.
    pub last: String,
    /// Objects in the run (segments, `.partial` and `.backup` files).
    pub objects: usize,
    /// Their stored bytes.
    pub bytes: u64,
}

/// How the PITR window stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PitrCoverage {
    /// `now - pitr_window`.
    pub window_start: DateTime<Utc>,
    /// The backup the window restores from at its start.
    pub anchor: Option<BackupId>,
    /// True when the anchor's consistency point is at or before the window's start, so every
    /// second of the window is restorable; false while the repository is younger than it.
    pub covered: bool,
}

/// What `expire` keeps and removes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The time the policy was evaluated at.
    pub now: DateTime<Utc>,
    /// Kept backups, oldest first.
    pub kept: Vec<KeptBackup>,
    /// Removed backups, oldest first.
    pub removed: Vec<RemovedBackup>,
    /// Per timeline, WAL on it and its ancestors is kept from this LSN on.
    pub wal_floors: BTreeMap<TimelineId, Lsn>,
    /// Timelines after 1 with WAL or backups but no `.history`: while there is one, no WAL is
    /// removed.
    pub unknown_timelines: Vec<TimelineId>,
    /// The PITR window on the timeline of the newest backup, when one is configured.
    pub pitr: Option<PitrCoverage>,
    /// The PITR window on every timeline.
    pub pitr_timelines: BTreeMap<TimelineId, PitrCoverage>,
    /// Removed WAL objects, by timeline and segment.
    #[serde(skip)]
    pub wal_removed: Vec<WalObject>,
    /// The same as runs per timeline.
    pub wal_ranges: Vec<WalRange>,
    /// Bytes the removed backups hold.
    pub backup_bytes: u64,
    /// Bytes the removed WAL holds.
    pub wal_bytes: u64,
}

impl Plan {
    /// The rules keeping `id`, if the plan keeps it.
    pub fn rules_of(&self, id: BackupId) -> Option<&[Rule]> {
        self.kept
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.rules.as_slice())
    }

    /// True when the plan removes nothing.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.wal_removed.is_empty()
    }
}

/// Computes the plan. Pure: the same inputs, in any order, give the same plan.
pub fn plan(inputs: PlanInputs<'_>) -> Plan {
    let PlanInputs {
        backups,
        wal,
        histories,
        seg_size,
        policy,
        now,
    } = inputs;
    let mut sorted: Vec<&BackupSummary> = backups.iter().collect();
    sorted.sort_by_key(|b| b.order_key());
    sorted.dedup_by_key(|b| b.id);
    let mut rules: BTreeMap<BackupId, BTreeSet<Rule>> = BTreeMap::new();
    let mut keep = |id: BackupId, rule: Rule| {
        rules.entry(id).or_default().insert(rule);
    };

    for b in &sorted {
        if b.pinned {
            keep(b.id, Rule::Pinned);
        }
        if b.stop_time > now {
            keep(b.id, Rule::AfterNow);
        }
    }

    let paths = TimelinePaths::new(histories, &sorted, wal);
    let mut pitr_timelines = BTreeMap::new();
    let mut floors: BTreeMap<TimelineId, Lsn> = BTreeMap::new();
    let window_start = policy.pitr_window.map(|window| {
        chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    for &tli in paths.known() {
        let on_path: Vec<&BackupSummary> = sorted
            .iter()
            .copied()
            .filter(|b| paths.on_path(tli, b.stop_timeline, b.stop_lsn))
            .collect();
        let floor = match window_start {
            Some(window_start) => {
                if on_path.is_empty() {
                    floors.insert(tli, Lsn(0));
                    continue;
                }
                let anchor_at = on_path.iter().rposition(|b| b.stop_time <= window_start);
                let anchor = on_path[anchor_at.unwrap_or(0)];
                for b in &on_path[anchor_at.unwrap_or(0)..] {
                    keep(b.id, Rule::Pitr);
                }
                pitr_timelines.insert(
                    tli,
                    PitrCoverage {
                        window_start,
                        anchor: Some(anchor.id),
                        covered: anchor_at.is_some(),
                    },
                );
                anchor.start_lsn
            }
            None => on_path.last().map_or(Lsn(0), |b| b.start_lsn),
        };
        floors.insert(tli, floor);
    }
    let pitr = sorted
        .last()
        .and_then(|newest| pitr_timelines.get(&newest.stop_timeline).cloned());

    for (count, period, rule) in [
        (policy.daily, Period::Day, Rule::Daily),
        (policy.weekly, Period::Week, Rule::Weekly),
        (policy.monthly, Period::Month, Rule::Monthly),
        (policy.yearly, Period::Year, Rule::Yearly),
    ] {
        if count == 0 {
            continue;
        }
        // Newest first: the first backup seen in a bucket is its newest.
        let mut buckets = BTreeSet::new();
        for b in sorted.iter().rev().filter(|b| b.start_time <= now) {
            let bucket = policy.timezone.bucket(b.start_time, period);
            if buckets.len() >= count as usize && !buckets.contains(&bucket) {
                break;
            }
            if buckets.insert(bucket) {
                keep(b.id, rule);
            }
        }
    }

    // The newest `min_backups` are kept whatever else the rules say (a pin on an old backup
    // does not count towards them: the newest state must stay restorable).
    let min = policy.min_backups() as usize;
    for b in sorted.iter().rev().take(min) {
        if !rules.contains_key(&b.id) {
            rules.entry(b.id).or_default().insert(Rule::MinBackups);
        }
    }

    // A kept incremental keeps its whole chain: newest first, so that a parent kept this
    // way keeps its own parent in turn (parents are always older).
    for b in sorted.iter().rev() {
        if let Some(parent) = b.parent
            && rules.contains_key(&b.id)
            && sorted.iter().any(|p| p.id == parent)
        {
            rules.entry(parent).or_default().insert(Rule::ChainParent);
        }
    }

    let (kept, removed): (Vec<&BackupSummary>, Vec<&BackupSummary>) =
        sorted.iter().partition(|b| rules.contains_key(&b.id));
    let needs = WalNeeds::new(&kept, &floors, &paths, seg_size);
    let mut wal_removed: Vec<WalObject> = wal
        .iter()
        .filter(|w| !needs.keeps(w.name))
        .copied()
        .collect();
    wal_removed.sort_by_key(|w| {
        (
            w.name.timeline(),
            w.name.segment().map(|s| s.segno()),
            w.name,
        )
    });
    wal_removed.dedup();

    Plan {
        now,
        kept: kept
            .iter()
            .map(|b| KeptBackup {
                id: b.id,
                rules: rules
                    .get(&b.id)
                    .map(|r| r.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect(),
        backup_bytes: removed.iter().map(|b| b.bytes).sum(),
        removed: removed
            .iter()
            .map(|b| RemovedBackup {
                id: b.id,
                bytes: b.bytes,
            })
            .collect(),
        wal_floors: floors,
        unknown_timelines: paths.unknown.clone(),
        pitr,
        pitr_timelines,
        wal_bytes: wal_removed.iter().map(|w| w.size).sum(),
        wal_ranges: ranges(&wal_removed),
        wal_removed,
    }
}

/// Every timeline the repository knows of, and the ancestry of each.
#[derive(Debug)]
struct TimelinePaths {
    /// Timeline -> its history (timeline 1: none, an empty path).
    histories: BTreeMap<TimelineId, Option<TimelineHistory>>,
    /// Timelines with a known ancestry.
    known: Vec<TimelineId>,
    /// Timelines after 1 without a `.history`.
    unknown: Vec<TimelineId>,
}

impl TimelinePaths {
    fn new(histories: &[TimelineHistory], backups: &[&BackupSummary], wal: &[WalObject]) -> Self {
        let mut all: BTreeSet<TimelineId> = histories.iter().map(|h| h.timeline()).collect();
        all.extend(
            backups
                .iter()
                .flat_map(|b| [b.start_timeline, b.stop_timeline]),
        );
        all.extend(wal.iter().map(|w| w.name.timeline()));
        let mut map = BTreeMap::new();
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for tli in all {
            if tli.0 <= 1 {
                map.insert(tli, None);
                known.push(tli);
            } else if let Some(h) = histories.iter().find(|h| h.timeline() == tli) {
                map.insert(tli, Some(h.clone()));
                known.push(tli);
            } else {
                unknown.push(tli);
            }
        }
        TimelinePaths {
            histories: map,
            known,
            unknown,
        }
    }

    fn known(&self) -> &[TimelineId] {
        &self.known
    }

    /// True when `lsn` on timeline `at` lies on the path to `target`.
    fn on_path(&self, target: TimelineId, at: TimelineId, lsn: Lsn) -> bool {
        match self.histories.get(&target) {
            Some(Some(h)) => h.contains_timeline(at) && h.timeline_of(lsn) == at,
            Some(None) => at == target,
            None => false,
        }
    }

    /// True when `t` is `target` or one of its ancestors.
    fn is_ancestor(&self, target: TimelineId, t: TimelineId) -> bool {
        match self.histories.get(&target) {
            Some(Some(h)) => h.contains_timeline(t),
            Some(None) => t == target,
            None => false,
        }
    }
}

/// Which WAL the kept backups and the floors need.
#[derive(Debug)]
struct WalNeeds<'a> {
    /// Per timeline, in segments.
    floors: Vec<(TimelineId, SegNo)>,
    paths: &'a TimelinePaths,
    /// Per kept backup: the highest timeline and the segment range it needs.
    spans: Vec<(TimelineId, SegNo, SegNo)>,
    keep_all: bool,
}

impl<'a> WalNeeds<'a> {
    fn new(
        kept: &[&BackupSummary],
        floors: &BTreeMap<TimelineId, Lsn>,
        paths: &'a TimelinePaths,
        seg_size: WalSegSize,
    ) -> WalNeeds<'a> {
        WalNeeds {
            floors: floors
                .iter()
                .map(|(&t, &lsn)| (t, SegNo::containing(lsn, seg_size)))
                .collect(),
            paths,
            spans: kept
                .iter()
                .map(|b| {
                    (
                        b.stop_timeline.max(b.start_timeline),
                        SegNo::containing(chain_start(b, kept), seg_size),
                        SegNo::containing(b.stop_lsn, seg_size),
                    )
                })
                .collect(),
            // No backup: nothing is known to be unneeded. An unknown ancestry: the same.
            keep_all: kept.is_empty() || !paths.unknown.is_empty(),
        }
    }

    /// True when the object must stay.
    fn keeps(&self, name: ArchiveFileName) -> bool {
        if self.keep_all {
            return true;
        }
        let Some(segment) = name.segment() else {
            return true; // .history
        };
        let (tli, segno) = (segment.timeline(), segment.segno());
        self.floors
            .iter()
            .any(|&(target, floor)| segno >= floor && self.paths.is_ancestor(target, tli))
            || self
                .spans
                .iter()
                .any(|&(top, first, last)| tli <= top && first <= segno && segno <= last)
    }
}

/// Where the WAL a kept backup keeps begins: its own start, or for an incremental the start
/// of the oldest kept member of its chain (its full, since a kept incremental keeps its whole
/// chain). WAL then runs unbroken across each kept chain: a time between its members stays
/// reachable, and `verify`, which expects WAL from the oldest backup on, finds no gap there.
fn chain_start(b: &BackupSummary, kept: &[&BackupSummary]) -> Lsn {
    let mut start = b.start_lsn;
    let mut next = b.parent;
    // Parents are older; the bound stops a malformed loop.
    for _ in 0..kept.len() {
        let Some(parent) = next.and_then(|id| kept.iter().find(|k| k.id == id)) else {
            break;
        };
        start = start.min(parent.start_lsn);
        next = parent.parent;
    }
    start
}

fn ranges(removed: &[WalObject]) -> Vec<WalRange> {
    let mut out: Vec<(WalRange, SegNo)> = Vec::new();
    for w in removed {
        let Some(segment) = w.name.segment() else {
            continue;
        };
        let name = segment.to_string();
        match out.last_mut() {
            Some((run, last))
                if run.timeline == segment.timeline()
                    && (segment.segno() == *last
                        || Some(segment.segno()) == last.0.checked_add(1).map(SegNo)) =>
            {
                run.last = name;
                run.objects += 1;
                run.bytes += w.size;
                *last = segment.segno();
            }
            _ => out.push((
                WalRange {
                    timeline: segment.timeline(),
                    first: name.clone(),
                    last: name,
                    objects: 1,
                    bytes: w.size,
                },
                segment.segno(),
            )),
        }
    }
    out.into_iter().map(|(run, _)| run).collect()
}
