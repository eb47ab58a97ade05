//! Reading WAL records in order across pages and segments, stopping cleanly where valid WAL
//! ends, as recovery does.
//!
//! Follows `XLogDecodeNextRecord` / `XLogFindNextRecord` in
//! `src/backend/access/transam/xlogreader.c`: a record may span pages and segments (each
//! continuation page carries `XLP_FIRST_IS_CONTRECORD` and the remaining length in
//! `xlp_rem_len`); records start `MAXALIGN`ed; `xl_prev` must point at the previous record;
//! the CRC-32C must match; after `XLOG_SWITCH` reading resumes at the next segment. A zero
//! length, a bad page, a bad link or a bad CRC is the end of valid WAL, reported by
//! [`WalReader::end`], not an error: only the segment loader can fail.
//!
//! Segments come from a caller's loader (`SegNo -> Option<bytes>`), which picks the timeline
//! (see `TimelineHistory::timeline_of_segment`) and the storage; `None` ends the read.

use crate::lsn::Lsn;
use crate::pg::page_header::{
    XLOG_BLCKSZ, XLP_ALL_FLAGS, XLP_FIRST_IS_CONTRECORD, XLogPageHeaderData,
};
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::segment_check::read_segment_header;
use crate::pg::wal_record::{
    RecordError, RecordKind, SIZE_OF_XLOG_RECORD, XLogRecordHeader, decode_kind, record_crc,
};

/// The largest record length accepted (`XLogRecordMaxSize` is 1020 MiB); a larger
/// `xl_tot_len` is garbage.
const MAX_RECORD_LEN: u32 = 1020 * 1024 * 1024;
const BLOCK: u64 = XLOG_BLCKSZ as u64;

/// One record read from WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// Where the record starts (`ReadRecPtr`).
    pub lsn: Lsn,
    /// Just past its last byte (`EndRecPtr` before alignment).
    pub end: Lsn,
    /// Its header.
    pub header: XLogRecordHeader,
    /// What it means, for the kinds walship looks at.
    pub kind: RecordKind,
}

/// Why reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The loader has no such segment.
    MissingSegment(SegNo),
    /// The segment is not a usable WAL segment (wrong length, bad first page).
    BadSegment {
        /// The segment.
        segno: SegNo,
        /// What is wrong.
        detail: String,
    },
    /// A page header is not valid for its place (zeros, stale address, other magic).
    InvalidPage {
        /// The page's LSN.
        page: Lsn,
        /// What is wrong.
        detail: &'static str,
    },
    /// `xl_tot_len` is 0: nothing more was written (the usual end).
    ZeroLength,
    /// `xl_tot_len` is impossible.
    BadLength(u32),
    /// `xl_prev` does not point at the previous record.
    BadPrev {
        /// The previous record's start.
        expected: Lsn,
        /// `xl_prev` found.
        found: Lsn,
    },
    /// `xl_crc` does not match the record.
    BadCrc {
        /// The CRC computed.
        expected: u32,
        /// `xl_crc` found.
        found: u32,
    },
    /// The record's body does not decode.
    BadRecord(RecordError),
}

/// Where and why valid WAL ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEnd {
    /// The position of the record that could not be read: the end of valid WAL.
    pub at: Lsn,
    /// Why.
    pub reason: EndReason,
}

/// An iterator over the records of consecutive segments; see the module doc.
///
/// Yields `Ok(record)` until valid WAL ends (then `None`, with [`WalReader::end`] saying
/// where and why). A loader error is yielded as `Err`; calling `next` again retries the load.
pub struct WalReader<F> {
    seg_size: WalSegSize,
    load: F,
    segment: Option<(SegNo, Vec<u8>, u16, u32)>,
    next: Lsn,
    prev: Option<Lsn>,
    find_first: bool,
    end: Option<ReadEnd>,
}

/// Control flow inside the reader: stop with a reason, or fail with the loader's error.
enum Stop<E> {
    End(EndReason),
    Load(E),
}

impl<E> From<EndReason> for Stop<E> {
    fn from(reason: EndReason) -> Self {
        Stop::End(reason)
    }
}

fn maxalign(lsn: u64) -> u64 {
    (lsn + 7) & !7
}

impl<F, E> WalReader<F>
where
    F: FnMut(SegNo) -> Result<Option<Vec<u8>>, E>,
{
    /// Reads from `start`, which is either a record's start or a page boundary (a segment's
    /// start, say): at a page boundary the tail of a record continued from before is
    /// skipped, as `XLogFindNextRecord` does.
    pub fn new(start: Lsn, seg_size: WalSegSize, load: F) -> WalReader<F> {
        WalReader {
            seg_size,
            load,
            segment: None,
            next: start,
            prev: None,
            find_first: start.0.is_multiple_of(BLOCK),
            end: None,
        }
    }

    /// Where and why reading stopped; `None` while records keep coming.
    pub fn end(&self) -> Option<&ReadEnd> {
        self.end.as_ref()
    }

    /// The validated page at `page_lsn` and its header; loads its segment when needed.
    fn page(&mut self, page_lsn: Lsn) -> Result<(&[u8], XLogPageHeaderData, u32), Stop<E>> {
        let segno = page_lsn.segno(self.seg_size);
        if self.segment.as_ref().is_none_or(|(s, ..)| *s != segno) {
            self.segment = None;
            let bytes = (self.load)(segno)
                .map_err(Stop::Load)?
                .ok_or(EndReason::MissingSegment(segno))?;
            let bad = |detail: String| EndReason::BadSegment { segno, detail };
            if bytes.len() as u64 != self.seg_size.as_u64() {
                return Err(bad(format!(
                    "{} bytes, expected {}",
                    bytes.len(),
                    self.seg_size.as_u64()
                ))
                .into());
            }
            let info = read_segment_header(&format!("segment {segno}"), &bytes)
                .map_err(|e| bad(e.to_string()))?;
            if info.seg_size != self.seg_size {
                return Err(bad(format!(
                    "segment size {} in header, expected {}",
                    info.seg_size, self.seg_size
                ))
                .into());
            }
            self.segment = Some((
                segno,
                bytes,
                info.version.xlog_page_magic,
                info.version.major,
            ));
        }
        let Some((_, bytes, magic, major)) = self.segment.as_ref() else {
            return Err(EndReason::MissingSegment(segno).into());
        };
        let at = page_lsn.segment_offset(self.seg_size) as usize;
        let page = &bytes[at..at + XLOG_BLCKSZ as usize];
        let invalid = |detail| EndReason::InvalidPage {
            page: page_lsn,
            detail,
        };
        let header = XLogPageHeaderData::decode(page).ok_or(invalid("short page"))?;
        if header.xlp_magic != *magic {
            return Err(invalid("page magic differs from the segment's (zeroed page?)").into());
        }
        if header.xlp_pageaddr != page_lsn {
            return Err(invalid("unexpected page address (recycled segment?)").into());
        }
        if header.xlp_info & !XLP_ALL_FLAGS != 0 {
            return Err(invalid("unknown xlp_info bits").into());
        }
        Ok((page, header, *major))
    }

    /// `XLogFindNextRecord`: from a page boundary, the first record that starts after it.
    fn first_record_from(&mut self, mut pos: Lsn) -> Result<Lsn, Stop<E>> {
        loop {
            let (_, header, _) = self.page(pos)?;
            let body = pos.0 + header.size() as u64;
            let rem = u64::from(header.xlp_rem_len);
            if header.xlp_info & XLP_FIRST_IS_CONTRECORD == 0 || rem == 0 {
                return Ok(Lsn(body));
            }
            let start = maxalign(body + rem);
            if start < pos.0 + BLOCK {
                return Ok(Lsn(start));
            }
            pos = Lsn(pos.0 + BLOCK);
        }
    }

    /// Reads the record starting at `start`: its bytes and its unaligned end.
    fn read_record(&mut self, start: Lsn) -> Result<(Vec<u8>, Lsn, u32), Stop<E>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut total: Option<usize> = None;
        let mut pos = start.0;
        loop {
            let page_lsn = Lsn(pos - pos % BLOCK);
            let prev = self.prev;
            let (page, header, major) = self.page(page_lsn)?;
            if pos == page_lsn.0 {
                if !buf.is_empty() {
                    let left = total.map_or(0, |t| t - buf.len()) as u64;
                    if header.xlp_info & XLP_FIRST_IS_CONTRECORD == 0 {
                        return Err(EndReason::InvalidPage {
                            page: page_lsn,
                            detail: "no contrecord flag",
                        }
                        .into());
                    }
                    if total.is_some() && u64::from(header.xlp_rem_len) != left {
                        return Err(EndReason::InvalidPage {
                            page: page_lsn,
                            detail: "xlp_rem_len does not match the record",
                        }
                        .into());
                    }
                }
                pos += header.size() as u64;
            }
            let in_page = (pos - page_lsn.0) as usize;
            let want = total.unwrap_or(SIZE_OF_XLOG_RECORD) - buf.len();
            let take = want.min(page.len() - in_page);
            buf.extend_from_slice(&page[in_page..in_page + take]);
            pos += take as u64;
            if total.is_none() && buf.len() >= SIZE_OF_XLOG_RECORD {
                let head = XLogRecordHeader::decode(&buf).ok_or(EndReason::ZeroLength)?;
                if head.xl_tot_len == 0 {
                    return Err(EndReason::ZeroLength.into());
                }
                if (head.xl_tot_len as usize) < SIZE_OF_XLOG_RECORD
                    || head.xl_tot_len > MAX_RECORD_LEN
                {
                    return Err(EndReason::BadLength(head.xl_tot_len).into());
                }
                if let Some(expected) = prev
                    && head.xl_prev != expected
                {
                    return Err(EndReason::BadPrev {
                        expected,
                        found: head.xl_prev,
                    }
                    .into());
                }
                total = Some(head.xl_tot_len as usize);
            } else if total.is_none() && buf.len() >= 4 && buf[..4] == [0; 4] {
                return Err(EndReason::ZeroLength.into());
            }
            if total == Some(buf.len()) {
                return Ok((buf, Lsn(pos), major));
            }
        }
    }

    fn next_record(&mut self) -> Result<WalRecord, Stop<E>> {
        if self.find_first {
            self.find_first = false;
            self.next = self.first_record_from(self.next)?;
        }
        let mut start = self.next;
        if start.0.is_multiple_of(BLOCK) {
            // A record never starts inside a page header: at a page boundary it starts
            // after it (`XLogDecodeNextRecord`).
            let (_, header, _) = self.page(start)?;
            start = Lsn(start.0 + header.size() as u64);
            self.next = start;
        }
        let (bytes, end, major) = self.read_record(start)?;
        let header = XLogRecordHeader::decode(&bytes).ok_or(EndReason::ZeroLength)?;
        let crc = record_crc(&bytes);
        if crc != header.xl_crc {
            return Err(EndReason::BadCrc {
                expected: crc,
                found: header.xl_crc,
            }
            .into());
        }
        let kind = decode_kind(&header, &bytes, major).map_err(EndReason::BadRecord)?;
        let aligned = maxalign(end.0);
        self.next = Lsn(if kind == RecordKind::Switch {
            aligned.next_multiple_of(self.seg_size.as_u64())
        } else {
            aligned
        });
        self.prev = Some(start);
        Ok(WalRecord {
            lsn: start,
            end,
            header,
            kind,
        })
    }
}

impl<F, E> Iterator for WalReader<F>
where
    F: FnMut(SegNo) -> Result<Option<Vec<u8>>, E>,
{
    type Item = Result<WalRecord, E>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.end.is_some() {
            return None;
        }
        match self.next_record() {
            Ok(record) => Some(Ok(record)),
            Err(Stop::End(reason)) => {
                self.end = Some(ReadEnd {
                    at: self.next,
                    reason,
                });
                None
            }
            Err(Stop::Load(e)) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
#[path = "wal_reader_tests.rs"]
mod tests;
