//! Encoding the growing tail as an object without starting over each time.
//!
//! A stream tail is stored again and again as it grows (every `--partial-interval`, or after
//! every message with `--synchronous`). Encoding it with [`crate::codec::encode_to_vec`] would
//! compress the whole segment so far on every upload, so that the cost of a synchronous
//! commit grew with the segment. [`TailEncoder`] keeps, for the segment being received, the
//! LZ4 blocks of the 64 KiB blocks already compressed and the crc32c of the bytes they cover;
//! each upload compresses only the new bytes and frames the result.
//!
//! The output is an ordinary object of the documented format (`docs/FORMAT.md`, version 1):
//! the header with `SUMMARY_IN_HEADER`, the payload in chunks, the trailer. Its codec is
//! always `lz4` (one LZ4 frame of independent 64 KiB blocks, as `lz4 -d` reads), whatever
//! the repository's `compression`: every reader decodes every codec, since the header names
//! it. Complete segments are not encoded here: they go through `walship archive`'s path, with
//! the configured codec. Tests decode every output with the codec's own reader.

use bytes::Bytes;

use crate::codec::{Codec, FORMAT_VERSION, Lz4Block, ObjectHeader, RawSummary, lz4_frame_header};
use crate::pg::file_name::WalFileName;

use super::segment::Tail;

/// Raw bytes per LZ4 block (the frame's block maximum).
const BLOCK: usize = 64 * 1024;
/// Payload chunk length (the writers' usual 256 KiB; readers accept up to 1 MiB).
const CHUNK: usize = 256 * 1024;
/// The trailer's end marker.
const END_MARKER: &[u8; 4] = b"WEND";

/// One encoded tail, ready to store.
#[derive(Debug, Clone)]
pub struct EncodedTail {
    /// The object's bytes.
    pub bytes: Bytes,
    /// Length of the raw content.
    pub raw_len: u64,
    /// crc32c of the raw content.
    pub raw_crc32c: u32,
    /// crc32c of the whole object as stored (what a backend reports on HEAD).
    pub stored_crc32c: u32,
}

/// Encodes successive tails of a segment, compressing each byte once.
#[derive(Debug, Default)]
pub struct TailEncoder {
    segment: Option<WalFileName>,
    /// The LZ4 frame so far: its header and every complete block (each with its size field).
    frame: Vec<u8>,
    /// Raw bytes the complete blocks cover (a multiple of [`BLOCK`]).
    done: usize,
    /// crc32c of those raw bytes.
    done_crc: u32,
    /// The block being compressed (its buffer reused).
    scratch: Lz4Block,
}

impl TailEncoder {
    /// The codec the tails are written with.
    pub const CODEC: Codec = Codec::Lz4;

    /// Encodes `tail` as a complete object. The work is proportional to the bytes added since
    /// the last call for the same segment (plus one crc32c pass over the earlier bytes, which
    /// checks that they did not change; if they did, the segment is encoded afresh).
    pub fn encode(&mut self, tail: &Tail) -> EncodedTail {
        let pieces = tail.pieces();
        let len = tail.len() as usize;
        if self.segment != Some(tail.name)
            || len < self.done
            || crc_of(pieces, 0, self.done) != self.done_crc
        {
            self.reset(tail.name);
        }
        let raw_crc32c = crate::crc::crc32c_append(self.done_crc, &range(pieces, self.done, len));
        let whole = len - len % BLOCK;
        while self.done < whole {
            let block = range(pieces, self.done, self.done + BLOCK);
            push_block(&mut self.scratch, &mut self.frame, &block);
            self.done_crc = crate::crc::crc32c_append(self.done_crc, &block);
            self.done += BLOCK;
        }
        let mut last = Vec::new();
        if len > self.done {
            push_block(&mut self.scratch, &mut last, &range(pieces, self.done, len));
        }
        last.extend_from_slice(&0u32.to_le_bytes());
        let payload = [&self.frame[..], &last[..]].concat();
        let summary = RawSummary {
            len: len as u64,
            crc32c: raw_crc32c,
        };
        let bytes = frame_object(Self::CODEC, summary, &payload);
        let stored_crc32c = crate::crc::crc32c(&bytes);
        EncodedTail {
            bytes: Bytes::from(bytes),
            raw_len: len as u64,
            raw_crc32c,
            stored_crc32c,
        }
    }

    fn reset(&mut self, segment: WalFileName) {
        self.segment = Some(segment);
        self.frame = lz4_frame_header(lz4_flex::frame::BlockSize::Max64KB);
        self.done = 0;
        self.done_crc = 0;
    }
}

/// Header, `payload` in chunks, end chunk, trailer.
fn frame_object(codec: Codec, summary: RawSummary, payload: &[u8]) -> Vec<u8> {
    let header = ObjectHeader {
        version: FORMAT_VERSION,
        codec,
        summary: Some(summary),
    };
    let chunks = payload.len().div_ceil(CHUNK);
    let mut out = Vec::with_capacity(32 + payload.len() + 4 * (chunks + 1) + 20);
    out.extend_from_slice(&header.encode());
    for chunk in payload.chunks(CHUNK) {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    // The trailer's stored crc32c covers every byte before the trailer.
    let stored = crate::crc::crc32c(&out);
    out.extend_from_slice(&summary.len.to_le_bytes());
    out.extend_from_slice(&summary.crc32c.to_le_bytes());
    out.extend_from_slice(&stored.to_le_bytes());
    out.extend_from_slice(END_MARKER);
    out
}

/// Appends one LZ4 block, compressed in `scratch`, to `out`.
fn push_block(scratch: &mut Lz4Block, out: &mut Vec<u8>, raw: &[u8]) {
    scratch
        .compress(raw)
        .expect("a tail block (64 KiB) is within an lz4 block's maximum");
    out.extend_from_slice(scratch.encoded());
}

/// Bytes `from..to` of the concatenated pieces.
fn range(pieces: &[Bytes], from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(to - from);
    visit(pieces, from, to, |part| out.extend_from_slice(part));
    out
}

/// crc32c of bytes `from..to` of the concatenated pieces.
fn crc_of(pieces: &[Bytes], from: usize, to: usize) -> u32 {
    let mut crc = 0;
    visit(pieces, from, to, |part| {
        crc = crate::crc::crc32c_append(crc, part)
    });
    crc
}

fn visit(pieces: &[Bytes], from: usize, to: usize, mut f: impl FnMut(&[u8])) {
    let mut at = 0;
    for piece in pieces {
        let end = at + piece.len();
        if end > from && at < to {
            f(&piece[from.saturating_sub(at)..(to - at).min(piece.len())]);
        }
        if end >= to {
            break;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_to_vec;
    use crate::lsn::Lsn;
    use crate::pg::segment::WalSegSize;
    use crate::pg::timeline::TimelineId;
    use crate::stream::segment::SegmentAssembler;

    /// WAL-like bytes: compressible runs with some noise.
    fn wal_like(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 == 0 { x as u8 } else { (i / 300) as u8 }
            })
            .collect()
    }

    #[test]
    fn every_growing_tail_decodes_to_its_bytes() {
        {
            let size = WalSegSize::from_mib(1).unwrap();
            let mut asm = SegmentAssembler::new(TimelineId(1), Lsn(1 << 20), size).unwrap();
            let mut enc = TailEncoder::default();
            let data = wal_like((1 << 20) - 1, 7);
            let mut at = 0;
            // Pieces of odd sizes, crossing block and chunk boundaries.
            for step in [1, 100, 65_535, 1, 65_536, 70_000, 300_000, 8_191, 400_000] {
                let end = (at + step).min(data.len());
                let piece = Bytes::copy_from_slice(&data[at..end]);
                asm.push(Lsn((1 << 20) + at as u64), piece).unwrap();
                at = end;
                let tail = asm.tail();
                let encoded = enc.encode(&tail);
                let decoded = decode_to_vec(&encoded.bytes, u64::MAX).unwrap();
                assert_eq!(decoded, &data[..at], "after {at} bytes");
                assert_eq!(encoded.raw_len, at as u64);
                assert_eq!(encoded.raw_crc32c, crate::crc::crc32c(&data[..at]));
                assert_eq!(encoded.stored_crc32c, crate::crc::crc32c(&encoded.bytes));
                assert_eq!(encoded.bytes[10], TailEncoder::CODEC.id());
            }
            {
                let full = crate::codec::encode_to_vec(&data[..at], Codec::Lz4).unwrap();
                let ours = enc.encode(&asm.tail()).bytes.len();
                assert!(
                    ours < full.len() * 11 / 10,
                    "{ours} vs {} bytes",
                    full.len()
                );
            }
        }
    }

    #[test]
    fn a_changed_prefix_or_another_segment_starts_afresh() {
        let size = WalSegSize::from_mib(1).unwrap();
        let mut enc = TailEncoder::default();
        let a = wal_like(200_000, 1);
        let b = wal_like(200_000, 2);
        for (data, tli) in [(&a, 1), (&b, 1), (&a, 2)] {
            let mut asm = SegmentAssembler::new(TimelineId(tli), Lsn(3 << 20), size).unwrap();
            asm.push(Lsn(3 << 20), Bytes::copy_from_slice(data))
                .unwrap();
            let decoded = decode_to_vec(&enc.encode(&asm.tail()).bytes, u64::MAX).unwrap();
            assert_eq!(&decoded, data);
        }
    }
}
