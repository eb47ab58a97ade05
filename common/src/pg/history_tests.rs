//! Tests for `history.rs`: parse/write round trips, refusals naming the line, lookups.

use super::*;

fn tli(n: u32) -> TimelineId {
    TimelineId(n)
}

/// A timeline-4 history as Postgres writes it: three promotions.
const TLI4: &str = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-20 14:03:00+00\n\n3\t1/A0\tat restore point \"before_upgrade\"\n";

#[test]
fn parses_what_postgres_writes_and_writes_it_back() {
    let history = TimelineHistory::parse(tli(4), TLI4.as_bytes()).unwrap();
    assert_eq!(history.timeline(), tli(4));
    assert_eq!(history.file_name(), "00000004.history");
    assert_eq!(
        history.entries(),
        &[
            HistoryEntry {
                parent: tli(1),
                switchpoint: Lsn(0x300_0158),
                reason: "no recovery target specified".into()
            },
            HistoryEntry {
                parent: tli(2),
                switchpoint: Lsn(0x500_0000),
                reason: "before 2026-11-20 14:03:00+00".into()
            },
            HistoryEntry {
                parent: tli(3),
                switchpoint: Lsn(0x1_0000_00A0),
                reason: "at restore point \"before_upgrade\"".into()
            },
        ]
    );
    assert_eq!(history.to_bytes(), TLI4.as_bytes());
    assert_eq!(history.to_string(), TLI4);
}

#[test]
fn child_appends_like_write_timeline_history() {
    let tli2 = TimelineHistory::first()
        .child(tli(2), Lsn(0x300_0158), "no recovery target specified")
        .unwrap();
    assert_eq!(
        tli2.to_bytes(),
        b"1\t0/3000158\tno recovery target specified\n"
    );
    let tli3 = tli2
        .child(tli(3), Lsn(0x500_0000), "before 2026-11-20 14:03:00+00")
        .unwrap();
    assert_eq!(
        tli3.to_bytes(),
        write_history_file(
            Some(tli2.to_bytes()),
            tli(2),
            Lsn(0x500_0000),
            "before 2026-11-20 14:03:00+00"
        )
    );
    assert!(
        tli3.to_string()
            .starts_with("1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\t")
    );
    assert_eq!(
        TimelineHistory::parse(tli(3), tli3.to_bytes()).unwrap(),
        tli3
    );
    // The server's time and LSN reasons end in a newline: kept in the bytes, not the entry.
    let tli4 = tli3
        .child(tli(4), Lsn(0x700_0000), "before LSN 0/7000000\n")
        .unwrap();
    assert_eq!(tli4.entries()[2].reason, "before LSN 0/7000000");
    assert!(
        tli4.to_bytes()
            .ends_with(b"\n\n3\t0/7000000\tbefore LSN 0/7000000\n\n")
    );
    let tli5 = tli4
        .child(tli(5), Lsn(0x800_0000), "no recovery target specified")
        .unwrap();
    assert!(
        tli5.to_bytes()
            .ends_with(b"0/7000000\n\n\n4\t0/8000000\tno recovery target specified\n")
    );
    assert_eq!(
        TimelineHistory::parse(tli(5), tli5.to_bytes()).unwrap(),
        tli5
    );
    // The child must be newer, the switchpoint not earlier, the reason one line.
    assert!(matches!(
        tli3.child(tli(3), Lsn(0x600_0000), "x"),
        Err(HistoryError::NotBelowChild { .. })
    ));
    assert!(matches!(
        tli3.child(tli(4), Lsn(0x400_0000), "x"),
        Err(HistoryError::SwitchpointDecreasing { .. })
    ));
    assert!(matches!(
        tli3.child(tli(4), Lsn(0x600_0000), "a\nb"),
        Err(HistoryError::ReasonHasNewline { .. })
    ));
}

#[test]
fn comments_blank_lines_and_crlf_are_ignored() {
    let text = "# written by hand\n\n   \n1\t0/3000000\treason one\r\n  # indented comment\n2\t0/4000000\n";
    let history = TimelineHistory::parse(tli(3), text.as_bytes()).unwrap();
    assert_eq!(history.entries().len(), 2);
    assert_eq!(history.entries()[0].reason, "reason one");
    assert_eq!(history.entries()[1].reason, "");
    assert_eq!(history.entries()[1].switchpoint, Lsn(0x400_0000));
    // Also accepts the PG19 zero-padded LSN form.
    let padded = TimelineHistory::parse(tli(2), b"1\t0/03000000\tx\n").unwrap();
    assert_eq!(padded.entries()[0].switchpoint, Lsn(0x300_0000));
    assert_eq!(TimelineHistory::parse(tli(2), b"").unwrap().entries(), &[]);
    // Blanks instead of tabs, as the server's sscanf accepts.
    let spaced = TimelineHistory::parse(tli(2), b"1  0/3000000 a reason\n").unwrap();
    assert_eq!(spaced.entries()[0].reason, "a reason");
}

#[test]
fn refusals_name_the_file_and_line() {
    let cases: &[(&[u8], u32, usize)] = &[
        (b"x\t0/1\tr\n", 2, 1),
        (b"1;0/1\tr\n", 2, 1),
        (b"1\t0/1;r\n", 2, 1),
        (b"\n1\tzz\tr\n", 2, 2),
        (b"1\n", 2, 1),
        (b"1\t0/1\n-2\t0/2\n", 3, 2),
        (b"99999999999\t0/1\n", 2, 1),
        (b"2\t0/1\n1\t0/2\n", 3, 2),
        (b"1\t0/1\n1\t0/2\n", 3, 2),
        (b"1\t0/2\n2\t0/1\n", 3, 2),
        (b"1\t0/1\n2\t0/2\n", 2, 2),
        (b"1\t0/1\n\n\n3\t0/2\n", 3, 4),
    ];
    for (text, timeline, line) in cases {
        let err =
            TimelineHistory::parse(tli(*timeline), text).expect_err(&String::from_utf8_lossy(text));
        let found_line = match &err {
            HistoryError::Syntax { line, .. }
            | HistoryError::NotIncreasing { line, .. }
            | HistoryError::NotBelowChild { line, .. }
            | HistoryError::SwitchpointDecreasing { line, .. } => *line,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(found_line, *line, "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("{timeline:08X}.history")),
            "{message}"
        );
        assert!(message.contains(&format!("line {line}")), "{message}");
    }
    assert!(matches!(
        TimelineHistory::parse(tli(0), b""),
        Err(HistoryError::TimelineZero { .. })
    ));
    assert!(matches!(
        TimelineHistory::parse(tli(2), b"0\t0/1\n"),
        Err(HistoryError::TimelineZero { .. })
    ));
}

#[test]
fn which_timeline_holds_an_lsn() {
    let history = TimelineHistory::parse(tli(4), TLI4.as_bytes()).unwrap();
    assert_eq!(history.timeline_of(Lsn(0)), tli(1));
    assert_eq!(history.timeline_of(Lsn(0x300_0157)), tli(1));
    assert_eq!(
        history.timeline_of(Lsn(0x300_0158)),
        tli(2),
        "the switchpoint belongs to the child"
    );
    assert_eq!(history.timeline_of(Lsn(0x4FF_FFFF)), tli(2));
    assert_eq!(history.timeline_of(Lsn(0x500_0000)), tli(3));
    assert_eq!(history.timeline_of(Lsn(0x1_0000_00A0)), tli(4));
    assert_eq!(history.timeline_of(Lsn(u64::MAX)), tli(4));
    assert_eq!(TimelineHistory::first().timeline_of(Lsn(0x1234)), tli(1));

    assert!(history.contains_timeline(tli(1)) && history.contains_timeline(tli(4)));
    assert!(!history.contains_timeline(tli(5)));
    assert_eq!(history.switch_point(tli(2)), Some(Lsn(0x500_0000)));
    assert_eq!(history.switch_point(tli(4)), None);
}

#[test]
fn spans_and_switch_points_on_the_path() {
    let history = TimelineHistory::parse(tli(4), TLI4.as_bytes()).unwrap();
    let spans = history.spans();
    assert_eq!(spans.len(), 4);
    assert_eq!(
        spans[0],
        TimelineSpan {
            timeline: tli(1),
            begin: Lsn::INVALID,
            end: Some(Lsn(0x300_0158))
        }
    );
    assert_eq!(
        spans[3],
        TimelineSpan {
            timeline: tli(4),
            begin: Lsn(0x1_0000_00A0),
            end: None
        }
    );
    let parents: Vec<_> = history
        .switches_between(Lsn(0x400_0000), Lsn(0x2_0000_0000))
        .iter()
        .map(|e| e.parent)
        .collect();
    assert_eq!(parents, [tli(2), tli(3)]);
    assert!(
        history
            .switches_between(Lsn(0x600_0000), Lsn(0x700_0000))
            .is_empty()
    );
}

#[test]
fn segment_chain_follows_the_timelines() {
    let size = WalSegSize::DEFAULT;
    let history = TimelineHistory::parse(tli(4), TLI4.as_bytes()).unwrap();
    // Segment 3 holds the 1->2 switchpoint: read from timeline 2. Segment 5 starts exactly
    // at the 2->3 switch: timeline 3; segment 4 is still timeline 2's.
    assert_eq!(history.timeline_of_segment(SegNo(2), size), tli(1));
    assert_eq!(history.timeline_of_segment(SegNo(3), size), tli(2));
    assert_eq!(history.timeline_of_segment(SegNo(4), size), tli(2));
    assert_eq!(history.timeline_of_segment(SegNo(5), size), tli(3));
    let names: Vec<String> = history
        .segments_between(Lsn(0x200_0028), Lsn(0x600_0010), size)
        .unwrap()
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "000000010000000000000002",
            "000000020000000000000003",
            "000000020000000000000004",
            "000000030000000000000005",
            "000000030000000000000006"
        ]
    );
    let tail = history
        .segments_between(Lsn(0x1_0000_0000), Lsn(0x1_0200_0000), size)
        .unwrap();
    assert_eq!(
        tail.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        ["000000040000000100000000", "000000040000000100000001"]
    );
}
