//! WAL file names: `WalFileName` (a segment on a timeline, `XLogFileName`) and
//! `ArchiveFileName`, the classifier for every name `archive_command` can hand us.
//!
//! Mirrors `src/include/access/xlog_internal.h`: `XLogFileName` (`%08X%08X%08X` of the
//! timeline, `segno / XLogSegmentsPerXLogId`, `segno % XLogSegmentsPerXLogId`),
//! `XLogFromFileName`, `IsXLogFileName`, `IsPartialXLogFileName`, `TLHistoryFileName`
//! (`%08X.history`) and `BackupHistoryFileName` (`%08X%08X%08X.%08X.backup`).
//!
//! Names come from outside (command lines, object listings), so parsing is strict: upper-case
//! hex only, exact lengths, no path characters, timeline 0 refused, and the low eight digits
//! must be below `XLogSegmentsPerXLogId` for the cluster's segment size. `Display` gives back
//! exactly the canonical name, so parse then print is the identity on every accepted name.

use std::fmt;

use crate::lsn::Lsn;
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::timeline::TimelineId;

/// One WAL segment file on one timeline, e.g. `000000010000000300000042`.
///
/// Carries the segment size because the name's last two fields split the segment number by
/// `XLogSegmentsPerXLogId`, which depends on it. Orders as the names sort: by timeline, then
/// segment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct WalFileName {
    timeline: TimelineId,
    segno: SegNo,
    seg_size: WalSegSize,
}

/// Why a name (or a timeline/segment pair) is not a valid WAL archive file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// A name that does not parse; `name` is the input as given.
    #[error("invalid WAL file name {name:?}: {problem}")]
    Invalid {
        /// The rejected input.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// Timeline 0 does not exist (`TimeLineID` 0 is invalid).
    #[error("WAL file name for segment {segno} on timeline 0: timeline IDs start at 1")]
    TimelineZero {
        /// The segment asked for.
        segno: SegNo,
    },
    /// The segment number is past the end of the 64-bit WAL address space.
    #[error("segment number {segno} is beyond the last segment {max} for {seg_size} segments")]
    SegNoTooLarge {
        /// The segment asked for.
        segno: SegNo,
        /// The largest valid one.
        max: SegNo,
        /// The segment size in force.
        seg_size: WalSegSize,
    },
}

/// What exactly is wrong with a rejected name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// The empty string.
    #[error("the name is empty")]
    Empty,
    /// A `/` or `\`: a path, not a file name (also catches `../`).
    #[error("a file name may not contain a path separator")]
    PathSeparator,
    /// A NUL, control or non-ASCII character.
    #[error("the name contains a NUL, control or non-ASCII character")]
    BadCharacter,
    /// Not one of the four shapes.
    #[error(
        "not a WAL segment (24 hex digits), <segment>.partial, <8 hex digits>.history or <segment>.<8 hex digits>.backup"
    )]
    UnknownForm,
    /// Hex digits in lower case (Postgres writes upper case only).
    #[error("hexadecimal digits must be upper case")]
    LowercaseHex,
    /// A character that is not a hex digit where one is required.
    #[error("expected hexadecimal digits 0-9A-F")]
    NotHex,
    /// The timeline field is 0.
    #[error("timeline 0 does not exist")]
    TimelineZero,
    /// The low eight digits are not below `XLogSegmentsPerXLogId`.
    #[error("segment field {low:08X} must be below {segs_per_xlogid:X} for {seg_size} segments")]
    SegmentOutOfRange {
        /// The low field found.
        low: u32,
        /// `XLogSegmentsPerXLogId` for the segment size.
        segs_per_xlogid: u64,
        /// The segment size in force.
        seg_size: WalSegSize,
    },
    /// A `.backup` offset that is not inside the segment.
    #[error("backup start offset {offset:08X} is not inside a {seg_size} segment")]
    BackupOffsetOutOfRange {
        /// The offset found.
        offset: u32,
        /// The segment size in force.
        seg_size: WalSegSize,
    },
}

impl WalFileName {
    /// The segment `segno` on `timeline`; refuses timeline 0 and segment numbers past
    /// [`WalSegSize::max_segno`].
    pub fn new(
        timeline: TimelineId,
        segno: SegNo,
        seg_size: WalSegSize,
    ) -> Result<WalFileName, FileNameError> {
        if timeline.0 == 0 {
            return Err(FileNameError::TimelineZero { segno });
        }
        let max = seg_size.max_segno();
        if segno > max {
            return Err(FileNameError::SegNoTooLarge {
                segno,
                max,
                seg_size,
            });
        }
        Ok(WalFileName {
            timeline,
            segno,
            seg_size,
        })
    }

    /// The segment holding the byte at `lsn` on `timeline` (`XLByteToSeg` + `XLogFileName`).
    pub fn containing(
        timeline: TimelineId,
        lsn: Lsn,
        seg_size: WalSegSize,
    ) -> Result<WalFileName, FileNameError> {
        WalFileName::new(timeline, lsn.segno(seg_size), seg_size)
    }

    /// Parses a 24-hex-digit segment name (`XLogFromFileName`); nothing else is accepted.
    pub fn parse(name: &str, seg_size: WalSegSize) -> Result<WalFileName, FileNameError> {
        match ArchiveFileName::parse(name, seg_size)? {
            ArchiveFileName::Segment(wal) => Ok(wal),
            _ => Err(invalid(name, NameProblem::UnknownForm)),
        }
    }

    /// The timeline this segment belongs to.
    pub fn timeline(self) -> TimelineId {
        self.timeline
    }

    /// The segment number.
    pub fn segno(self) -> SegNo {
        self.segno
    }

    /// The segment size the name was built for.
    pub fn seg_size(self) -> WalSegSize {
        self.seg_size
    }

    /// The LSN of the segment's first byte.
    pub fn start_lsn(self) -> Lsn {
        self.segno.start_lsn(self.seg_size)
    }

    /// The LSN just past the segment's last byte.
    pub fn end_lsn(self) -> Lsn {
        self.segno.end_lsn(self.seg_size)
    }

    /// True when `lsn` falls inside this segment.
    pub fn contains(self, lsn: Lsn) -> bool {
        lsn.segno(self.seg_size) == self.segno
    }

    /// The following segment on the same timeline, `None` past the last one.
    pub fn next(self) -> Option<WalFileName> {
        let segno = self.segno.next(self.seg_size)?;
        Some(WalFileName { segno, ..self })
    }

    /// The preceding segment on the same timeline, `None` before segment 0.
    pub fn prev(self) -> Option<WalFileName> {
        let segno = self.segno.prev()?;
        Some(WalFileName { segno, ..self })
    }

    /// The same segment number on another timeline; refuses timeline 0.
    pub fn on_timeline(self, timeline: TimelineId) -> Result<WalFileName, FileNameError> {
        WalFileName::new(timeline, self.segno, self.seg_size)
    }

    /// The segments on `timeline` holding the WAL bytes `[start, end)`, in order (empty when
    /// `end <= start`).
    pub fn covering(
        timeline: TimelineId,
        start: Lsn,
        end: Lsn,
        seg_size: WalSegSize,
    ) -> Result<impl Iterator<Item = WalFileName>, FileNameError> {
        let first = WalFileName::containing(timeline, start, seg_size)?;
        Ok(SegNo::covering(start, end, seg_size).map(move |segno| WalFileName { segno, ..first }))
    }
}

impl fmt::Display for WalFileName {
    /// `XLogFileName`: `%08X%08X%08X`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (log, seg) = self.segno.xlogid_parts(self.seg_size);
        write!(f, "{:08X}{:08X}{:08X}", self.timeline.0, log, seg)
    }
}

/// Every kind of file Postgres hands to `archive_command`, parsed and validated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum ArchiveFileName {
    /// A complete WAL segment, `<24 hex>`.
    Segment(WalFileName),
    /// The incomplete last segment of a timeline left at promotion or by a streaming
    /// receiver, `<24 hex>.partial` (`IsPartialXLogFileName`).
    Partial(WalFileName),
    /// A timeline history file, `%08X.history` (`TLHistoryFileName`).
    History(TimelineId),
    /// A backup history file, `<24 hex>.%08X.backup` (`BackupHistoryFileName`): the segment
    /// holding the backup's start and the start LSN's offset in it.
    Backup {
        /// The segment where the backup started.
        segment: WalFileName,
        /// `XLogSegmentOffset` of the backup start LSN.
        offset: u32,
    },
}

const SEGMENT_NAME_LEN: usize = 24;
const PARTIAL_SUFFIX: &str = ".partial";
const HISTORY_SUFFIX: &str = ".history";
const BACKUP_SUFFIX: &str = ".backup";

impl ArchiveFileName {
    /// Classifies and validates `name` for a cluster with segments of `seg_size`. Anything
    /// that is not exactly one of the four canonical shapes is refused, naming the input.
    pub fn parse(name: &str, seg_size: WalSegSize) -> Result<ArchiveFileName, FileNameError> {
        let fail = |problem| invalid(name, problem);
        if name.is_empty() {
            return Err(fail(NameProblem::Empty));
        }
        if name.contains(['/', '\\']) {
            return Err(fail(NameProblem::PathSeparator));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(NameProblem::BadCharacter));
        }
        let segment = |digits: &str| parse_segment(name, digits, seg_size);
        if name.len() == SEGMENT_NAME_LEN {
            return Ok(ArchiveFileName::Segment(segment(name)?));
        }
        if let Some(digits) = name.strip_suffix(PARTIAL_SUFFIX)
            && digits.len() == SEGMENT_NAME_LEN
        {
            return Ok(ArchiveFileName::Partial(segment(digits)?));
        }
        if let Some(digits) = name.strip_suffix(HISTORY_SUFFIX)
            && digits.len() == 8
        {
            let timeline = hex_field(name, digits)?;
            if timeline == 0 {
                return Err(fail(NameProblem::TimelineZero));
            }
            return Ok(ArchiveFileName::History(TimelineId(timeline)));
        }
        if let Some(rest) = name.strip_suffix(BACKUP_SUFFIX)
            && let Some((digits, offset)) = rest.split_once('.')
            && digits.len() == SEGMENT_NAME_LEN
            && offset.len() == 8
        {
            let segment = segment(digits)?;
            let offset = hex_field(name, offset)?;
            if offset >= seg_size.bytes() {
                return Err(fail(NameProblem::BackupOffsetOutOfRange {
                    offset,
                    seg_size,
                }));
            }
            return Ok(ArchiveFileName::Backup { segment, offset });
        }
        Err(fail(NameProblem::UnknownForm))
    }

    /// The timeline the file belongs to.
    pub fn timeline(self) -> TimelineId {
        match self {
            ArchiveFileName::Segment(wal) | ArchiveFileName::Partial(wal) => wal.timeline(),
            ArchiveFileName::Backup { segment, .. } => segment.timeline(),
            ArchiveFileName::History(timeline) => timeline,
        }
    }

    /// The WAL segment the file is (or, for `.backup`, points into), if any.
    pub fn segment(self) -> Option<WalFileName> {
        match self {
            ArchiveFileName::Segment(wal) | ArchiveFileName::Partial(wal) => Some(wal),
            ArchiveFileName::Backup { segment, .. } => Some(segment),
            ArchiveFileName::History(_) => None,
        }
    }
}

impl fmt::Display for ArchiveFileName {
    /// The canonical file name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveFileName::Segment(wal) => write!(f, "{wal}"),
            ArchiveFileName::Partial(wal) => write!(f, "{wal}{PARTIAL_SUFFIX}"),
            ArchiveFileName::History(timeline) => write!(f, "{:08X}{HISTORY_SUFFIX}", timeline.0),
            ArchiveFileName::Backup { segment, offset } => {
                write!(f, "{segment}.{offset:08X}{BACKUP_SUFFIX}")
            }
        }
    }
}

impl From<WalFileName> for ArchiveFileName {
    fn from(wal: WalFileName) -> ArchiveFileName {
        ArchiveFileName::Segment(wal)
    }
}

fn invalid(name: &str, problem: NameProblem) -> FileNameError {
    FileNameError::Invalid {
        name: name.to_string(),
        problem,
    }
}

/// Eight upper-case hex digits as a u32 (the caller has checked the length).
fn hex_field(name: &str, digits: &str) -> Result<u32, FileNameError> {
    for b in digits.bytes() {
        if matches!(b, b'a'..=b'f') {
            return Err(invalid(name, NameProblem::LowercaseHex));
        }
        if !matches!(b, b'0'..=b'9' | b'A'..=b'F') {
            return Err(invalid(name, NameProblem::NotHex));
        }
    }
    u32::from_str_radix(digits, 16).map_err(|_| invalid(name, NameProblem::NotHex))
}

/// `XLogFromFileName` on exactly 24 digits, validating each field.
fn parse_segment(
    name: &str,
    digits: &str,
    seg_size: WalSegSize,
) -> Result<WalFileName, FileNameError> {
    // Byte slicing is safe: the caller checked that the name is all ASCII.
    let timeline = hex_field(name, &digits[0..8])?;
    let log = hex_field(name, &digits[8..16])?;
    let low = hex_field(name, &digits[16..24])?;
    if timeline == 0 {
        return Err(invalid(name, NameProblem::TimelineZero));
    }
    let segs_per_xlogid = seg_size.segs_per_xlogid();
    if u64::from(low) >= segs_per_xlogid {
        return Err(invalid(
            name,
            NameProblem::SegmentOutOfRange {
                low,
                segs_per_xlogid,
                seg_size,
            },
        ));
    }
    let segno = SegNo(u64::from(log) * segs_per_xlogid + u64::from(low));
    Ok(WalFileName {
        timeline: TimelineId(timeline),
        segno,
        seg_size,
    })
}

#[cfg(test)]
#[path = "file_name_tests.rs"]
mod tests;
