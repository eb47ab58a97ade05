//! The byte layout of a stream tail journal `<segment>.partial.journal` (`docs/FORMAT.md`,
//! "`.partial` objects"): the pieces of a segment's tail appended to one file, each as a
//! **frame**, so that on a local repository one flush costs one append and one `fdatasync`
//! instead of a new file.
//!
//! A frame is a 16-byte header then the payload:
//!
//! ```text
//! magic "WSJ1" | offset u32 LE | payload length u32 LE | crc32c u32 LE | payload
//! ```
//!
//! The payload is exactly the stored bytes a piece object `<segment>.partial.<offset>` would
//! hold (the repository's codec output, sealed for the piece's key in an encrypted
//! repository); the crc32c covers the first 12 header bytes and the payload. Frames are read in
//! file order up to the first one that is short, zeros, or fails its crc: that frame was torn
//! by a crash (its flush was never acknowledged) or is still being written, and it ends the
//! journal. A journal is not an atomic object: a reader may see a frame half written, and the
//! crc makes that safe. A bad frame followed by a valid one is never written by a stream (a
//! restart truncates the torn remains before appending); [`parse`] reports it for `verify`.
//! (The search for a valid frame after a bad one looks at every byte, so a torn frame whose
//! payload happens to embed a well-formed frame, e.g. uncompressed WAL of a row crafted to,
//! reads as damage: only `verify`'s verdict and the stream's choice to replace rather than
//! adopt the journal depend on it, never which bytes are delivered.)

use bytes::Bytes;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"WSJ1";
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 16;

/// Bytes a stream zero-fills a new journal to when it creates it (the segment size: a
/// segment's frames usually fit, since the codec rarely grows WAL), so that each later frame
/// is an overwrite inside the file, which `fdatasync` makes durable without a file-system
/// journal commit (what `pg_receivewal` does with its segments). Frames past it extend the
/// file. Readers take the zeros after the last frame as the journal's end.
pub fn preallocation(seg_bytes: u64) -> u64 {
    seg_bytes
}

/// The most bytes a segment's journal may hold: the segment twice over (codec and frame
/// overhead of many tiny flushes) plus 1 MiB. A stream whose journal would grow past it stores
/// further flushes as piece objects; a reader refuses a larger journal.
pub fn max_len(seg_bytes: u64) -> u64 {
    2 * seg_bytes + (1 << 20)
}

/// One frame's bytes: header and `payload`.
pub fn encode_frame(offset: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crate::crc::crc32c_append(crate::crc::crc32c(&out), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// One valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where in the segment the piece's bytes start.
    pub offset: u32,
    /// The stored piece bytes.
    pub payload: Bytes,
}

/// How the valid frames end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEnd {
    /// The last valid frame ends the file, or only zeros follow it (preallocated space).
    Clean,
    /// Bytes follow that are no frame (torn by a crash, or being written): ignored.
    Torn {
        /// File position where they start.
        at: u64,
    },
    /// A bad frame at `at` is followed by a valid frame at `next`: damage, not a torn end.
    Corrupt {
        /// File position of the bad frame.
        at: u64,
        /// File position of the valid frame after it.
        next: u64,
    },
}

/// A journal's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The valid frames, in file order.
    pub frames: Vec<Frame>,
    /// Bytes of the file the valid frames fill (where the next frame is appended).
    pub valid_len: u64,
    /// What follows them.
    pub end: JournalEnd,
}

/// The frame starting at `at`, if a whole valid one does.
fn frame_at(bytes: &Bytes, at: usize) -> Option<(Frame, usize)> {
    let header = bytes.get(at..at + HEADER_LEN)?;
    if header[..4] != MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
    let (offset, len, crc) = (word(4), word(8) as usize, word(12));
    let end = (at + HEADER_LEN).checked_add(len)?;
    let payload = bytes.get(at + HEADER_LEN..end)?;
    if crate::crc::crc32c_append(crate::crc::crc32c(&header[..12]), payload) != crc {
        return None;
    }
    let frame = Frame {
        offset,
        payload: bytes.slice(at + HEADER_LEN..end),
    };
    Some((frame, end))
}

/// The valid frames of the journal `bytes`, under the rule in the module documentation.
pub fn parse(bytes: &Bytes) -> Parsed {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((frame, next)) = frame_at(bytes, at) {
        frames.push(frame);
        at = next;
    }
    // Preallocated zeros after the last frame: skipped at memory speed before the search.
    let nonzero = bytes[at..].iter().position(|&b| b != 0).map(|i| at + i);
    let end = if nonzero.is_none() {
        JournalEnd::Clean
    } else {
        // Damage rather than a torn end when a valid frame starts anywhere after.
        let from = nonzero.unwrap_or(at).max(at + 1);
        let later = (from..bytes.len().saturating_sub(HEADER_LEN - 1))
            .filter(|&i| bytes[i..i + 4] == MAGIC)
            .find(|&i| frame_at(bytes, i).is_some());
        match later {
            Some(next) => JournalEnd::Corrupt {
                at: at as u64,
                next: next as u64,
            },
            None => JournalEnd::Torn { at: at as u64 },
        }
    };
    Parsed {
        frames,
        valid_len: at as u64,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(frames: &[(u32, &[u8])]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|(o, p)| encode_frame(*o, p))
            .collect()
    }

    #[test]
    fn frames_round_trip_in_file_order() {
        let bytes = journal(&[(0, b"first"), (5, b""), (5, b"second piece")]);
        let parsed = parse(&Bytes::from(bytes.clone()));
        assert_eq!(parsed.end, JournalEnd::Clean);
        assert_eq!(parsed.valid_len, bytes.len() as u64);
        let got: Vec<_> = parsed
            .frames
            .iter()
            .map(|f| (f.offset, f.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, b"first".to_vec()),
                (5, Vec::new()),
                (5, b"second piece".to_vec())
            ]
        );
        assert_eq!(parse(&Bytes::new()).frames, Vec::new());
    }

    #[test]
    fn a_torn_last_frame_ends_the_journal() {
        let good = journal(&[(0, b"acknowledged")]);
        let last = encode_frame(12, b"never acknowledged");
        let torn: Vec<Vec<u8>> = vec![
            last[..7].to_vec(),              // truncated header
            last[..HEADER_LEN + 3].to_vec(), // truncated payload
            {
                let mut bad = last.clone(); // bad crc
                let n = bad.len();
                bad[n - 1] ^= 1;
                bad
            },
        ];
        for tail in torn {
            let mut bytes = good.clone();
            bytes.extend_from_slice(&tail);
            let parsed = parse(&Bytes::from(bytes));
            assert_eq!(parsed.frames.len(), 1);
            assert_eq!(parsed.valid_len, good.len() as u64);
            assert_eq!(
                parsed.end,
                JournalEnd::Torn {
                    at: good.len() as u64
                }
            );
        }
    }

    #[test]
    fn preallocated_zeros_after_the_last_frame_end_it_cleanly() {
        let mut bytes = journal(&[(0, b"acknowledged")]);
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        let parsed = parse(&Bytes::from(bytes));
        assert_eq!(parsed.frames.len(), 1);
        assert_eq!((parsed.valid_len, parsed.end), (valid, JournalEnd::Clean));
    }

    #[test]
    fn a_bad_frame_followed_by_a_good_one_is_damage() {
        let mut bytes = journal(&[(0, b"one"), (3, b"two"), (6, b"three")]);
        let second = encode_frame(0, b"one").len();
        bytes[second + HEADER_LEN] ^= 0xFF; // the second frame's payload
        let parsed = parse(&Bytes::from(bytes));
        assert_eq!(parsed.frames.len(), 1);
        let third = second + encode_frame(3, b"two").len();
        assert_eq!(
            parsed.end,
            JournalEnd::Corrupt {
                at: second as u64,
                next: third as u64
            }
        );
    }
}
