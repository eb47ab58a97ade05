//! Tests for `file_name.rs`: canonical round trips for every segment size and a table of
//! malformed names.

use proptest::prelude::*;

use super::*;

fn mib(m: u64) -> WalSegSize {
    WalSegSize::from_mib(m).unwrap()
}

fn tli(n: u32) -> TimelineId {
    TimelineId(n)
}

#[test]
fn known_names() {
    let wal = WalFileName::parse("000000010000000300000042", WalSegSize::DEFAULT).unwrap();
    assert_eq!(wal.timeline(), tli(1));
    assert_eq!(wal.segno(), SegNo(0x342));
    assert_eq!(wal.start_lsn(), Lsn(0x3_4200_0000));
    assert_eq!(wal.end_lsn(), Lsn(0x3_4300_0000));
    assert_eq!(wal.to_string(), "000000010000000300000042");

    // 1 MiB segments: the low field runs to FFF.
    let small = WalFileName::parse("000000020000000100000FFF", mib(1)).unwrap();
    assert_eq!(small.segno(), SegNo(0x1FFF));
    assert_eq!(
        small.next().unwrap().to_string(),
        "000000020000000200000000"
    );
    // 1 GiB segments: the low field runs to 3.
    let big = WalFileName::parse("000000010000000A00000003", mib(1024)).unwrap();
    assert_eq!(big.start_lsn(), Lsn(0xA_C000_0000));
    assert!(WalFileName::parse("000000010000000A00000004", mib(1024)).is_err());
}

#[test]
fn next_prev_at_edges() {
    let size = WalSegSize::DEFAULT;
    let first = WalFileName::new(tli(1), SegNo(0), size).unwrap();
    assert_eq!(first.prev(), None);
    assert_eq!(first.to_string(), "000000010000000000000000");
    let last = WalFileName::parse("00000001FFFFFFFF000000FF", size).unwrap();
    assert_eq!(last.next(), None);
    assert_eq!(last.prev().unwrap().to_string(), "00000001FFFFFFFF000000FE");
    assert_eq!(
        WalFileName::parse("0000000100000000000000FF", size)
            .unwrap()
            .next()
            .unwrap()
            .to_string(),
        "000000010000000100000000"
    );
    assert_eq!(
        first.on_timeline(tli(7)).unwrap().to_string(),
        "000000070000000000000000"
    );
    assert!(first.on_timeline(tli(0)).is_err());
}

#[test]
fn new_refuses_bad_parts() {
    let size = WalSegSize::DEFAULT;
    assert_eq!(
        WalFileName::new(tli(0), SegNo(1), size),
        Err(FileNameError::TimelineZero { segno: SegNo(1) })
    );
    let too_far = SegNo(size.max_segno().0 + 1);
    assert!(matches!(
        WalFileName::new(tli(1), too_far, size),
        Err(FileNameError::SegNoTooLarge { .. })
    ));
}

#[test]
fn covering_a_range() {
    let size = WalSegSize::DEFAULT;
    let names: Vec<String> = WalFileName::covering(tli(3), Lsn(0xFF_FFFF), Lsn(0x300_0001), size)
        .unwrap()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "000000030000000000000000",
            "000000030000000000000001",
            "000000030000000000000002",
            "000000030000000000000003"
        ]
    );
    assert_eq!(
        WalFileName::covering(tli(3), Lsn(5), Lsn(5), size)
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn archive_kinds_round_trip() {
    let size = WalSegSize::DEFAULT;
    let cases = [
        "000000010000000000000001",
        "000000010000000000000001.partial",
        "00000002.history",
        "0000000A.history",
        "000000010000000000000002.00000028.backup",
        "00000003000000FF000000FE.00FFFFF8.backup",
    ];
    for name in cases {
        let parsed = ArchiveFileName::parse(name, size).unwrap();
        assert_eq!(parsed.to_string(), name);
    }
    assert_eq!(
        ArchiveFileName::parse("0000000A.history", size).unwrap(),
        ArchiveFileName::History(tli(10))
    );
    let backup = ArchiveFileName::parse("000000010000000000000002.00000028.backup", size).unwrap();
    let ArchiveFileName::Backup { segment, offset } = backup else {
        panic!("{backup:?}")
    };
    assert_eq!((segment.segno(), offset), (SegNo(2), 0x28));
    assert_eq!(backup.timeline(), tli(1));
    assert_eq!(backup.segment(), Some(segment));
    assert_eq!(ArchiveFileName::History(tli(2)).segment(), None);
    assert!(matches!(
        ArchiveFileName::parse("000000010000000000000001.partial", size).unwrap(),
        ArchiveFileName::Partial(w) if w.segno() == SegNo(1)
    ));
}

/// Each malformed name, with the problem it must be refused for (`None`: any problem).
#[test]
fn malformed_names_are_refused() {
    use NameProblem::*;
    let size = WalSegSize::DEFAULT;
    let table: &[(&str, Option<NameProblem>)] = &[
        ("", Some(Empty)),
        ("00000001000000000000000a", Some(LowercaseHex)),
        ("0000000100000000000000ab", Some(LowercaseHex)),
        ("0000000a.history", Some(LowercaseHex)),
        ("00000001000000000000001", Some(UnknownForm)),
        ("0000000100000000000000011", Some(UnknownForm)),
        ("0000000100000000000000G1", Some(NotHex)),
        ("00000001000000000000 001", Some(BadCharacter)),
        ("../00000001000000000001", Some(PathSeparator)),
        ("../000000010000000000000001", Some(PathSeparator)),
        ("pg_wal/000000010000000000000001", Some(PathSeparator)),
        ("/000000010000000000000001", Some(PathSeparator)),
        ("000000010000000000000001/", Some(PathSeparator)),
        ("..\\00000001000000000001", Some(PathSeparator)),
        ("00000001000000000000000\0", Some(BadCharacter)),
        ("000000010000000000000001\0", Some(BadCharacter)),
        ("000000010000000000000001\n", Some(BadCharacter)),
        ("0000000100000000000000é", Some(BadCharacter)),
        ("000000010000000000000001.partial.tmp", Some(UnknownForm)),
        ("000000010000000000000001.PARTIAL", Some(UnknownForm)),
        ("000000010000000000000001.gz", Some(UnknownForm)),
        ("000000010000000000000001~", Some(UnknownForm)),
        ("000000000000000000000001", Some(TimelineZero)),
        ("000000000000000000000001.partial", Some(TimelineZero)),
        ("00000000.history", Some(TimelineZero)),
        (
            "000000010000000000000100",
            Some(SegmentOutOfRange {
                low: 0x100,
                segs_per_xlogid: 0x100,
                seg_size: size,
            }),
        ),
        ("0000000100000000FFFFFFFF", None),
        ("0000001.history", Some(UnknownForm)),
        ("000000001.history", Some(UnknownForm)),
        ("00000002.History", Some(UnknownForm)),
        (".history", Some(UnknownForm)),
        ("0000000G.history", Some(NotHex)),
        ("00000002.history.tmp", Some(UnknownForm)),
        ("000000010000000000000002.0000028.backup", Some(UnknownForm)),
        (
            "000000010000000000000002.00000028.backupx",
            Some(UnknownForm),
        ),
        ("000000010000000000000002.00000028", Some(UnknownForm)),
        (
            "000000010000000000000002.0000002a.backup",
            Some(LowercaseHex),
        ),
        (
            "000000010000000000000002.01000000.backup",
            Some(BackupOffsetOutOfRange {
                offset: 0x100_0000,
                seg_size: size,
            }),
        ),
        ("000000010000000000000002..backup", Some(UnknownForm)),
        ("RECOVERYXLOG", Some(UnknownForm)),
        ("archive_status", Some(UnknownForm)),
        (".", Some(UnknownForm)),
        ("..", Some(UnknownForm)),
        ("+00000010000000000000001", Some(NotHex)),
        (" 00000010000000000000001", Some(BadCharacter)),
        ("0x0000010000000000000001", Some(NotHex)),
    ];
    assert!(table.len() >= 30);
    for (name, want) in table {
        let err = ArchiveFileName::parse(name, size).expect_err(name);
        let FileNameError::Invalid {
            name: named,
            problem,
        } = &err
        else {
            panic!("{name:?}: {err:?}")
        };
        assert_eq!(named, name, "the error names the input");
        assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        if let Some(want) = want {
            assert_eq!(problem, want, "{name:?}");
        }
        // The segment-only parser refuses them too.
        assert!(WalFileName::parse(name, size).is_err(), "{name:?}");
    }
    // Valid archive names that are not plain segments.
    for name in ["00000002.history", "000000010000000000000001.partial"] {
        assert!(WalFileName::parse(name, size).is_err(), "{name}");
    }
}

/// Name <-> (timeline, segment) <-> LSN range, for one segment under one size.
fn check_round_trip(
    timeline: TimelineId,
    size: WalSegSize,
    segno: SegNo,
    offset: u32,
) -> Result<(), TestCaseError> {
    let wal = WalFileName::new(timeline, segno, size).unwrap();
    let name = wal.to_string();
    prop_assert_eq!(name.len(), 24);
    prop_assert!(
        name.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    );
    prop_assert_eq!(WalFileName::parse(&name, size).unwrap(), wal);
    prop_assert_eq!(
        name.clone(),
        format!(
            "{:08X}{:08X}{:08X}",
            timeline.0,
            segno.0 / size.segs_per_xlogid(),
            segno.0 % size.segs_per_xlogid()
        )
    );

    // LSN range: start .. end, and any byte inside maps back to the same name.
    let start = wal.start_lsn();
    prop_assert_eq!(start.segno(size), segno);
    prop_assert_eq!(start.segment_offset(size), 0);
    prop_assert_eq!(wal.end_lsn().0 - start.0, size.as_u64());
    let inside = Lsn(start.0 + u64::from(offset) % size.as_u64());
    prop_assert!(wal.contains(inside));
    prop_assert_eq!(
        WalFileName::containing(timeline, inside, size).unwrap(),
        wal
    );
    prop_assert_eq!(segno.lsn_at(inside.segment_offset(size), size), inside);

    // Neighbours are adjacent in LSN space and in name order.
    if let Some(next) = wal.next() {
        prop_assert_eq!(next.start_lsn(), wal.end_lsn());
        prop_assert!(next.to_string() > name.clone());
        prop_assert_eq!(next.prev(), Some(wal));
    }

    // The other archive kinds round trip too.
    for archive in [
        ArchiveFileName::Partial(wal),
        ArchiveFileName::History(timeline),
        ArchiveFileName::Backup {
            segment: wal,
            offset: offset % size.bytes(),
        },
    ] {
        prop_assert_eq!(
            ArchiveFileName::parse(&archive.to_string(), size).unwrap(),
            archive
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn name_segno_lsn_round_trip(t in 1u32.., raw in any::<u64>(), offset in any::<u32>()) {
        for size in WalSegSize::all() {
            check_round_trip(tli(t), size, SegNo(raw % (size.max_segno().0 + 1)), offset)?;
        }
    }

    #[test]
    fn every_size_round_trips_its_boundaries(t in 1u32..) {
        for size in WalSegSize::all() {
            for segno in [SegNo(0), SegNo(1), SegNo(size.segs_per_xlogid() - 1), SegNo(size.segs_per_xlogid()), size.max_segno()] {
                let wal = WalFileName::new(tli(t), segno, size).unwrap();
                prop_assert_eq!(WalFileName::parse(&wal.to_string(), size).unwrap(), wal);
            }
            // The first out-of-range low field is refused.
            let bad = format!("{:08X}00000000{:08X}", t, size.segs_per_xlogid());
            prop_assert!(WalFileName::parse(&bad, size).is_err(), "{} accepted for {}", bad, size);
        }
    }

    #[test]
    fn arbitrary_strings_parse_only_to_their_canonical_self(name in "[0-9A-Fa-f./\\\\x]{0,40}") {
        if let Ok(parsed) = ArchiveFileName::parse(&name, WalSegSize::DEFAULT) {
            prop_assert_eq!(parsed.to_string(), name);
        }
    }
}
