//! The policy engine: a pure function from what the repository holds (backup summaries, the
//! WAL listing), a [`Policy`] and a time to a [`Plan`] of what to keep and what to remove.
//!
//! No I/O happens here, so every rule is tested on random histories (`plan_tests.rs`). The
//! rules, in the order they are applied:
//!
//! 1. `pinned`: a pinned backup is kept.
//! 2. `after_now`: a backup that ended after the evaluation time is kept (`--now` in the past).
//! 3. `pitr`: the *anchor*, the newest backup whose consistency point (stop time) is at or
//!    before `now - pitr_window`, and every backup after it, are kept; with no such backup,
//!    every backup is (the window is not covered yet, and the plan says so).
//! 4. `daily`/`weekly`/`monthly`/`yearly`: in each of the N most recent calendar buckets that
//!    hold a backup, the newest one is kept.
//! 5. `min_backups`: the newest backups not kept yet, until that many are kept.
//!
//! WAL: every object on any timeline from the *floor* on (the anchor's start with a PITR
//! window, else the newest backup's start) is kept, so the archive's end, a backup in
//! progress and the window stay whole. Below the floor, a kept backup keeps the segments from
//! its start to its stop LSN on its timeline and every lower one (over-approximating its
//! ancestors is cheap and safe). Timeline `.history` files are never removed (a few bytes
//! each, and a timeline's ancestry must stay readable). Everything else is removed.
//!
//! Backups are ordered by start LSN, then start time, then id: from the manifests, never by
//! object name, and independent of the listing's order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::policy::{Period, Policy, Rule};
use crate::catalog::{BackupId, BackupManifest};
use crate::lsn::Lsn;
use crate::pg::file_name::ArchiveFileName;
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
}

/// Everything the engine decides from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    /// Complete backups, in any order.
    pub backups: &'a [BackupSummary],
    /// The WAL listing, in any order.
    pub wal: &'a [WalObject],
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
    /// WAL kept on every timeline from this LSN on (none when there is no backup: then no
    /// WAL is removed).
    pub wal_floor: Option<Lsn>,
    /// The PITR window, when one is configured and there are backups.
    pub pitr: Option<PitrCoverage>,
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

    let mut pitr = None;
    let mut floor = sorted.last().map(|b| b.start_lsn);
    if let (Some(window), false) = (policy.pitr_window, sorted.is_empty()) {
        let window_start = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let anchor_at = sorted.iter().rposition(|b| b.stop_time <= window_start);
        let covered = anchor_at.is_some();
        let anchor_at = anchor_at.unwrap_or(0);
        for b in &sorted[anchor_at..] {
            keep(b.id, Rule::Pitr);
        }
        floor = Some(sorted[anchor_at].start_lsn);
        pitr = Some(PitrCoverage {
            window_start,
            anchor: Some(sorted[anchor_at].id),
            covered,
        });
    }

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

    let min = policy.min_backups() as usize;
    for b in sorted.iter().rev() {
        if rules.len() >= min {
            break;
        }
        if !rules.contains_key(&b.id) {
            rules.entry(b.id).or_default().insert(Rule::MinBackups);
        }
    }

    let (kept, removed): (Vec<&BackupSummary>, Vec<&BackupSummary>) =
        sorted.iter().partition(|b| rules.contains_key(&b.id));
    let needs = WalNeeds::new(&kept, floor, seg_size);
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
        wal_floor: floor,
        pitr,
        wal_bytes: wal_removed.iter().map(|w| w.size).sum(),
        wal_ranges: ranges(&wal_removed),
        wal_removed,
    }
}

/// Which WAL the kept backups and the floor need.
#[derive(Debug)]
pub struct WalNeeds {
    floor: Option<SegNo>,
    /// Per kept backup: the highest timeline and the segment range it needs.
    spans: Vec<(TimelineId, SegNo, SegNo)>,
}

impl WalNeeds {
    fn new(kept: &[&BackupSummary], floor: Option<Lsn>, seg_size: WalSegSize) -> WalNeeds {
        WalNeeds {
            floor: floor.map(|lsn| SegNo::containing(lsn, seg_size)),
            spans: kept
                .iter()
                .map(|b| {
                    (
                        b.stop_timeline.max(b.start_timeline),
                        SegNo::containing(b.start_lsn, seg_size),
                        SegNo::containing(b.stop_lsn, seg_size),
                    )
                })
                .collect(),
        }
    }

    /// True when the object must stay.
    pub fn keeps(&self, name: ArchiveFileName) -> bool {
        let Some(floor) = self.floor else {
            return true; // no backup: nothing is known to be unneeded
        };
        let Some(segment) = name.segment() else {
            return true; // .history
        };
        let segno = segment.segno();
        segno >= floor
            || self.spans.iter().any(|&(tli, first, last)| {
                segment.timeline() <= tli && first <= segno && segno <= last
            })
    }
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
