//! Decoding an lz4 object held whole in memory block by block, straight into the caller's
//! buffer.
//!
//! The streaming reader ([`super::ObjectReader`]) decodes through `lz4_flex`'s frame
//! decoder, which decompresses each block into a buffer of its own and copies it out, into
//! a destination `std::io::copy` zeroes first: three passes over every byte of a 16 MiB
//! segment, on the core the recovery shares. For an object already in memory whose frame
//! has independent blocks (every segment walship writes), [`decode`] decompresses each
//! block in place instead, reusing the caller's buffer.
//!
//! **Invariant:** [`decode`] succeeds only when the stored crc32c of the trailer matches
//! every byte before it and the decoded content has the trailer's (and the header's) length
//! and crc32c; anything else, including any layout it does not handle, returns `None`, and
//! the caller decodes with the streaming reader, which gives the typed verdict. So this path
//! can make a good object faster, never a bad one readable.

use super::algorithm::Codec;
use super::layout::{HEADER_LEN, MAX_CHUNK_LEN, ObjectHeader, TRAILER_LEN, Trailer};
use super::lz4_block::RAW_FLAG;
use super::writer::ObjectSummary;

/// The lz4 frame magic number.
const LZ4_MAGIC: u32 = 0x184d_2204;
/// FLG bits: version (must be 01), independent blocks, block checksums, content size,
/// content checksum, dictionary id.
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_DICT_ID: u8 = 0b0000_0001;
/// The largest content decoded this way (the largest WAL segment Postgres allows).
const MAX_CONTENT: u64 = 1 << 30;

/// Decodes the lz4 object `stored` into `content` (resized to the content's length; its
/// earlier bytes are overwritten, not zeroed first) and returns its verified summary, or
/// `None` when the object is not one this path handles or does not verify (see the module
/// doc); `content` then holds garbage. Content longer than `limit` is left to the streaming
/// reader, which refuses it.
pub(crate) fn decode(stored: &[u8], content: &mut Vec<u8>, limit: u64) -> Option<ObjectSummary> {
    let frame = Frame::open(stored, limit)?;
    let len = frame.raw.len as usize;
    if content.len() != len {
        if content.capacity() < len {
            // A fresh allocation of zeroes comes from calloc: no pass over the bytes.
            *content = vec![0; len];
        } else {
            content.resize(len, 0);
        }
    }
    let mut filled = 0;
    for block in frame.blocks()? {
        let room = len.min(filled + frame.max_block);
        filled += block.decode_into(content.get_mut(filled..room)?)?;
    }
    (filled == len).then_some(())?;
    frame.summary(crate::crc::crc32c(content))
}

/// [`decode`] without a whole-content buffer: each block is decoded into `scratch` (one
/// block long, reused), added to the crc32c and handed to `sink` while it is still in the
/// CPU's cache, so that the content makes one pass through memory (into wherever `sink`
/// puts it) instead of three (decode, crc32c, copy out). `Ok(None)` means what `decode`'s
/// `None` means, and also that `sink` may have received bytes that must be thrown away;
/// `Err` is the first error of `sink`, which is not called again.
pub(crate) fn decode_to<E>(
    stored: &[u8],
    limit: u64,
    scratch: &mut Vec<u8>,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Option<ObjectSummary>, E> {
    let Some(frame) = Frame::open(stored, limit) else {
        return Ok(None);
    };
    let Some(blocks) = frame.blocks() else {
        return Ok(None);
    };
    if scratch.len() < frame.max_block {
        scratch.resize(frame.max_block, 0);
    }
    let (mut filled, mut crc) = (0u64, crate::crc::Crc32c::default());
    for block in blocks {
        let room = (frame.raw.len - filled).min(frame.max_block as u64) as usize;
        let Some(n) = block.decode_into(&mut scratch[..room]) else {
            return Ok(None);
        };
        crc.update(&scratch[..n]);
        sink(&scratch[..n])?;
        filled += n as u64;
    }
    Ok((filled == frame.raw.len)
        .then(|| frame.summary(crc.value()))
        .flatten())
}

/// An lz4 object whose framing and stored crc32c checked out: its frame, joined from its
/// chunks, and what its trailer says the content is.
struct Frame {
    payload: Vec<u8>,
    raw: super::layout::RawSummary,
    stored_len: u64,
    stored_crc32c: u32,
    /// The largest block the frame header allows.
    max_block: usize,
}

impl Frame {
    /// The frame of `stored`, if it is an lz4 object this path handles whose stored bytes
    /// match the trailer's crc32c and whose content is at most `limit` bytes long.
    fn open(stored: &[u8], limit: u64) -> Option<Frame> {
        let trailer_at = stored.len().checked_sub(TRAILER_LEN)?;
        let header = ObjectHeader::decode(stored.get(..HEADER_LEN)?.try_into().ok()?).ok()?;
        if header.codec != Codec::Lz4 || trailer_at < HEADER_LEN {
            return None;
        }
        let trailer = Trailer::decode(stored[trailer_at..].try_into().ok()?, 0).ok()?;
        // `crate::crc`: the prefetch worker decodes every segment of a replay through here.
        let stored_crc32c = crate::crc::crc32c(&stored[..trailer_at]);
        if stored_crc32c != trailer.stored_crc32c {
            return None;
        }
        let raw = trailer.content;
        if header.summary.is_some_and(|declared| declared != raw)
            || raw.len > MAX_CONTENT.min(limit)
        {
            return None;
        }
        let payload = unchunk(&stored[HEADER_LEN..trailer_at])?;
        let max_block = frame_max_block(&payload)?;
        Some(Frame {
            payload,
            raw,
            stored_len: stored.len() as u64,
            stored_crc32c,
            max_block,
        })
    }

    /// The frame's blocks in order, if its block framing ends with the end mark.
    fn blocks(&self) -> Option<Vec<Block<'_>>> {
        frame_blocks(&self.payload)
    }

    /// The summary of content decoded whole with crc32c `crc`, if it is the trailer's.
    fn summary(&self, crc: u32) -> Option<ObjectSummary> {
        (crc == self.raw.crc32c).then_some(ObjectSummary {
            raw_len: self.raw.len,
            stored_len: self.stored_len,
            crc32c: crc,
            stored_crc32c: self.stored_crc32c,
        })
    }
}

/// The payload's chunks joined, if the framing ends exactly where the trailer begins.
fn unchunk(framed: &[u8]) -> Option<Vec<u8>> {
    let mut payload = Vec::with_capacity(framed.len());
    let mut at = 0;
    loop {
        let word = u32::from_le_bytes(framed.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if word == 0 {
            return (at == framed.len()).then_some(payload);
        }
        if word > MAX_CHUNK_LEN {
            return None;
        }
        payload.extend_from_slice(framed.get(at..at + word as usize)?);
        at += word as usize;
    }
}

/// One block of a frame: lz4-compressed or stored raw.
struct Block<'a> {
    bytes: &'a [u8],
    raw: bool,
}

impl Block<'_> {
    /// Decodes the block into the start of `dest`; the number of bytes it filled.
    fn decode_into(&self, dest: &mut [u8]) -> Option<usize> {
        if self.raw {
            dest.get_mut(..self.bytes.len())?
                .copy_from_slice(self.bytes);
            Some(self.bytes.len())
        } else {
            // The reference decoder (see the workspace's Cargo.toml for why and how fast):
            // any output that does not fit `dest`, or input that is not one whole block, is
            // an error, and the content's crc32c is checked after it anyway.
            let capacity = i32::try_from(dest.len()).ok()?;
            lz4::block::decompress_to_buffer(self.bytes, Some(capacity), dest).ok()
        }
    }
}

/// The frame header's block size, if the frame is one of independent blocks without block
/// checksums or dictionary (the only kind this path decodes).
fn frame_max_block(frame: &[u8]) -> Option<usize> {
    if u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) != LZ4_MAGIC {
        return None;
    }
    let (flg, bd) = (*frame.get(4)?, *frame.get(5)?);
    let handled = flg & FLG_VERSION_MASK == FLG_VERSION_01
        && flg & FLG_INDEPENDENT != 0
        && flg & (FLG_BLOCK_CHECKSUM | FLG_DICT_ID) == 0;
    if !handled {
        return None;
    }
    match (bd >> 4) & 0b111 {
        4 => Some(64 << 10),
        5 => Some(256 << 10),
        6 => Some(1 << 20),
        7 => Some(4 << 20),
        _ => None,
    }
}

/// The blocks of a frame [`frame_max_block`] accepted, up to its end mark.
fn frame_blocks(frame: &[u8]) -> Option<Vec<Block<'_>>> {
    let flg = *frame.get(4)?;
    // Magic, FLG, BD, the optional content size, the header checksum.
    let mut at = 4 + 2 + if flg & FLG_CONTENT_SIZE != 0 { 8 } else { 0 } + 1;
    let mut blocks = Vec::new();
    loop {
        let word = u32::from_le_bytes(frame.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if word == 0 {
            // What may follow the end mark (a content checksum) is covered by the crc32c.
            return Some(blocks);
        }
        let size = (word & !RAW_FLAG) as usize;
        blocks.push(Block {
            bytes: frame.get(at..at + size)?,
            raw: word & RAW_FLAG != 0,
        });
        at += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Lz4Block, ObjectWriter, encode_to_vec};
    use std::io::Write;

    fn wal_like(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if i % 8192 < 100 {
                    (i / 8192) as u8
                } else {
                    (i % 7) as u8
                }
            })
            .collect()
    }

    fn block_object(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = ObjectWriter::with_lz4_blocks(&mut out).unwrap();
        let mut block = Lz4Block::default();
        for piece in content.chunks(crate::codec::LZ4_BLOCK_LEN) {
            block.compress(piece).unwrap();
            writer.write_lz4_block(&block).unwrap();
        }
        writer.finish_with_crc(crate::crc::crc32c(content)).unwrap();
        out
    }

    #[test]
    fn decodes_block_objects_and_frame_encoder_objects_into_a_reused_buffer() {
        let content = wal_like(3 << 20);
        let mut buf = Vec::new();
        let summary = decode(&block_object(&content), &mut buf, u64::MAX).unwrap();
        assert_eq!(buf, content);
        assert_eq!(summary.raw_len, content.len() as u64);
        // lz4_flex's own frames (independent blocks by default), reusing the buffer.
        let other = wal_like(1 << 20);
        let stored = encode_to_vec(&other, Codec::Lz4).unwrap();
        let summary = decode(&stored, &mut buf, u64::MAX).unwrap();
        assert_eq!(buf, other);
        assert_eq!(summary.stored_len, stored.len() as u64);
        let mut writer = ObjectWriter::new(Vec::new(), Codec::Lz4).unwrap();
        writer.write_all(&content).unwrap();
        let (_, streamed) = writer.finish_into_inner().unwrap();
        decode(&streamed, &mut buf, u64::MAX).unwrap();
        assert_eq!(buf, content);
    }

    #[test]
    fn any_changed_or_missing_byte_is_left_to_the_streaming_reader() {
        let content = wal_like(300 << 10);
        let stored = block_object(&content);
        let mut buf = Vec::new();
        for at in (0..stored.len()).step_by(97).chain([stored.len() - 1]) {
            let mut bad = stored.clone();
            bad[at] ^= 0x40;
            assert!(
                decode(&bad, &mut buf, u64::MAX).is_none(),
                "flipped byte {at}"
            );
        }
        for cut in [0, 10, HEADER_LEN, stored.len() / 2, stored.len() - 1] {
            assert!(
                decode(&stored[..cut], &mut buf, u64::MAX).is_none(),
                "cut at {cut}"
            );
        }
        let mut longer = stored.clone();
        longer.push(0);
        assert!(decode(&longer, &mut buf, u64::MAX).is_none());
    }

    /// `decode_to`'s blocks, joined, and its summary.
    fn decode_joined(stored: &[u8], scratch: &mut Vec<u8>) -> Option<(Vec<u8>, ObjectSummary)> {
        let mut joined = Vec::new();
        let summary = decode_to(stored, u64::MAX, scratch, |block| {
            joined.extend_from_slice(block);
            Ok::<(), ()>(())
        })
        .unwrap()?;
        Some((joined, summary))
    }

    #[test]
    fn block_by_block_gives_what_whole_decoding_gives() {
        let mut scratch = Vec::new();
        for content in [wal_like(3 << 20), wal_like(1 << 20), wal_like(100_001)] {
            for stored in [
                block_object(&content),
                encode_to_vec(&content, Codec::Lz4).unwrap(),
            ] {
                let (joined, summary) = decode_joined(&stored, &mut scratch).unwrap();
                assert!(joined == content);
                assert_eq!(Some(summary), decode(&stored, &mut Vec::new(), u64::MAX));
                // A limit below the content's length leaves it to the streaming reader.
                let small = decode_to(&stored, content.len() as u64 - 1, &mut scratch, |_| {
                    Ok::<(), ()>(())
                });
                assert_eq!(small, Ok(None));
            }
        }
        // Every changed byte, a cut and other codecs: not this path's.
        let content = wal_like(300 << 10);
        let stored = block_object(&content);
        for at in (0..stored.len()).step_by(89) {
            let mut bad = stored.clone();
            bad[at] ^= 0x10;
            assert!(decode_joined(&bad, &mut scratch).is_none(), "flipped {at}");
        }
        assert!(decode_joined(&stored[..stored.len() / 2], &mut scratch).is_none());
        let zstd = encode_to_vec(&content, Codec::Zstd { level: 1 }).unwrap();
        assert!(decode_joined(&zstd, &mut scratch).is_none());
    }

    #[test]
    fn the_sinks_error_stops_the_decoding() {
        let stored = block_object(&wal_like(1 << 20));
        let mut calls = 0;
        let result = decode_to(&stored, u64::MAX, &mut Vec::new(), |_| {
            calls += 1;
            Err("disk full")
        });
        assert_eq!(result, Err("disk full"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn other_codecs_are_left_to_the_streaming_reader() {
        let content = wal_like(10_000);
        for codec in [Codec::None, Codec::Zstd { level: 1 }] {
            let stored = encode_to_vec(&content, codec).unwrap();
            assert!(
                decode(&stored, &mut Vec::new(), u64::MAX).is_none(),
                "{codec}"
            );
        }
    }

    /// The block decoder itself (not only the crc32c around it) refuses a block that does
    /// not fit its buffer, a cut block and garbage, and never writes past the buffer.
    #[test]
    fn a_block_that_does_not_fit_or_is_malformed_is_refused() {
        let content = wal_like(crate::codec::LZ4_BLOCK_LEN);
        let packed = lz4_flex::block::compress(&content);
        fn block(bytes: &[u8]) -> Block<'_> {
            Block { bytes, raw: false }
        }
        let mut dest = vec![0u8; content.len() + 100];
        assert_eq!(block(&packed).decode_into(&mut dest), Some(content.len()));
        assert_eq!(&dest[..content.len()], &content[..]);
        assert_eq!(
            block(&packed).decode_into(&mut dest[..content.len() - 1]),
            None
        );
        assert_eq!(
            block(&packed[..packed.len() - 3]).decode_into(&mut dest),
            None
        );
        let mut guarded = vec![0xAAu8; 4096 + 64];
        for seed in 0..64u32 {
            let garbage: Vec<u8> = (0..512u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 13) as u8)
                .collect();
            if let Some(n) = block(&garbage).decode_into(&mut guarded[..4096]) {
                assert!(n <= 4096);
            }
            assert!(guarded[4096..].iter().all(|&b| b == 0xAA), "seed {seed}");
        }
    }
}
