//! The engine on hand-made histories (unit tests) and on random ones (proptest): no kept
//! backup loses WAL it needs, every second of the PITR window stays reachable, pins and
//! `min_backups` hold, and the plan does not depend on the listing's order.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::plan::{BackupSummary, PlanInputs, WalObject, plan};
use super::policy::{Policy, Rule, Timezone};
use crate::catalog::BackupId;
use crate::lsn::Lsn;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::history::TimelineHistory;
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::timeline::TimelineId;

const MIB16: u64 = 16 << 20;

fn seg_size() -> WalSegSize {
    WalSegSize::from_mib(16).unwrap()
}

fn backup(start: DateTime<Utc>, start_seg: u64, tli: u32) -> BackupSummary {
    BackupSummary {
        id: BackupId::from_start_time(start),
        start_lsn: Lsn(start_seg * MIB16 + 40),
        stop_lsn: Lsn((start_seg + 1) * MIB16 + 100),
        start_time: start,
        stop_time: start + chrono::Duration::minutes(10),
        start_timeline: TimelineId(tli),
        stop_timeline: TimelineId(tli),
        pinned: false,
        bytes: 1000,
        parent: None,
    }
}

fn segment(tli: u32, segno: u64) -> WalObject {
    WalObject {
        name: ArchiveFileName::Segment(
            WalFileName::new(TimelineId(tli), SegNo(segno), seg_size()).unwrap(),
        ),
        size: 10,
        tail: None,
    }
}

/// One backup a day at 01:00 for `days` days from 2024-01-01, 4 segments of WAL a day.
fn daily_history(days: u64) -> (Vec<BackupSummary>, Vec<WalObject>) {
    let first = Utc.with_ymd_and_hms(2024, 1, 1, 1, 0, 0).unwrap();
    let backups = (0..days)
        .map(|d| backup(first + chrono::Duration::days(d as i64), d * 4 + 1, 1))
        .collect();
    let wal = (0..days * 4 + 4).map(|s| segment(1, s)).collect();
    (backups, wal)
}

#[test]
fn the_30_12_12_7_plan_with_a_30_day_window() {
    let (backups, wal) = daily_history(3 * 365);
    let policy = Policy {
        pitr_window: Some(Duration::from_secs(30 * 86400)),
        daily: 30,
        weekly: 12,
        monthly: 12,
        yearly: 7,
        min_backups: None,
        timezone: Timezone::default(),
    };
    let now = backups.last().unwrap().stop_time + chrono::Duration::hours(1);
    let p = plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &[],
        seg_size: seg_size(),
        policy: &policy,
        now,
    });
    let with = |rule| p.kept.iter().filter(|k| k.rules.contains(&rule)).count();
    assert_eq!(with(Rule::Daily), 30);
    assert_eq!(with(Rule::Weekly), 12);
    assert_eq!(with(Rule::Monthly), 12);
    assert_eq!(with(Rule::Yearly), 3, "three calendar years hold backups");
    // The window's anchor ended at or before now - 30 days; it and the 30 after it stay.
    assert_eq!(with(Rule::Pitr), 31);
    let pitr = p.pitr.as_ref().unwrap();
    assert!(pitr.covered);
    // Far fewer than 1095 backups remain, and the WAL between GFS backups goes.
    assert!(p.kept.len() < 31 + 12 + 12 + 3 + 1, "{}", p.kept.len());
    assert_eq!(p.kept.len() + p.removed.len(), backups.len());
    assert!(p.wal_removed.len() > 3000, "{}", p.wal_removed.len());
    // A yearly backup keeps exactly its own segments below the floor.
    let y2024 = p
        .kept
        .iter()
        .find(|k| k.rules == [Rule::Yearly])
        .expect("2024's backup is kept by the yearly rule alone");
    let b = backups.iter().find(|b| b.id == y2024.id).unwrap();
    let first = b.start_lsn.0 / MIB16;
    for w in &p.wal_removed {
        let s = w.name.segment().unwrap().segno().0;
        assert!(!(first..=first + 1).contains(&s));
    }
    assert!(p.wal_ranges.iter().all(|r| r.timeline == TimelineId(1)));
}

#[test]
fn min_backups_and_pins_hold_and_no_backups_removes_no_wal() {
    let (mut backups, wal) = daily_history(10);
    backups[2].pinned = true;
    let policy = Policy {
        daily: 1,
        min_backups: Some(3),
        ..Policy::default()
    };
    let now = backups.last().unwrap().stop_time;
    let p = plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &[],
        seg_size: seg_size(),
        policy: &policy,
        now,
    });
    let ids: Vec<_> = p.kept.iter().map(|k| (k.id, k.rules.clone())).collect();
    // The newest three are kept (the pin does not count towards them), the newest also daily.
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[0], (backups[2].id, vec![Rule::Pinned]));
    assert_eq!(ids[1], (backups[7].id, vec![Rule::MinBackups]));
    assert_eq!(ids[2], (backups[8].id, vec![Rule::MinBackups]));
    assert_eq!(ids[3], (backups[9].id, vec![Rule::Daily]));
    let empty = plan(PlanInputs {
        backups: &[],
        wal: &wal,
        histories: &[],
        seg_size: seg_size(),
        policy: &policy,
        now,
    });
    assert!(empty.is_empty());
}

#[test]
fn a_kept_incremental_keeps_its_whole_chain() {
    // Ten daily backups; 3..=6 are incrementals chained on 2 (3 on 2, 4 on 3, ...).
    let (mut backups, wal) = daily_history(10);
    for i in 3..=6 {
        backups[i].parent = Some(backups[i - 1].id);
    }
    // Keep only the newest backup of its day and the pinned incremental 5.
    backups[5].pinned = true;
    let policy = Policy {
        daily: 1,
        min_backups: Some(1),
        ..Policy::default()
    };
    let now = backups.last().unwrap().stop_time;
    let p = plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &[],
        seg_size: seg_size(),
        policy: &policy,
        now,
    });
    for i in [2, 3, 4] {
        assert_eq!(
            p.rules_of(backups[i].id),
            Some(&[Rule::ChainParent][..]),
            "backup {i} is in the chain of the pinned incremental: {p:?}"
        );
    }
    assert!(p.rules_of(backups[5].id).is_some());
    // 6 is an incremental nobody keeps; 0, 1, 7, 8 are not in any kept chain.
    for i in [0, 1, 6, 7, 8] {
        assert!(
            p.rules_of(backups[i].id).is_none(),
            "backup {i} is not needed: {p:?}"
        );
    }
    // The WAL from the chain's full (2, segment 9) to the pinned incremental's stop (5,
    // segment 22) stays whole, between the members too; the WAL between 0 and 2 goes.
    let removed: Vec<u64> = p
        .wal_removed
        .iter()
        .filter_map(|w| w.name.segment().map(|s| s.segno().0))
        .collect();
    assert!(
        removed.iter().all(|&s| !(9..=22).contains(&s)),
        "WAL inside the kept chain removed: {removed:?}"
    );
    assert!(removed.contains(&3) && removed.contains(&7), "{removed:?}");
}

#[test]
fn a_window_longer_than_the_history_keeps_everything() {
    let (backups, wal) = daily_history(5);
    let policy = Policy {
        pitr_window: Some(Duration::from_secs(30 * 86400)),
        ..Policy::default()
    };
    let now = backups.last().unwrap().stop_time;
    let p = plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &[],
        seg_size: seg_size(),
        policy: &policy,
        now,
    });
    assert!(!p.pitr.unwrap().covered);
    assert_eq!(p.kept.len(), 5);
    // Only the WAL before the oldest backup goes.
    assert_eq!(p.wal_removed.len(), 1);
}

#[test]
fn calendar_buckets_follow_the_timezone() {
    // 23:30 UTC and 00:30 UTC the next day: one day in +02:00 (01:30 and 02:30 on the 2nd).
    let a = backup(Utc.with_ymd_and_hms(2024, 3, 1, 23, 30, 0).unwrap(), 1, 1);
    let b = backup(Utc.with_ymd_and_hms(2024, 3, 2, 0, 30, 0).unwrap(), 3, 1);
    let now = b.stop_time;
    let run = |tz: &str| {
        let policy = Policy {
            daily: 2,
            min_backups: Some(0),
            timezone: Timezone::parse(tz).unwrap(),
            ..Policy::default()
        };
        plan(PlanInputs {
            backups: &[a.clone(), b.clone()],
            wal: &[],
            histories: &[],
            seg_size: seg_size(),
            policy: &policy,
            now,
        })
        .kept
        .len()
    };
    assert_eq!(run("UTC"), 2);
    assert_eq!(run("+02:00"), 1);
    // Zone names: Paris is +01:00 in March, New York -05:00; both see one day.
    assert_eq!(run("Europe/Paris"), 1);
    assert_eq!(run("America/New_York"), 1);
}

#[test]
fn a_branch_keeps_its_own_window_and_an_unknown_ancestry_keeps_all_wal() {
    // Four daily backups on timeline 1; a restore of the third, promoted, became timeline 2
    // (forking between the third and the fourth) and archives on. A window anchored at the
    // fourth on timeline 1 must not take the third (timeline 2's only way back) nor timeline
    // 2's WAL, nor timeline 1's WAL from the third on, which timeline 2 replays.
    let (backups, mut wal) = daily_history(4);
    let fork = Lsn(11 * MIB16 + 100);
    let tl2 = TimelineHistory::first()
        .child(TimelineId(2), fork, "restore")
        .unwrap();
    for s in 11..20 {
        wal.push(segment(2, s));
    }
    let policy = Policy {
        pitr_window: Some(Duration::from_secs(3600)),
        ..Policy::default()
    };
    let now = backups[3].stop_time + chrono::Duration::hours(2);
    let run = |histories: &[TimelineHistory]| {
        plan(PlanInputs {
            backups: &backups,
            wal: &wal,
            histories,
            seg_size: seg_size(),
            policy: &policy,
            now,
        })
    };
    let p = run(std::slice::from_ref(&tl2));
    let kept: Vec<_> = p.kept.iter().map(|k| k.id).collect();
    assert_eq!(kept, [backups[2].id, backups[3].id], "{p:#?}");
    assert_eq!(p.pitr_timelines[&TimelineId(2)].anchor, Some(backups[2].id));
    for w in &p.wal_removed {
        let s = w.name.segment().unwrap();
        assert!(
            s.timeline() == TimelineId(1) && s.segno().0 < 9,
            "{s} removed"
        );
    }
    assert!(!p.wal_removed.is_empty());
    // Without 00000002.history, nothing says what timeline 2 needs: no WAL is removed.
    let p = run(&[]);
    assert_eq!(p.unknown_timelines, [TimelineId(2)]);
    assert!(p.wal_removed.is_empty());
}

/// A random history: backups in time and LSN order, timelines that only grow (each with its
/// `.history`), WAL on the timeline in force at each segment plus strays on known timelines,
/// and maybe a branch (timeline 50) forking from timeline 1 with its own WAL (a restore drill
/// that promoted and archived); a random policy and time.
type History = (
    Vec<BackupSummary>,
    Vec<WalObject>,
    Vec<TimelineHistory>,
    Policy,
    DateTime<Utc>,
);

fn history() -> impl Strategy<Value = History> {
    let backups = prop::collection::vec(
        (
            1u64..(40 * 86400),
            0u64..4,
            0u32..2,
            any::<bool>(),
            1u64..3600,
        ),
        0..14,
    );
    let policy = (
        prop::option::of(0u64..(60 * 86400)),
        0u32..5,
        0u32..4,
        0u32..4,
        0u32..3,
        prop::option::of(0u32..5),
        -12i32..14,
    );
    let branch = prop::option::of((0u64..60, 1u64..6, 0u64..(90 * 86400)));
    (
        backups,
        policy,
        0u64..(400 * 86400),
        prop::collection::vec((1u32..4, 0u64..80), 0..10),
        branch,
    )
        .prop_map(|(raw, pol, after, strays, branch)| {
            let mut time = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
            let start = time;
            let mut seg = 1u64;
            let mut tli = 1u32;
            let mut current = TimelineHistory::first();
            let mut histories = Vec::new();
            let mut backups = Vec::new();
            let mut wal = Vec::new();
            for (gap, segs, bump, pinned, secs) in raw {
                time += chrono::Duration::seconds(gap as i64);
                for s in seg..seg + segs + 1 {
                    wal.push(segment(tli, s));
                }
                seg += segs + 1;
                if bump == 1 {
                    let next = TimelineId(tli + 1);
                    current = current.child(next, Lsn(seg * MIB16), "test").unwrap();
                    histories.push(current.clone());
                    tli += 1;
                }
                let mut b = backup(time, seg, tli);
                b.stop_time = b.start_time + chrono::Duration::seconds(secs as i64);
                b.stop_lsn = Lsn(b.start_lsn.0 + secs * 1000);
                b.pinned = pinned;
                wal.push(segment(tli, seg));
                if b.stop_lsn.0 / MIB16 > seg {
                    wal.push(segment(tli, seg + 1));
                }
                seg = b.stop_lsn.0 / MIB16 + 1;
                time = b.stop_time;
                backups.push(b);
            }
            for s in seg..seg + 3 {
                wal.push(segment(tli, s));
            }
            for (t, s) in strays {
                wal.push(segment(t.min(tli), s));
            }
            if let Some((at, len, _)) = branch {
                let fork = TimelineHistory::first()
                    .child(TimelineId(50), Lsn(at * MIB16 + 8), "drill")
                    .unwrap();
                histories.push(fork);
                for s in at..at + len {
                    wal.push(segment(50, s));
                }
            }
            let policy = Policy {
                pitr_window: pol.0.map(Duration::from_secs),
                daily: pol.1,
                weekly: pol.2,
                monthly: pol.3,
                yearly: pol.4,
                min_backups: pol.5,
                timezone: Timezone::parse(&format!("{:+03}:00", pol.6)).unwrap(),
            };
            let _ = start;
            let now = time + chrono::Duration::seconds(after as i64);
            (backups, wal, histories, policy, now)
        })
}

/// The timelines whose path holds `(tli, lsn)`, per the histories.
fn on_path(histories: &[TimelineHistory], target: TimelineId, tli: TimelineId, lsn: Lsn) -> bool {
    if target.0 == 1 {
        return tli.0 == 1;
    }
    histories
        .iter()
        .find(|h| h.timeline() == target)
        .is_some_and(|h| h.contains_timeline(tli) && h.timeline_of(lsn) == tli)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plans_never_remove_what_is_needed(
        (backups, wal, histories, policy, now) in history(),
        seed in any::<u64>(),
    ) {
        let p = plan(PlanInputs { backups: &backups, wal: &wal, histories: &histories, seg_size: seg_size(), policy: &policy, now });
        let removed_wal = |tli: u32, segno: u64| {
            p.wal_removed.iter().any(|w| {
                let s = w.name.segment().unwrap();
                s.timeline().0 <= tli && s.segno().0 == segno
            })
        };
        // Every backup is kept or removed, never both.
        prop_assert_eq!(p.kept.len() + p.removed.len(), backups.len());
        // No kept backup loses a segment from its start to its stop LSN.
        for k in &p.kept {
            prop_assert!(!k.rules.is_empty());
            let b = backups.iter().find(|b| b.id == k.id).unwrap();
            for s in b.start_lsn.0 / MIB16..=b.stop_lsn.0 / MIB16 {
                prop_assert!(!removed_wal(b.stop_timeline.0, s), "backup {} lost segment {s}", b.id);
            }
        }
        // Pins and min_backups hold.
        for b in backups.iter().filter(|b| b.pinned) {
            prop_assert_eq!(p.rules_of(b.id).map(|r| r.contains(&Rule::Pinned)), Some(true));
        }
        prop_assert!(p.kept.len() >= backups.len().min(policy.min_backups() as usize));
        // The newest backup and the WAL after it always stay.
        if let Some(newest) = backups.last() {
            prop_assert!(p.rules_of(newest.id).is_some() || policy.min_backups() == 0 && !policy.is_set());
            // The newest min_backups are kept.
            let mut newest_first: Vec<&BackupSummary> = backups.iter().collect();
            newest_first.reverse();
            for b in newest_first.iter().take(policy.min_backups() as usize) {
                prop_assert!(p.rules_of(b.id).is_some(), "one of the newest {} removed", policy.min_backups());
            }
            for w in &p.wal_removed {
                prop_assert!(w.name.segment().unwrap().segno().0 < newest.start_lsn.0 / MIB16);
            }
        }
        // Every second of the PITR window is reachable on every timeline: from each moment t
        // of the window, the newest backup on the timeline's path consistent by t (or the
        // oldest, when none is) is kept, with all later ones on the path, and no WAL on the
        // timeline or its ancestors after its start is removed.
        if let Some(window) = policy.pitr_window {
            let start = now - chrono::Duration::from_std(window).unwrap();
            let mut timelines: Vec<TimelineId> = histories.iter().map(|h| h.timeline()).collect();
            timelines.push(TimelineId(1));
            for target in timelines {
                let path: Vec<&BackupSummary> = backups
                    .iter()
                    .filter(|b| on_path(&histories, target, b.stop_timeline, b.stop_lsn))
                    .collect();
                let ancestor = |t: TimelineId| t == target || histories.iter().any(|h| h.timeline() == target && h.contains_timeline(t));
                let Some(oldest) = path.first() else {
                    // No backup restores this timeline: none of its WAL goes.
                    prop_assert!(!p.wal_removed.iter().any(|w| ancestor(w.name.timeline())), "timeline {target}");
                    continue;
                };
                let anchor = path.iter().rev().find(|b| b.stop_time <= start).unwrap_or(oldest);
                for b in path.iter().filter(|b| b.start_lsn >= anchor.start_lsn) {
                    prop_assert!(p.rules_of(b.id).is_some(), "timeline {target}: backup {} of the window removed", b.id);
                }
                for w in &p.wal_removed {
                    let s = w.name.segment().unwrap();
                    prop_assert!(
                        !(ancestor(s.timeline()) && s.segno().0 >= anchor.start_lsn.0 / MIB16),
                        "timeline {target}: {} removed, after the anchor {}", s, anchor.id
                    );
                }
            }
        }
        // The same inputs in another order give the same plan.
        let mut b2 = backups.clone();
        let mut w2 = wal.clone();
        let mut rng = seed;
        let mut shuffle = |n: usize| { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as usize % n.max(1) };
        for i in (1..b2.len()).rev() { let j = shuffle(i + 1); b2.swap(i, j); }
        for i in (1..w2.len()).rev() { let j = shuffle(i + 1); w2.swap(i, j); }
        let mut h2 = histories.clone();
        h2.reverse();
        let p2 = plan(PlanInputs { backups: &b2, wal: &w2, histories: &h2, seg_size: seg_size(), policy: &policy, now });
        prop_assert_eq!(p, p2);
    }
}
