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
    if header.summary.is_some_and(|declared| declared != raw) || raw.len > MAX_CONTENT.min(limit) {
        return None;
    }
    let payload = unchunk(&stored[HEADER_LEN..trailer_at])?;
    let len = raw.len as usize;
    if content.len() != len {
        if content.capacity() < len {
            // A fresh allocation of zeroes comes from calloc: no pass over the bytes.
            *content = vec![0; len];
        } else {
            content.resize(len, 0);
        }
    }
    decode_frame(&payload, content)?;
    let summary = ObjectSummary {
        raw_len: raw.len,
        stored_len: stored.len() as u64,
        crc32c: crate::crc::crc32c(content),
        stored_crc32c,
    };
    (summary.crc32c == raw.crc32c).then_some(summary)
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

/// Decodes an lz4 frame of independent blocks without block checksums or dictionary into
/// exactly `out`.
fn decode_frame(frame: &[u8], out: &mut [u8]) -> Option<()> {
    if u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) != LZ4_MAGIC {
        return None;
    }
    let (flg, bd) = (*frame.get(4)?, *frame.get(5)?);
    let handled = flg & FLG_VERSION_MASK == FLG_VERSION_01
        && flg & FLG_INDEPENDENT != 0
        && flg & (FLG_BLOCK_CHECKSUM | FLG_DICT_ID) == 0;
    let max_block = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return None,
    };
    if !handled {
        return None;
    }
    // Magic, FLG, BD, the optional content size, the header checksum.
    let mut at = 4 + 2 + if flg & FLG_CONTENT_SIZE != 0 { 8 } else { 0 } + 1;
    let mut filled = 0;
    loop {
        let word = u32::from_le_bytes(frame.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if word == 0 {
            // What may follow the end mark (a content checksum) is covered by the crc32c.
            return (filled == out.len()).then_some(());
        }
        let size = (word & !RAW_FLAG) as usize;
        let block = frame.get(at..at + size)?;
        at += size;
        let room = out.len().min(filled + max_block);
        let dest = out.get_mut(filled..room)?;
        filled += if word & RAW_FLAG != 0 {
            dest.get_mut(..size)?.copy_from_slice(block);
            size
        } else {
            lz4_flex::block::decompress_into(block, dest).ok()?
        };
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
}
