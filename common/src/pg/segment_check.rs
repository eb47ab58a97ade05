//! Checking that a buffer really is the WAL segment it claims to be, before it is archived,
//! handed to Postgres, or trusted by a restore.
//!
//! Follows the server's own page checks, `XLogReaderValidatePageHeader` in
//! `src/backend/access/transam/xlogreader.c`: the first page carries the long header with
//! the major's `XLOG_PAGE_MAGIC`, the cluster's system identifier, segment size and
//! `XLOG_BLCKSZ`, and `xlp_pageaddr` equal to the segment's start; every page's
//! `xlp_pageaddr` is its own LSN, its `xlp_info` has no unknown bits, and timelines never go
//! backwards. Unlike the server we also require `xlp_tli` to be at most the timeline in the
//! file name (the first segment of a new timeline holds pages stamped with the parent's).
//!
//! Valid WAL may stop before the end of the file: after an `XLOG_SWITCH` record the rest of
//! the segment is zeros, and a recycled file still holds an older segment's pages past the
//! last write. Those are reported as [`WalEnd`], not errors.

use crate::lsn::Lsn;
use crate::pg::file_name::WalFileName;
use crate::pg::page_header::{
    XLOG_BLCKSZ, XLP_ALL_FLAGS, XLogLongPageHeaderData, XLogPageHeaderData,
};
use crate::pg::segment::WalSegSize;
use crate::pg::timeline::TimelineId;
use crate::pg::version::PgVersion;

/// What the first page of a segment says about the cluster that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeaderInfo {
    /// The major version, from `xlp_magic`.
    pub version: PgVersion,
    /// `xlp_sysid`: the cluster's system identifier.
    pub system_identifier: u64,
    /// `xlp_seg_size`: the cluster's segment size.
    pub seg_size: WalSegSize,
    /// `xlp_tli` of the first page.
    pub first_page_timeline: TimelineId,
}

impl SegmentHeaderInfo {
    /// The major version number (13 ... 18).
    pub fn major(&self) -> u32 {
        self.version.major
    }
}

/// Where valid WAL pages end in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalEnd {
    /// Every page of the segment carries a valid header.
    Full,
    /// The page at `at` and what follows is zeros (the tail after `XLOG_SWITCH`, or a
    /// pre-allocated file not yet written to the end).
    Zeroed {
        /// The LSN of the first zero page.
        at: Lsn,
    },
    /// The page at `at` belongs to an older segment (`found` is its `xlp_pageaddr`): the
    /// leftover of a recycled file.
    Recycled {
        /// The LSN of the first stale page.
        at: Lsn,
        /// The stale page address found there.
        found: Lsn,
    },
}

/// The result of [`validate_segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// What the first page says.
    pub header: SegmentHeaderInfo,
    /// Where valid pages end.
    pub end: WalEnd,
    /// A page past `end` whose header is valid for its position: WAL after a hole. Postgres
    /// stops reading at the hole, so this WAL is unreachable; callers may warn.
    pub valid_page_after_end: Option<Lsn>,
}

impl SegmentReport {
    /// The LSN just past the last page with a valid header (the segment's end when full).
    pub fn valid_end(&self, file: WalFileName) -> Lsn {
        match self.end {
            WalEnd::Full => file.end_lsn(),
            WalEnd::Zeroed { at } | WalEnd::Recycled { at, .. } => at,
        }
    }
}

/// Why a buffer is not the WAL segment it claims to be. `file` names the segment (or the
/// label the caller gave); LSN-placed variants give the page's LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The buffer is not exactly one segment long.
    #[error("WAL file {file}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// The file.
        file: String,
        /// The segment size.
        expected: u64,
        /// The buffer's length.
        found: u64,
    },
    /// `xlp_magic` of the first page is not a supported major's.
    #[error(
        "WAL file {file}: unknown page magic {found:#06X} (not a PostgreSQL 13-18 WAL file, or a newer major walship does not support)"
    )]
    UnknownMagic {
        /// The file.
        file: String,
        /// The magic found.
        found: u16,
    },
    /// A later page's magic differs from the first page's.
    #[error("WAL file {file}: page at {at} has magic {found:#06X}, expected {expected:#06X}")]
    MagicMismatch {
        /// The file.
        file: String,
        /// The page's LSN.
        at: Lsn,
        /// The first page's magic.
        expected: u16,
        /// The magic found.
        found: u16,
    },
    /// The first page lacks `XLP_LONG_HEADER`.
    #[error("WAL file {file}: first page has no long header (xlp_info {found:#06X})")]
    NotLongHeader {
        /// The file.
        file: String,
        /// `xlp_info` found.
        found: u16,
    },
    /// `xlp_info` has bits outside `XLP_ALL_FLAGS`.
    #[error("WAL file {file}: page at {at} has unknown xlp_info bits {found:#06X}")]
    UnknownInfoBits {
        /// The file.
        file: String,
        /// The page's LSN.
        at: Lsn,
        /// `xlp_info` found.
        found: u16,
    },
    /// `xlp_seg_size` differs from the expected segment size.
    #[error("WAL file {file}: segment size in header is {found} bytes, expected {expected} bytes")]
    SegSizeMismatch {
        /// The file.
        file: String,
        /// The expected size in bytes.
        expected: u64,
        /// `xlp_seg_size` found.
        found: u64,
    },
    /// `xlp_seg_size` is not a valid segment size at all.
    #[error(
        "WAL file {file}: segment size in header is {found} bytes, not a power of two from 1 MiB to 1 GiB"
    )]
    InvalidSegSize {
        /// The file.
        file: String,
        /// `xlp_seg_size` found.
        found: u32,
    },
    /// `xlp_xlog_blcksz` is not 8192.
    #[error("WAL file {file}: WAL block size in header is {found}, expected {expected}")]
    BlockSizeMismatch {
        /// The file.
        file: String,
        /// `XLOG_BLCKSZ`.
        expected: u32,
        /// `xlp_xlog_blcksz` found.
        found: u32,
    },
    /// `xlp_sysid` is another cluster's.
    #[error(
        "WAL file {file}: system identifier is {found}, expected {expected} (WAL from another cluster)"
    )]
    SystemIdMismatch {
        /// The file.
        file: String,
        /// The cluster's system identifier.
        expected: u64,
        /// `xlp_sysid` found.
        found: u64,
    },
    /// A page's `xlp_pageaddr` is not its LSN (on the first page: the file is another
    /// segment, or stale).
    #[error("WAL file {file}: page address is {found}, expected {expected}")]
    PageAddrMismatch {
        /// The file.
        file: String,
        /// The page's LSN.
        expected: Lsn,
        /// `xlp_pageaddr` found.
        found: Lsn,
    },
    /// A page stamped with a timeline newer than the file's.
    #[error(
        "WAL file {file}: page at {at} has timeline {found}, newer than the file's timeline {expected}"
    )]
    TimelineAhead {
        /// The file.
        file: String,
        /// The page's LSN.
        at: Lsn,
        /// The file name's timeline.
        expected: TimelineId,
        /// `xlp_tli` found.
        found: TimelineId,
    },
    /// A page stamped with an older timeline than the page before it.
    #[error("WAL file {file}: page at {at} has timeline {found} after timeline {previous}")]
    TimelineDecreased {
        /// The file.
        file: String,
        /// The page's LSN.
        at: Lsn,
        /// The previous page's timeline.
        previous: TimelineId,
        /// `xlp_tli` found.
        found: TimelineId,
    },
}

/// Decodes what a segment's first page says about its cluster, without expectations: long
/// header present, known magic, valid segment size, 8192-byte WAL blocks. `file` names the
/// source in errors.
pub fn read_segment_header(
    file: &str,
    first_page: &[u8],
) -> Result<SegmentHeaderInfo, SegmentError> {
    let file = || file.to_string();
    let long =
        XLogLongPageHeaderData::decode(first_page).ok_or_else(|| SegmentError::WrongLength {
            file: file(),
            expected: u64::from(XLOG_BLCKSZ),
            found: first_page.len() as u64,
        })?;
    let std = long.std;
    let version = PgVersion::from_xlog_page_magic(std.xlp_magic).ok_or_else(|| {
        SegmentError::UnknownMagic {
            file: file(),
            found: std.xlp_magic,
        }
    })?;
    if !std.is_long() {
        return Err(SegmentError::NotLongHeader {
            file: file(),
            found: std.xlp_info,
        });
    }
    if std.xlp_info & !XLP_ALL_FLAGS != 0 {
        return Err(SegmentError::UnknownInfoBits {
            file: file(),
            at: std.xlp_pageaddr,
            found: std.xlp_info,
        });
    }
    if long.xlp_xlog_blcksz != XLOG_BLCKSZ {
        return Err(SegmentError::BlockSizeMismatch {
            file: file(),
            expected: XLOG_BLCKSZ,
            found: long.xlp_xlog_blcksz,
        });
    }
    let seg_size = WalSegSize::new(u64::from(long.xlp_seg_size)).map_err(|_| {
        SegmentError::InvalidSegSize {
            file: file(),
            found: long.xlp_seg_size,
        }
    })?;
    Ok(SegmentHeaderInfo {
        version,
        system_identifier: long.xlp_sysid,
        seg_size,
        first_page_timeline: std.xlp_tli,
    })
}

/// Checks the first page of the segment `expected` (see the module doc), and the system
/// identifier when one is given.
pub fn validate_first_page(
    first_page: &[u8],
    expected: WalFileName,
    expected_sysid: Option<u64>,
) -> Result<SegmentHeaderInfo, SegmentError> {
    let file = expected.to_string();
    let info = read_segment_header(&file, first_page)?;
    if info.seg_size != expected.seg_size() {
        return Err(SegmentError::SegSizeMismatch {
            file,
            expected: expected.seg_size().as_u64(),
            found: info.seg_size.as_u64(),
        });
    }
    let std = XLogPageHeaderData::decode(first_page).ok_or_else(|| SegmentError::WrongLength {
        file: file.clone(),
        expected: expected.seg_size().as_u64(),
        found: first_page.len() as u64,
    })?;
    if let Some(sysid) = expected_sysid
        && sysid != info.system_identifier
    {
        return Err(SegmentError::SystemIdMismatch {
            file,
            expected: sysid,
            found: info.system_identifier,
        });
    }
    if std.xlp_pageaddr != expected.start_lsn() {
        return Err(SegmentError::PageAddrMismatch {
            file,
            expected: expected.start_lsn(),
            found: std.xlp_pageaddr,
        });
    }
    check_timeline(&file, &std, expected.timeline(), None)?;
    Ok(info)
}

fn check_timeline(
    file: &str,
    page: &XLogPageHeaderData,
    file_timeline: TimelineId,
    previous: Option<TimelineId>,
) -> Result<(), SegmentError> {
    let at = page.xlp_pageaddr;
    if page.xlp_tli > file_timeline {
        return Err(SegmentError::TimelineAhead {
            file: file.to_string(),
            at,
            expected: file_timeline,
            found: page.xlp_tli,
        });
    }
    if let Some(previous) = previous
        && page.xlp_tli < previous
    {
        return Err(SegmentError::TimelineDecreased {
            file: file.to_string(),
            at,
            previous,
            found: page.xlp_tli,
        });
    }
    Ok(())
}

/// What a page after the first says.
enum PageVerdict {
    Valid(XLogPageHeaderData),
    End(WalEnd),
}

/// Judges the page at `at` of `expected`, written by a server whose pages carry `magic`.
fn check_page(
    page: &[u8],
    at: Lsn,
    expected: WalFileName,
    magic: u16,
) -> Result<PageVerdict, SegmentError> {
    let file = || expected.to_string();
    if page.iter().all(|&b| b == 0) {
        return Ok(PageVerdict::End(WalEnd::Zeroed { at }));
    }
    let Some(header) = XLogPageHeaderData::decode(page) else {
        return Err(SegmentError::WrongLength {
            file: file(),
            expected: expected.seg_size().as_u64(),
            found: 0,
        });
    };
    if header.xlp_magic != magic {
        return Err(SegmentError::MagicMismatch {
            file: file(),
            at,
            expected: magic,
            found: header.xlp_magic,
        });
    }
    if header.xlp_pageaddr != at {
        let size = expected.seg_size();
        let stale = header.xlp_pageaddr < at
            && header.xlp_pageaddr.segment_offset(size) == at.segment_offset(size);
        if stale {
            return Ok(PageVerdict::End(WalEnd::Recycled {
                at,
                found: header.xlp_pageaddr,
            }));
        }
        return Err(SegmentError::PageAddrMismatch {
            file: file(),
            expected: at,
            found: header.xlp_pageaddr,
        });
    }
    if header.xlp_info & !XLP_ALL_FLAGS != 0 {
        return Err(SegmentError::UnknownInfoBits {
            file: file(),
            at,
            found: header.xlp_info,
        });
    }
    Ok(PageVerdict::Valid(header))
}

/// Checks a whole segment buffer against the name it is meant to have (see the module
/// doc): exactly one segment long, first page right for `expected` (and `expected_sysid`),
/// every following page right for its place until valid WAL ends.
pub fn validate_segment(
    bytes: &[u8],
    expected: WalFileName,
    expected_sysid: Option<u64>,
) -> Result<SegmentReport, SegmentError> {
    let seg_bytes = expected.seg_size().as_u64();
    if bytes.len() as u64 != seg_bytes {
        return Err(SegmentError::WrongLength {
            file: expected.to_string(),
            expected: seg_bytes,
            found: bytes.len() as u64,
        });
    }
    let mut validator = SegmentValidator::new(expected, expected_sysid);
    validator.feed(bytes)?;
    validator.finish()
}

/// [`validate_segment`] for a segment that arrives in pieces (read from a file in chunks,
/// so that no whole-segment buffer is needed): [`SegmentValidator::feed`] the bytes in
/// order, in whole pages, then [`SegmentValidator::finish`]. The verdict is the same as
/// [`validate_segment`]'s on the concatenation; a caller that knows the length up front
/// should refuse a wrong length before feeding, as `validate_segment` does.
#[derive(Debug)]
pub struct SegmentValidator {
    expected: WalFileName,
    expected_sysid: Option<u64>,
    /// Pages seen so far.
    pages: usize,
    header: Option<SegmentHeaderInfo>,
    previous_tli: TimelineId,
    /// Where valid WAL ended, once found.
    end: Option<WalEnd>,
    valid_page_after_end: Option<Lsn>,
    /// Bytes fed.
    fed: u64,
    /// Bytes fed that are not a whole number of pages (an error at `finish`).
    ragged: bool,
}

impl SegmentValidator {
    /// A validator for the segment `expected` (and, when given, that system identifier).
    pub fn new(expected: WalFileName, expected_sysid: Option<u64>) -> SegmentValidator {
        SegmentValidator {
            expected,
            expected_sysid,
            pages: 0,
            header: None,
            previous_tli: expected.timeline(),
            end: None,
            valid_page_after_end: None,
            fed: 0,
            ragged: false,
        }
    }

    /// What the first page said, once it has been fed.
    pub fn header(&self) -> Option<SegmentHeaderInfo> {
        self.header
    }

    /// Checks the next bytes of the segment: whole pages (a shorter last piece is reported
    /// by `finish` as a wrong length). Fails at the first page that is wrong for its place.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SegmentError> {
        let block = XLOG_BLCKSZ as usize;
        self.fed += bytes.len() as u64;
        if self.ragged {
            return Ok(());
        }
        if !bytes.len().is_multiple_of(block) {
            self.ragged = true;
        }
        for page in bytes.chunks_exact(block) {
            self.page(page)?;
            self.pages += 1;
        }
        Ok(())
    }

    fn page(&mut self, page: &[u8]) -> Result<(), SegmentError> {
        let index = self.pages;
        let at = Lsn(self.expected.start_lsn().0 + (index * XLOG_BLCKSZ as usize) as u64);
        let Some(header) = self.header else {
            let header = validate_first_page(page, self.expected, self.expected_sysid)?;
            self.previous_tli = header.first_page_timeline;
            self.header = Some(header);
            return Ok(());
        };
        let magic = header.version.xlog_page_magic;
        if self.end.is_some() {
            let valid_here = XLogPageHeaderData::decode(page)
                .is_some_and(|h| h.xlp_magic == magic && h.xlp_pageaddr == at);
            if valid_here && self.valid_page_after_end.is_none() {
                self.valid_page_after_end = Some(at);
            }
            return Ok(());
        }
        match check_page(page, at, self.expected, magic)? {
            PageVerdict::Valid(page_header) => {
                check_timeline(
                    &self.expected.to_string(),
                    &page_header,
                    self.expected.timeline(),
                    Some(self.previous_tli),
                )?;
                self.previous_tli = page_header.xlp_tli;
            }
            PageVerdict::End(found) => self.end = Some(found),
        }
        Ok(())
    }

    /// The report for everything fed: an error if it was not exactly one segment.
    pub fn finish(self) -> Result<SegmentReport, SegmentError> {
        let seg_bytes = self.expected.seg_size().as_u64();
        let header = match self.header {
            Some(header) if !self.ragged && self.fed == seg_bytes => header,
            _ => {
                return Err(SegmentError::WrongLength {
                    file: self.expected.to_string(),
                    expected: seg_bytes,
                    found: self.fed,
                });
            }
        };
        Ok(SegmentReport {
            header,
            end: self.end.unwrap_or(WalEnd::Full),
            valid_page_after_end: self.valid_page_after_end,
        })
    }
}

#[cfg(test)]
#[path = "segment_check_tests.rs"]
pub(crate) mod tests;
