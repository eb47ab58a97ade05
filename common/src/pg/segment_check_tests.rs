//! Tests for `segment_check.rs` on synthetic segments (real ones are checked by
//! `common/tests/page_header_real.rs`).

use super::*;
use crate::pg::page_header::{XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER};
use crate::pg::segment::SegNo;

const MAGIC_15: u16 = 0xD110;
/// The system identifier of the synthetic segments.
pub(crate) const SYSID: u64 = 7_000_000_000_000_000_001;
const BLOCK: usize = XLOG_BLCKSZ as usize;

fn one_mib() -> WalSegSize {
    WalSegSize::from_mib(1).unwrap()
}

/// Segment `segno` of timeline `tli`, in a cluster of 1 MiB segments.
pub(crate) fn name(tli: u32, segno: u64) -> WalFileName {
    WalFileName::new(TimelineId(tli), SegNo(segno), one_mib()).unwrap()
}

fn short(magic: u16, info: u16, tli: u32, pageaddr: Lsn) -> XLogPageHeaderData {
    XLogPageHeaderData {
        xlp_magic: magic,
        xlp_info: info,
        xlp_tli: TimelineId(tli),
        xlp_pageaddr: pageaddr,
        xlp_rem_len: 0,
    }
}

/// A segment of `file` where every page has a valid header and some payload (Postgres 15's
/// page magic), for tests elsewhere in the crate too.
pub(crate) fn segment(file: WalFileName) -> Vec<u8> {
    let size = file.seg_size().bytes() as usize;
    let mut bytes = vec![0u8; size];
    for (index, page) in bytes.chunks_exact_mut(BLOCK).enumerate() {
        let at = Lsn(file.start_lsn().0 + (index * BLOCK) as u64);
        let tli = file.timeline().0;
        if index == 0 {
            let long = XLogLongPageHeaderData {
                std: short(MAGIC_15, XLP_LONG_HEADER, tli, at),
                xlp_sysid: SYSID,
                xlp_seg_size: size as u32,
                xlp_xlog_blcksz: XLOG_BLCKSZ,
            };
            page[..40].copy_from_slice(&long.encode());
        } else {
            page[..24].copy_from_slice(&short(MAGIC_15, XLP_FIRST_IS_CONTRECORD, tli, at).encode());
        }
        page[100] = 0xAB;
    }
    bytes
}

fn set_page(bytes: &mut [u8], index: usize, header: XLogPageHeaderData) {
    bytes[index * BLOCK..index * BLOCK + 24].copy_from_slice(&header.encode());
}

fn page_lsn(file: WalFileName, index: usize) -> Lsn {
    Lsn(file.start_lsn().0 + (index * BLOCK) as u64)
}

#[test]
fn a_full_segment_validates() {
    let file = name(1, 5);
    let report = validate_segment(&segment(file), file, Some(SYSID)).unwrap();
    assert_eq!(report.header.major(), 15);
    assert_eq!(report.header.system_identifier, SYSID);
    assert_eq!(report.header.seg_size, one_mib());
    assert_eq!(report.header.first_page_timeline, TimelineId(1));
    assert_eq!(report.end, WalEnd::Full);
    assert_eq!(report.valid_end(file), file.end_lsn());
    assert_eq!(report.valid_page_after_end, None);
    // No sysid expectation: anything goes.
    assert!(validate_segment(&segment(file), file, None).is_ok());
    assert_eq!(
        read_segment_header("x", &segment(file)).unwrap(),
        report.header
    );
}

#[test]
fn zeroed_tail_after_a_switch_is_the_end_not_an_error() {
    let file = name(1, 5);
    let mut bytes = segment(file);
    bytes[40 * BLOCK..].fill(0);
    let report = validate_segment(&bytes, file, Some(SYSID)).unwrap();
    assert_eq!(
        report.end,
        WalEnd::Zeroed {
            at: page_lsn(file, 40)
        }
    );
    assert_eq!(report.valid_end(file), page_lsn(file, 40));
    assert_eq!(report.valid_page_after_end, None);
}

#[test]
fn recycled_tail_is_the_end() {
    let file = name(1, 9);
    let mut bytes = segment(file);
    let old = segment(name(1, 3));
    bytes[7 * BLOCK..].copy_from_slice(&old[7 * BLOCK..]);
    let report = validate_segment(&bytes, file, Some(SYSID)).unwrap();
    assert_eq!(
        report.end,
        WalEnd::Recycled {
            at: page_lsn(file, 7),
            found: page_lsn(name(1, 3), 7)
        }
    );
    assert_eq!(report.valid_page_after_end, None);
}

#[test]
fn a_hole_is_reported() {
    let file = name(1, 5);
    let mut bytes = segment(file);
    bytes[10 * BLOCK..11 * BLOCK].fill(0);
    let report = validate_segment(&bytes, file, None).unwrap();
    assert_eq!(
        report.end,
        WalEnd::Zeroed {
            at: page_lsn(file, 10)
        }
    );
    assert_eq!(report.valid_page_after_end, Some(page_lsn(file, 11)));
}

#[test]
fn the_first_segment_of_a_new_timeline_may_carry_parent_pages() {
    let file = name(2, 5);
    let mut bytes = segment(file);
    let mut long = XLogLongPageHeaderData::decode(&bytes).unwrap();
    long.std.xlp_tli = TimelineId(1);
    bytes[..40].copy_from_slice(&long.encode());
    for index in 1..20 {
        set_page(
            &mut bytes,
            index,
            short(MAGIC_15, 0, 1, page_lsn(file, index)),
        );
    }
    let report = validate_segment(&bytes, file, None).unwrap();
    assert_eq!(report.header.first_page_timeline, TimelineId(1));
}

fn refusal(bytes: &[u8], file: WalFileName, sysid: Option<u64>) -> SegmentError {
    let err = validate_segment(bytes, file, sysid).unwrap_err();
    assert!(
        err.to_string().contains(&file.to_string()),
        "error names the file: {err}"
    );
    err
}

#[test]
fn refusals_name_file_expected_and_found() {
    let file = name(1, 5);
    let good = segment(file);

    let err = refusal(&good[..good.len() - 1], file, None);
    assert_eq!(
        err,
        SegmentError::WrongLength {
            file: file.to_string(),
            expected: 1 << 20,
            found: (1 << 20) - 1
        }
    );
    assert!(matches!(
        refusal(&good[..100], file, None),
        SegmentError::WrongLength { .. }
    ));
    assert!(matches!(
        refusal(&[], file, None),
        SegmentError::WrongLength { .. }
    ));

    let err = refusal(&good, file, Some(42));
    assert_eq!(
        err,
        SegmentError::SystemIdMismatch {
            file: file.to_string(),
            expected: 42,
            found: SYSID
        }
    );
    assert!(err.to_string().contains("42") && err.to_string().contains(&SYSID.to_string()));

    // The same bytes under another segment's name.
    let other = name(1, 6);
    let err = refusal(&good, other, Some(SYSID));
    assert_eq!(
        err,
        SegmentError::PageAddrMismatch {
            file: other.to_string(),
            expected: other.start_lsn(),
            found: file.start_lsn()
        }
    );

    // Under the same segment number but another segment size.
    let sixteen = WalFileName::new(TimelineId(1), SegNo(5), WalSegSize::DEFAULT).unwrap();
    assert!(matches!(
        refusal(&good, sixteen, None),
        SegmentError::WrongLength { .. }
    ));
    let mut big = good.clone();
    big.resize(16 << 20, 0);
    assert!(matches!(
        refusal(&big, sixteen, None),
        SegmentError::SegSizeMismatch {
            expected: 16777216,
            found: 1048576,
            ..
        }
    ));

    // A later timeline in the name is fine; an earlier one is not.
    assert!(validate_segment(&good, name(3, 5), None).is_ok());
    let tli2 = segment(name(2, 5));
    assert!(matches!(
        refusal(&tli2, file, None),
        SegmentError::TimelineAhead { .. }
    ));
}

#[test]
fn first_page_refusals() {
    let file = name(1, 5);
    let with_long = |edit: &dyn Fn(&mut XLogLongPageHeaderData)| {
        let mut bytes = segment(file);
        let mut long = XLogLongPageHeaderData::decode(&bytes).unwrap();
        edit(&mut long);
        bytes[..40].copy_from_slice(&long.encode());
        validate_segment(&bytes, file, None).unwrap_err()
    };
    let err = with_long(&|l| l.std.xlp_magic = 0xD120);
    assert_eq!(
        err,
        SegmentError::UnknownMagic {
            file: file.to_string(),
            found: 0xD120
        }
    );
    assert!(err.to_string().contains("0xD120"), "{err}");
    assert!(matches!(
        with_long(&|l| l.std.xlp_info = 0),
        SegmentError::NotLongHeader { found: 0, .. }
    ));
    assert!(matches!(
        with_long(&|l| l.std.xlp_info = 0x12),
        SegmentError::UnknownInfoBits { found: 0x12, .. }
    ));
    assert!(matches!(
        with_long(&|l| l.xlp_xlog_blcksz = 4096),
        SegmentError::BlockSizeMismatch {
            expected: 8192,
            found: 4096,
            ..
        }
    ));
    assert!(matches!(
        with_long(&|l| l.xlp_seg_size = 3 << 20),
        SegmentError::InvalidSegSize { found: 3145728, .. }
    ));
    assert!(matches!(
        with_long(&|l| l.xlp_seg_size = 2 << 20),
        SegmentError::SegSizeMismatch {
            expected: 1048576,
            found: 2097152,
            ..
        }
    ));
    let mut zeros = segment(file);
    zeros[..BLOCK].fill(0);
    assert!(matches!(
        validate_segment(&zeros, file, None),
        Err(SegmentError::UnknownMagic { found: 0, .. })
    ));
}

#[test]
fn later_page_refusals() {
    let file = name(2, 5);
    let with_page = |header: XLogPageHeaderData| {
        let mut bytes = segment(file);
        set_page(&mut bytes, 3, header);
        validate_segment(&bytes, file, None).unwrap_err()
    };
    let at = page_lsn(file, 3);
    assert_eq!(
        with_page(short(0xD10D, 0, 2, at)),
        SegmentError::MagicMismatch {
            file: file.to_string(),
            at,
            expected: MAGIC_15,
            found: 0xD10D
        }
    );
    assert_eq!(
        with_page(short(MAGIC_15, 0, 2, page_lsn(file, 4))),
        SegmentError::PageAddrMismatch {
            file: file.to_string(),
            expected: at,
            found: page_lsn(file, 4)
        }
    );
    assert!(matches!(
        with_page(short(MAGIC_15, 0x10, 2, at)),
        SegmentError::UnknownInfoBits { found: 0x10, .. }
    ));
    assert_eq!(
        with_page(short(MAGIC_15, 0, 3, at)),
        SegmentError::TimelineAhead {
            file: file.to_string(),
            at,
            expected: TimelineId(2),
            found: TimelineId(3)
        }
    );
    assert_eq!(
        with_page(short(MAGIC_15, 0, 1, at)),
        SegmentError::TimelineDecreased {
            file: file.to_string(),
            at,
            previous: TimelineId(2),
            found: TimelineId(1)
        }
    );
}

/// Feeds `bytes` to a [`SegmentValidator`] in pieces of `piece` bytes.
fn validate_in_pieces(
    bytes: &[u8],
    file: WalFileName,
    sysid: Option<u64>,
    piece: usize,
) -> Result<SegmentReport, SegmentError> {
    let mut validator = SegmentValidator::new(file, sysid);
    for chunk in bytes.chunks(piece) {
        validator.feed(chunk)?;
    }
    validator.finish()
}

#[test]
fn the_validator_fed_in_pieces_agrees_with_validate_segment() {
    let file = name(1, 5);
    let good = segment(file);
    let mut zeroed = good.clone();
    zeroed[40 * BLOCK..].fill(0);
    let mut hole = good.clone();
    hole[10 * BLOCK..11 * BLOCK].fill(0);
    let mut recycled = good.clone();
    recycled[7 * BLOCK..].copy_from_slice(&segment(name(1, 3))[7 * BLOCK..]);
    let mut bad_addr = good.clone();
    set_page(
        &mut bad_addr,
        77,
        short(MAGIC_15, 0, 1, page_lsn(name(1, 6), 77)),
    );
    let mut bad_first = good.clone();
    bad_first[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
    let cases: [(&str, &[u8], Option<u64>); 7] = [
        ("full", &good, Some(SYSID)),
        ("zeroed tail", &zeroed, None),
        ("hole", &hole, None),
        ("recycled tail", &recycled, None),
        ("bad page address", &bad_addr, None),
        ("bad first page", &bad_first, None),
        ("other cluster", &good, Some(SYSID + 1)),
    ];
    for (label, bytes, sysid) in cases {
        let whole = validate_segment(bytes, file, sysid);
        for piece in [BLOCK, 3 * BLOCK, 16 * BLOCK, bytes.len()] {
            assert_eq!(
                validate_in_pieces(bytes, file, sysid, piece),
                whole,
                "{label}, pieces of {piece} bytes"
            );
        }
    }
}

#[test]
fn the_validator_refuses_a_short_or_ragged_feed() {
    let file = name(1, 5);
    let good = segment(file);
    let expected = |found: usize| {
        Err(SegmentError::WrongLength {
            file: file.to_string(),
            expected: good.len() as u64,
            found: found as u64,
        })
    };
    let short = &good[..good.len() - BLOCK];
    assert_eq!(
        validate_in_pieces(short, file, None, 4 * BLOCK),
        expected(short.len())
    );
    let ragged = &good[..good.len() - 100];
    assert_eq!(
        validate_in_pieces(ragged, file, None, 4 * BLOCK),
        expected(ragged.len())
    );
    assert_eq!(validate_in_pieces(&[], file, None, BLOCK), expected(0));
}
