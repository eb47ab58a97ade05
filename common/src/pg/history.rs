//! Timeline history files (`%08X.history`): parsing, writing, and the questions restore asks
//! of them (which timeline holds an LSN, where the timeline switches lie on the way to a
//! target timeline, which segment files replay a range).
//!
//! Mirrors `src/backend/access/transam/timeline.c`: `readTimeLineHistory` (one
//! `parentTLI<TAB>%X/%X<TAB>reason` line per switch, `#` comments and blank lines ignored,
//! strictly increasing TLIs, all below the file's own TLI), `writeTimeLineHistory` (the
//! parent's file verbatim, then a newline, then the new line), `tliOfPointInHistory`,
//! `tliSwitchPoint` and `tliInHistory`; and the segment choice of `XLogFileReadAnyTLI` in
//! `src/backend/access/transam/xlogrecovery.c`.

use std::fmt;

use crate::lsn::Lsn;
use crate::pg::file_name::{FileNameError, WalFileName};
use crate::pg::segment::{SegNo, WalSegSize};
use crate::pg::timeline::TimelineId;

/// One line of a history file: at `switchpoint`, timeline `parent` ended and its child began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub parent: TimelineId,
    /// The first LSN that belongs to the child (`TimeLineHistoryEntry.end` of the parent).
    pub switchpoint: Lsn,
    /// Why recovery ended there, free text (`no recovery target specified`, `before 2026-...`).
    /// Non-UTF-8 bytes (a restore point name in another encoding) are replaced.
    pub reason: String,
}

/// A stretch of WAL owned by one timeline on the path to a target timeline
/// (`TimeLineHistoryEntry`): bytes `[begin, end)` are read from `timeline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineSpan {
    /// The timeline.
    pub timeline: TimelineId,
    /// Its first LSN on this path ([`Lsn::INVALID`] for the oldest ancestor).
    pub begin: Lsn,
    /// Its switchpoint to the next timeline on the path; `None` for the target itself.
    pub end: Option<Lsn>,
}

/// The ancestry of one timeline: the parsed content of its `.history` file.
///
/// Keeps the file's bytes as well as its entries: Postgres builds a child's file by copying
/// the parent's verbatim, and some reasons end in a stray newline (`before <time>\n`), so
/// only the original bytes give a byte-identical file back.
///
/// Timeline 1 has no file; [`TimelineHistory::first`] stands for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineHistory {
    timeline: TimelineId,
    entries: Vec<HistoryEntry>,
    raw: Vec<u8>,
}

/// Why a history file (or a new entry) was refused. Every variant names the file's timeline
/// and, when parsing, the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A line that is not `TLI<TAB>X/X[<TAB>reason]`.
    #[error("syntax error in history file {file}, line {line} {text:?}: expected {expected}")]
    Syntax {
        /// The file name, `%08X.history`.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A timeline ID not above the previous line's.
    #[error(
        "invalid data in history file {file}, line {line}: timeline IDs must be in increasing sequence, found {found} after {previous}"
    )]
    NotIncreasing {
        /// The file name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// The previous line's timeline.
        previous: TimelineId,
        /// This line's timeline.
        found: TimelineId,
    },
    /// A parent timeline not below the file's own (child) timeline.
    #[error(
        "invalid data in history file {file}, line {line}: timeline {found} is not less than the child timeline's ID"
    )]
    NotBelowChild {
        /// The file name.
        file: String,
        /// The 1-based line number (0 when adding an entry).
        line: usize,
        /// The parent timeline found.
        found: TimelineId,
    },
    /// A switchpoint before the previous one: the ancestry would run backwards.
    #[error(
        "invalid data in history file {file}, line {line}: switchpoint {found} is before the previous switchpoint {previous}"
    )]
    SwitchpointDecreasing {
        /// The file name.
        file: String,
        /// The 1-based line number (0 when adding an entry).
        line: usize,
        /// The previous switchpoint.
        previous: Lsn,
        /// This line's switchpoint.
        found: Lsn,
    },
    /// Timeline 0 does not exist.
    #[error("history file {file}: timeline 0 does not exist")]
    TimelineZero {
        /// The file name.
        file: String,
    },
    /// A reason with a line break, which would corrupt the file.
    #[error("history file {file}: the reason {reason:?} contains a line break")]
    ReasonHasNewline {
        /// The file name.
        file: String,
        /// The refused reason.
        reason: String,
    },
}

/// Field separators on a history line.
const BLANKS: [char; 2] = ['\t', ' '];

fn file_name(timeline: TimelineId) -> String {
    format!("{:08X}.history", timeline.0)
}

impl TimelineHistory {
    /// The history of timeline 1: no ancestors.
    pub fn first() -> TimelineHistory {
        TimelineHistory {
            timeline: TimelineId(1),
            entries: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Parses the content of `timeline`'s history file (`readTimeLineHistory`).
    pub fn parse(timeline: TimelineId, content: &[u8]) -> Result<TimelineHistory, HistoryError> {
        let file = || file_name(timeline);
        if timeline.0 == 0 {
            return Err(HistoryError::TimelineZero { file: file() });
        }
        let mut history = TimelineHistory {
            timeline,
            entries: Vec::new(),
            raw: content.to_vec(),
        };
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let text = String::from_utf8_lossy(raw);
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let syntax = |expected| HistoryError::Syntax {
                file: file(),
                line,
                text: text.to_string(),
                expected,
            };
            // Fields are separated by a tab, but like the server's `sscanf("%u\t%X/%X")`
            // any run of blanks is accepted.
            let (tli_text, rest) = trimmed.split_at(trimmed.find(BLANKS).unwrap_or(trimmed.len()));
            if tli_text.is_empty() || !tli_text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax("a numeric timeline ID"));
            }
            let parent = tli_text
                .parse::<u32>()
                .map(TimelineId)
                .map_err(|_| syntax("a numeric timeline ID"))?;
            let rest = rest.trim_start_matches(BLANKS).trim_end_matches('\r');
            let (lsn_text, reason) = rest.split_at(rest.find(BLANKS).unwrap_or(rest.len()));
            let reason = reason.strip_prefix(BLANKS).unwrap_or(reason);
            let switchpoint: Lsn = lsn_text
                .parse()
                .map_err(|_| syntax("a write-ahead log switchpoint location"))?;
            let entry = HistoryEntry {
                parent,
                switchpoint,
                reason: reason.to_string(),
            };
            history.check_next(&entry, line)?;
            history.entries.push(entry);
        }
        Ok(history)
    }

    /// Checks that `entry` may follow the entries so far.
    fn check_next(&self, entry: &HistoryEntry, line: usize) -> Result<(), HistoryError> {
        let file = file_name(self.timeline);
        if entry.parent.0 == 0 {
            return Err(HistoryError::TimelineZero { file });
        }
        if let Some(last) = self.entries.last() {
            if entry.parent <= last.parent {
                return Err(HistoryError::NotIncreasing {
                    file,
                    line,
                    previous: last.parent,
                    found: entry.parent,
                });
            }
            if entry.switchpoint < last.switchpoint {
                return Err(HistoryError::SwitchpointDecreasing {
                    file,
                    line,
                    previous: last.switchpoint,
                    found: entry.switchpoint,
                });
            }
        }
        if entry.parent >= self.timeline {
            return Err(HistoryError::NotBelowChild {
                file,
                line,
                found: entry.parent,
            });
        }
        Ok(())
    }

    /// The history of a new timeline `child` that branches off this one at `switchpoint`,
    /// as promotion writes it (`writeTimeLineHistory`). `reason` may end in one newline, as
    /// the server's time and LSN reasons do; any other line break is refused.
    pub fn child(
        &self,
        child: TimelineId,
        switchpoint: Lsn,
        reason: &str,
    ) -> Result<TimelineHistory, HistoryError> {
        let file = file_name(child);
        let one_line = reason.strip_suffix('\n').unwrap_or(reason);
        if one_line.contains(['\n', '\r']) {
            return Err(HistoryError::ReasonHasNewline {
                file,
                reason: reason.to_string(),
            });
        }
        let mut history = TimelineHistory {
            timeline: child,
            entries: self.entries.clone(),
            raw: write_history_file(self.file_content(), self.timeline, switchpoint, reason),
        };
        let entry = HistoryEntry {
            parent: self.timeline,
            switchpoint,
            reason: one_line.to_string(),
        };
        history.check_next(&entry, 0)?;
        history.entries.push(entry);
        Ok(history)
    }

    /// The timeline this history leads to.
    pub fn timeline(&self) -> TimelineId {
        self.timeline
    }

    /// The switches, oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// The file name, `%08X.history` (`TLHistoryFileName`).
    pub fn file_name(&self) -> String {
        file_name(self.timeline)
    }

    /// The file content: the bytes parsed, or for a history built with [`Self::child`],
    /// what `writeTimeLineHistory` writes (each line `parent<TAB>%X/%X<TAB>reason\n`, with
    /// `"\n"` before every line but the first, as the server appends to a copy of the
    /// parent's file).
    pub fn to_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The history file's bytes, `None` for a timeline without one (timeline 1).
    fn file_content(&self) -> Option<&[u8]> {
        (self.timeline.0 > 1 || !self.raw.is_empty()).then_some(self.raw.as_slice())
    }

    /// The stretches of WAL on the path to this timeline, oldest first (the list
    /// `readTimeLineHistory` returns, reversed).
    pub fn spans(&self) -> Vec<TimelineSpan> {
        let mut spans = Vec::with_capacity(self.entries.len() + 1);
        let mut begin = Lsn::INVALID;
        for entry in &self.entries {
            spans.push(TimelineSpan {
                timeline: entry.parent,
                begin,
                end: Some(entry.switchpoint),
            });
            begin = entry.switchpoint;
        }
        spans.push(TimelineSpan {
            timeline: self.timeline,
            begin,
            end: None,
        });
        spans
    }

    /// `tliInHistory`: whether `timeline` is on the path to this one (itself included).
    pub fn contains_timeline(&self, timeline: TimelineId) -> bool {
        timeline == self.timeline || self.entries.iter().any(|e| e.parent == timeline)
    }

    /// `tliSwitchPoint`: where `timeline` ends on the path to this one; `None` for this
    /// timeline itself or one not on the path.
    pub fn switch_point(&self, timeline: TimelineId) -> Option<Lsn> {
        self.entries
            .iter()
            .find(|e| e.parent == timeline)
            .map(|e| e.switchpoint)
    }

    /// `tliOfPointInHistory`: the timeline whose WAL holds `lsn` when recovering to this
    /// timeline. A switchpoint belongs to the child.
    pub fn timeline_of(&self, lsn: Lsn) -> TimelineId {
        self.spans()
            .iter()
            .rev()
            .find(|s| s.begin <= lsn && s.end.is_none_or(|end| lsn < end))
            .map_or(self.timeline, |s| s.timeline)
    }

    /// The timeline whose copy of segment `segno` recovery reads first (`XLogFileReadAnyTLI`):
    /// the newest timeline on the path that had begun by that segment. The segment holding a
    /// switchpoint is read from the child, which has a copy of the parent's WAL before it.
    pub fn timeline_of_segment(&self, segno: SegNo, seg_size: WalSegSize) -> TimelineId {
        self.spans()
            .iter()
            .rev()
            .find(|s| s.begin.segno(seg_size) <= segno)
            .map_or(self.timeline, |s| s.timeline)
    }

    /// The switches met while replaying `[start, end)` towards this timeline, oldest first.
    pub fn switches_between(&self, start: Lsn, end: Lsn) -> Vec<&HistoryEntry> {
        self.entries
            .iter()
            .filter(|e| start < e.switchpoint && e.switchpoint < end)
            .collect()
    }

    /// The WAL files recovery reads to replay `[start, end)` towards this timeline, in
    /// order, each on the timeline [`Self::timeline_of_segment`] picks.
    pub fn segments_between(
        &self,
        start: Lsn,
        end: Lsn,
        seg_size: WalSegSize,
    ) -> Result<Vec<WalFileName>, FileNameError> {
        SegNo::covering(start, end, seg_size)
            .map(|segno| {
                WalFileName::new(self.timeline_of_segment(segno, seg_size), segno, seg_size)
            })
            .collect()
    }
}

impl fmt::Display for TimelineHistory {
    /// The file content (lossless for UTF-8 reasons).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

/// `writeTimeLineHistory`: the new history file for a child of `parent` that branched at
/// `switchpoint`, given the parent's own history file (`None` when it has none, as for
/// timeline 1). Byte for byte what the server writes.
pub fn write_history_file(
    parent_file: Option<&[u8]>,
    parent: TimelineId,
    switchpoint: Lsn,
    reason: &str,
) -> Vec<u8> {
    let mut out = parent_file.map(<[u8]>::to_vec).unwrap_or_default();
    let separator = if parent_file.is_some() { "\n" } else { "" };
    out.extend_from_slice(format!("{separator}{}\t{switchpoint}\t{reason}\n", parent.0).as_bytes());
    out
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
