//! Segment assembly: the WAL bytes of the segment being received, kept as the pieces the
//! server sent (shared, not copied), cut at segment boundaries into [`CompleteSegment`]s, and
//! snapshotted cheaply as a [`Tail`] for the partial uploads.

use bytes::{Bytes, BytesMut};

use crate::lsn::Lsn;
use crate::pg::file_name::{FileNameError, WalFileName};
use crate::pg::segment::WalSegSize;
use crate::pg::timeline::TimelineId;

/// How many small pieces [`SegmentAssembler`] joins into one.
const MERGE_RUN: usize = 32;
/// The size classes of pieces joined: below 64 KiB, then below 1 MiB.
const MERGE_CLASSES: [usize; 2] = [64 << 10, 1 << 20];

/// A whole segment, received from its first byte to its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteSegment {
    /// The segment's name.
    pub name: WalFileName,
    /// Its bytes, exactly one segment long.
    pub content: Bytes,
}

/// The beginning of the segment being received: `len` bytes from the segment's start.
/// Cloning shares the pieces; [`Tail::content`] joins them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The segment.
    pub name: WalFileName,
    pieces: Vec<Bytes>,
    len: u64,
}

impl Tail {
    /// How many bytes of the segment it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The LSN just past its last byte.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(self.name.start_lsn().0 + self.len)
    }

    /// The bytes as the server sent them, in order (their lengths add up to [`Tail::len`]).
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The bytes, joined.
    pub fn content(&self) -> Bytes {
        join(&self.pieces, self.len)
    }
}

/// Receives WAL for one timeline from a segment start onwards and hands out each segment as
/// it completes. The server sends WAL in order; anything else is a [`Discontinuity`].
#[derive(Debug)]
pub struct SegmentAssembler {
    current: WalFileName,
    pieces: Vec<Bytes>,
    len: u64,
}

/// Data that does not continue the stream where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discontinuity {
    /// Where the next byte was expected.
    pub expected: Lsn,
    /// Where the data said it starts.
    pub got: Lsn,
}

impl SegmentAssembler {
    /// An assembler expecting the first byte of the segment holding `start` on `timeline`.
    pub fn new(
        timeline: TimelineId,
        start: Lsn,
        seg_size: WalSegSize,
    ) -> Result<SegmentAssembler, FileNameError> {
        Ok(SegmentAssembler {
            current: WalFileName::containing(timeline, start, seg_size)?,
            pieces: Vec::new(),
            len: 0,
        })
    }

    /// The segment being received.
    pub fn current(&self) -> WalFileName {
        self.current
    }

    /// Where the next byte is expected: everything before it has been received.
    pub fn position(&self) -> Lsn {
        Lsn(self.current.start_lsn().0 + self.len)
    }

    /// Adds `data` that starts at `start`; returns the segments it completed, in order.
    pub fn push(
        &mut self,
        start: Lsn,
        mut data: Bytes,
    ) -> Result<Vec<CompleteSegment>, Discontinuity> {
        if start != self.position() {
            return Err(Discontinuity {
                expected: self.position(),
                got: start,
            });
        }
        let seg_bytes = self.current.seg_size().as_u64();
        let mut done = Vec::new();
        while !data.is_empty() {
            let room = seg_bytes - self.len;
            let take = room.min(data.len() as u64) as usize;
            let piece = data.split_to(take);
            self.len += piece.len() as u64;
            self.pieces.push(piece);
            self.compact();
            if self.len == seg_bytes {
                let content = join(&self.pieces, self.len);
                done.push(CompleteSegment {
                    name: self.current,
                    content,
                });
                self.pieces.clear();
                self.len = 0;
                match self.current.next() {
                    Some(next) => self.current = next,
                    // The last segment a 64-bit LSN can name: nothing can follow it.
                    None if data.is_empty() => break,
                    None => {
                        return Err(Discontinuity {
                            expected: self.current.end_lsn(),
                            got: self.current.end_lsn(),
                        });
                    }
                }
            }
        }
        Ok(done)
    }

    /// Joins runs of small pieces, so that a segment received as tens of thousands of small
    /// messages (one per synchronous commit) is held as at most about a hundred pieces: every
    /// [`Tail`] snapshot clones the list, and each upload walks it. Each run of
    /// [`MERGE_RUN`] pieces all below a size class becomes one piece; every byte is copied
    /// about once per class.
    fn compact(&mut self) {
        for class in MERGE_CLASSES {
            loop {
                let n = self.pieces.len();
                if n < MERGE_RUN
                    || self.pieces[n - MERGE_RUN..]
                        .iter()
                        .any(|p| p.len() >= class)
                {
                    break;
                }
                let run = self.pieces.split_off(n - MERGE_RUN);
                let total: usize = run.iter().map(Bytes::len).sum();
                self.pieces.push(join(&run, total as u64));
            }
        }
    }

    /// What has been received of the current segment (empty right after a boundary).
    pub fn tail(&self) -> Tail {
        Tail {
            name: self.current,
            pieces: self.pieces.clone(),
            len: self.len,
        }
    }
}

fn join(pieces: &[Bytes], len: u64) -> Bytes {
    if let [one] = pieces {
        return one.clone();
    }
    let mut out = BytesMut::with_capacity(len as usize);
    for piece in pieces {
        out.extend_from_slice(piece);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg1() -> WalSegSize {
        WalSegSize::from_mib(1).unwrap()
    }

    #[test]
    fn pieces_join_into_segments_cut_at_the_boundary() {
        let size = seg1();
        let mut asm = SegmentAssembler::new(TimelineId(1), Lsn(3 << 20), size).unwrap();
        assert_eq!(asm.current().to_string(), "000000010000000000000003");
        let a = Bytes::from(vec![1u8; 700 << 10]);
        assert!(asm.push(Lsn(3 << 20), a).unwrap().is_empty());
        assert_eq!(asm.tail().len(), 700 << 10);
        assert_eq!(asm.tail().end_lsn(), Lsn((3 << 20) + (700 << 10)));
        // 400 KiB crosses into segment 4.
        let b = Bytes::from(vec![2u8; 400 << 10]);
        let done = asm.push(asm.position(), b).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].name.to_string(), "000000010000000000000003");
        assert_eq!(done[0].content.len(), 1 << 20);
        assert_eq!(done[0].content[(700 << 10) - 1], 1);
        assert_eq!(done[0].content[700 << 10], 2);
        assert_eq!(asm.current().to_string(), "000000010000000000000004");
        assert_eq!(asm.tail().content(), Bytes::from(vec![2u8; 76 << 10]));
    }

    #[test]
    fn many_small_messages_are_held_as_few_pieces() {
        let mut asm = SegmentAssembler::new(TimelineId(1), Lsn(0), seg1()).unwrap();
        let mut expected = Vec::new();
        for i in 0..5000u32 {
            let msg: Vec<u8> = (0..150).map(|j| (i * 7 + j) as u8).collect();
            expected.extend_from_slice(&msg);
            assert!(
                asm.push(asm.position(), Bytes::from(msg))
                    .unwrap()
                    .is_empty()
            );
        }
        let tail = asm.tail();
        assert!(tail.pieces().len() < 100, "{} pieces", tail.pieces().len());
        assert_eq!(tail.content(), Bytes::from(expected));
    }

    #[test]
    fn a_gap_or_overlap_is_refused() {
        let mut asm = SegmentAssembler::new(TimelineId(1), Lsn(0), seg1()).unwrap();
        asm.push(Lsn(0), Bytes::from_static(b"abcd")).unwrap();
        let err = asm.push(Lsn(8), Bytes::from_static(b"x")).unwrap_err();
        assert_eq!(
            err,
            Discontinuity {
                expected: Lsn(4),
                got: Lsn(8)
            }
        );
        assert!(asm.push(Lsn(2), Bytes::from_static(b"x")).is_err());
    }

    #[test]
    fn starts_at_the_segment_holding_the_start() {
        let asm = SegmentAssembler::new(TimelineId(2), Lsn((5 << 20) + 17), seg1()).unwrap();
        assert_eq!(asm.position(), Lsn(5 << 20));
        assert!(asm.tail().is_empty());
    }
}
