//! Tests for `wal_reader.rs` on synthetic WAL laid out like the server does (real WAL is
//! checked against pg_waldump by `common/tests/wal_reader_real.rs`).

use std::collections::BTreeMap;
use std::convert::Infallible;

use super::*;
use crate::pg::page_header::{XLP_LONG_HEADER, XLogLongPageHeaderData};
use crate::pg::timeline::TimelineId;
use crate::pg::wal_record::{RM_XACT_ID, RM_XLOG_ID, XLOG_SWITCH, XLOG_XACT_COMMIT};

const MAGIC_16: u16 = 0xD113;

/// Writes records into 1 MiB segments with page headers, continuation flags and lengths.
struct Writer {
    size: WalSegSize,
    segments: BTreeMap<u64, Vec<u8>>,
    pos: u64,
    prev: u64,
}

impl Writer {
    fn new() -> Writer {
        let size = WalSegSize::from_mib(1).unwrap();
        Writer {
            size,
            segments: BTreeMap::new(),
            pos: size.as_u64(),
            prev: 0,
        }
    }

    fn put(&mut self, at: u64, bytes: &[u8]) {
        let size = self.size.as_u64();
        let seg = self
            .segments
            .entry(at / size)
            .or_insert_with(|| vec![0; size as usize]);
        let off = (at % size) as usize;
        seg[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Writes the header of the page starting at `self.pos`, continuing `rem` bytes.
    fn page_header(&mut self, rem: usize) {
        let std = XLogPageHeaderData {
            xlp_magic: MAGIC_16,
            xlp_info: if rem > 0 { XLP_FIRST_IS_CONTRECORD } else { 0 },
            xlp_tli: TimelineId(1),
            xlp_pageaddr: Lsn(self.pos),
            xlp_rem_len: rem as u32,
        };
        if self.pos.is_multiple_of(self.size.as_u64()) {
            let long = XLogLongPageHeaderData {
                std: XLogPageHeaderData {
                    xlp_info: std.xlp_info | XLP_LONG_HEADER,
                    ..std
                },
                xlp_sysid: 1,
                xlp_seg_size: self.size.bytes(),
                xlp_xlog_blcksz: XLOG_BLCKSZ,
            };
            self.put(self.pos, &long.encode());
            self.pos += 40;
        } else {
            self.put(self.pos, &std.encode());
            self.pos += 24;
        }
    }

    /// Appends a record with `main` as its main data; returns its start.
    fn append(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> Lsn {
        let mut r = vec![0u8; SIZE_OF_XLOG_RECORD];
        r.push(254);
        r.extend_from_slice(&(main.len() as u32).to_le_bytes());
        r.extend_from_slice(main);
        let len = r.len() as u32;
        r[0..4].copy_from_slice(&len.to_le_bytes());
        r[4..8].copy_from_slice(&xid.to_le_bytes());
        r[8..16].copy_from_slice(&self.prev.to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        let crc = record_crc(&r);
        r[20..24].copy_from_slice(&crc.to_le_bytes());

        self.pos = maxalign(self.pos);
        if self.pos.is_multiple_of(BLOCK) {
            self.page_header(0);
        }
        let start = self.pos;
        let mut done = 0;
        while done < r.len() {
            if self.pos.is_multiple_of(BLOCK) {
                self.page_header(r.len() - done);
            }
            let room = (BLOCK - self.pos % BLOCK) as usize;
            let n = room.min(r.len() - done);
            let (from, to) = (done, done + n);
            let chunk = r[from..to].to_vec();
            self.put(self.pos, &chunk);
            self.pos += n as u64;
            done += n;
        }
        self.prev = start;
        if rmid == RM_XLOG_ID && info == XLOG_SWITCH {
            // The rest of the segment is zeros; the next record starts the next segment.
            self.pos = maxalign(self.pos).next_multiple_of(self.size.as_u64());
        }
        Lsn(start)
    }

    fn reader(
        &self,
        start: Lsn,
    ) -> WalReader<impl FnMut(SegNo) -> Result<Option<Vec<u8>>, Infallible>> {
        let segments = self.segments.clone();
        WalReader::new(start, self.size, move |segno: SegNo| {
            Ok(segments.get(&segno.0).cloned())
        })
    }
}

fn commit(time: i64) -> Vec<u8> {
    time.to_le_bytes().to_vec()
}

/// A run of records: small, page-spanning, segment-spanning, a switch, and one after it.
fn sample() -> (Writer, Vec<Lsn>) {
    let mut w = Writer::new();
    let mut starts = vec![w.append(RM_XACT_ID, XLOG_XACT_COMMIT, 700, &commit(1))];
    starts.push(w.append(9, 0, 0, &[7; 9000]));
    while w.pos % w.size.as_u64() < w.size.as_u64() - 5000 {
        starts.push(w.append(10, 0, 0, &[1; 3000]));
    }
    starts.push(w.append(10, 0, 0, &[2; 20000]));
    starts.push(w.append(RM_XACT_ID, XLOG_XACT_COMMIT, 701, &commit(2)));
    starts.push(w.append(RM_XLOG_ID, XLOG_SWITCH, 0, &[]));
    starts.push(w.append(RM_XACT_ID, XLOG_XACT_COMMIT, 702, &commit(3)));
    (w, starts)
}

#[test]
fn reads_across_pages_segments_and_switches() {
    let (w, starts) = sample();
    let mut reader = w.reader(Lsn(w.size.as_u64()));
    let records: Vec<WalRecord> = reader.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), starts);
    assert_eq!(
        records[0].kind,
        RecordKind::Commit {
            xid: 700,
            time: crate::pg::PgTimestamp(1),
            prepared: false
        }
    );
    let spanning = &records[records.len() - 4];
    assert_ne!(
        spanning.lsn.segno(w.size),
        Lsn(spanning.end.0 - 1).segno(w.size)
    );
    assert_eq!(records[records.len() - 2].kind, RecordKind::Switch);
    let last = records.last().unwrap();
    assert_eq!(
        last.lsn,
        Lsn(3 * w.size.as_u64() + 40),
        "after the switch: next segment, after its long header"
    );
    assert_eq!(
        reader.end(),
        Some(&ReadEnd {
            at: Lsn(maxalign(w.pos)),
            reason: EndReason::ZeroLength
        })
    );
}

#[test]
fn starts_at_a_segment_boundary_inside_a_record() {
    let (w, starts) = sample();
    let seg2 = Lsn(2 * w.size.as_u64());
    let records: Vec<WalRecord> = w.reader(seg2).map(|r| r.unwrap()).collect();
    let expected: Vec<Lsn> = starts.into_iter().filter(|s| *s > seg2).collect();
    assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), expected);
}

#[test]
fn stops_cleanly_on_damage() {
    let (w, starts) = sample();
    let spanning = starts[starts.len() - 4];

    // The next segment is missing: stop at the record that needs it.
    let mut short = Writer {
        segments: w.segments.clone(),
        ..Writer::new()
    };
    short.segments.remove(&2);
    let mut reader = short.reader(Lsn(w.size.as_u64()));
    assert_eq!(reader.by_ref().count(), starts.len() - 4);
    assert_eq!(
        reader.end(),
        Some(&ReadEnd {
            at: spanning,
            reason: EndReason::MissingSegment(SegNo(2))
        })
    );

    // A continuation page with a wrong xlp_rem_len.
    let mut bad = Writer {
        segments: w.segments.clone(),
        ..Writer::new()
    };
    let page = (spanning.0 / BLOCK + 1) * BLOCK;
    let seg = bad.segments.get_mut(&(page / w.size.as_u64())).unwrap();
    let off = (page % w.size.as_u64()) as usize + 16;
    seg[off] ^= 1;
    let mut reader = bad.reader(Lsn(w.size.as_u64()));
    assert_eq!(reader.by_ref().count(), starts.len() - 4);
    let end = reader.end().unwrap();
    assert_eq!(end.at, spanning);
    assert!(
        matches!(end.reason, EndReason::InvalidPage { page: p, .. } if p == Lsn(page)),
        "{end:?}"
    );

    // A broken xl_prev link.
    let mut relinked = Writer {
        segments: w.segments.clone(),
        ..Writer::new()
    };
    let victim = starts[1];
    relinked.put(victim.0 + 8, &[0xEE]);
    let mut reader = relinked.reader(Lsn(w.size.as_u64()));
    assert_eq!(reader.by_ref().count(), 1);
    assert!(
        matches!(reader.end().unwrap().reason, EndReason::BadPrev { expected, .. } if expected == starts[0])
    );
}
