//! WAL continuity and timeline ancestry, as a pure function of the WAL listing and the
//! parsed `.history` files: which segments are missing on each timeline (as ranges), which
//! timelines lack their `.history`, and which histories name a parent whose own is missing.
//!
//! A timeline `T` should hold every segment from where it begins (the segment of its
//! switchpoint in `T.history`; timeline 1 from the floor) or the floor, whichever is later,
//! to its newest stored segment (`.partial` counts). The floor is the oldest complete
//! backup's start: WAL before it restores nothing and may have been expired.

use std::collections::{BTreeMap, BTreeSet};

use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::history::TimelineHistory;
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::timeline::TimelineId;

use super::Problem;

/// Checks continuity from `floor` on. `histories` holds every `.history` that was read.
pub fn check_continuity(
    names: &[ArchiveFileName],
    histories: &BTreeMap<TimelineId, TimelineHistory>,
    floor: Option<SegNo>,
    seg_size: WalSegSize,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(floor) = floor else {
        return problems;
    };
    let mut by_timeline: BTreeMap<TimelineId, BTreeSet<SegNo>> = BTreeMap::new();
    for name in names {
        if let ArchiveFileName::Segment(s) | ArchiveFileName::Partial(s) = name {
            by_timeline
                .entry(s.timeline())
                .or_default()
                .insert(s.segno());
        }
    }
    for (&tli, segnos) in &by_timeline {
        let Some(&last) = segnos.iter().next_back() else {
            continue;
        };
        if last < floor {
            continue;
        }
        let begin = if tli.0 == 1 {
            None
        } else {
            match histories.get(&tli) {
                Some(h) => h
                    .entries()
                    .last()
                    .map(|e| SegNo::containing(e.switchpoint, seg_size)),
                None => {
                    problems.push(Problem::MissingHistory { timeline: tli });
                    None
                }
            }
        };
        // Without a known beginning, the first stored segment at or after the floor is it.
        let first = match begin {
            Some(b) => b.max(floor),
            None => segnos
                .range(floor..)
                .next()
                .copied()
                .unwrap_or(floor)
                .max(floor),
        };
        let mut missing_from: Option<SegNo> = None;
        let mut s = first;
        while s <= last {
            let present = segnos.contains(&s);
            match (present, missing_from) {
                (false, None) => missing_from = Some(s),
                (true, Some(from)) => {
                    problems.push(gap(tli, from, SegNo(s.0 - 1), seg_size));
                    missing_from = None;
                }
                _ => {}
            }
            s = SegNo(s.0 + 1);
        }
        if let Some(from) = missing_from {
            problems.push(gap(tli, from, last, seg_size));
        }
    }
    for (&tli, history) in histories {
        for entry in history.entries() {
            if entry.parent.0 > 1 && !histories.contains_key(&entry.parent) {
                problems.push(Problem::MissingParentHistory {
                    timeline: tli,
                    parent: entry.parent,
                });
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn gap(tli: TimelineId, from: SegNo, to: SegNo, seg_size: WalSegSize) -> Problem {
    let name = |s: SegNo| {
        WalFileName::new(tli, s, seg_size)
            .map_or_else(|_| format!("segment {}", s.0), |n| n.to_string())
    };
    Problem::WalGap {
        timeline: tli,
        first_missing: name(from),
        last_missing: name(to),
        segments: to.0 - from.0 + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size() -> WalSegSize {
        WalSegSize::from_mib(16).unwrap()
    }

    fn seg(tli: u32, n: u64) -> ArchiveFileName {
        ArchiveFileName::Segment(WalFileName::new(TimelineId(tli), SegNo(n), size()).unwrap())
    }

    #[test]
    fn gaps_are_named_as_ranges_and_histories_checked() {
        let names = vec![
            seg(1, 1),
            seg(1, 2),
            seg(1, 5),
            seg(1, 6),
            seg(1, 9),
            seg(2, 9),
            seg(3, 12),
        ];
        let h2 = TimelineHistory::parse(
            TimelineId(2),
            b"1\t0/9100000\tno recovery target specified\n",
        )
        .unwrap();
        let h3 =
            TimelineHistory::parse(TimelineId(3), b"1\t0/9100000\tx\n2\t0/A000000\ty\n").unwrap();
        let mut histories = BTreeMap::new();
        histories.insert(TimelineId(3), h3);
        let problems = check_continuity(&names, &histories, Some(SegNo(2)), size());
        assert_eq!(
            problems,
            vec![
                Problem::WalGap {
                    timeline: TimelineId(1),
                    first_missing: "000000010000000000000003".into(),
                    last_missing: "000000010000000000000004".into(),
                    segments: 2
                },
                Problem::WalGap {
                    timeline: TimelineId(1),
                    first_missing: "000000010000000000000007".into(),
                    last_missing: "000000010000000000000008".into(),
                    segments: 2
                },
                Problem::WalGap {
                    timeline: TimelineId(3),
                    first_missing: "00000003000000000000000A".into(),
                    last_missing: "00000003000000000000000B".into(),
                    segments: 2
                },
                Problem::MissingHistory {
                    timeline: TimelineId(2)
                },
                Problem::MissingParentHistory {
                    timeline: TimelineId(3),
                    parent: TimelineId(2)
                },
            ]
        );
        histories.insert(TimelineId(2), h2);
        let names = vec![
            seg(1, 2),
            seg(1, 3),
            seg(2, 9),
            seg(2, 10),
            seg(3, 10),
            seg(3, 11),
        ];
        assert_eq!(
            check_continuity(&names, &histories, Some(SegNo(2)), size()),
            vec![]
        );
    }
}
