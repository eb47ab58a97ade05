//! lz4 blocks compressed apart from the frame that carries them, so that the blocks of one
//! object can be compressed on several cores at once ([`Lz4Block::compress`], then
//! [`super::ObjectWriter::write_lz4_block`] in order).
//!
//! The frame is the standard lz4 frame every reader already decodes (`lz4_flex`'s
//! `FrameDecoder`, the `lz4` command): its header ([`frame_header`]) declares independent
//! blocks of a maximum size, no checksums and no content size (the object's trailer carries
//! the length and crc32c); each block is its 4-byte size word and its bytes, stored raw (the
//! size word's high bit set) when compression would not make it smaller; a zero word ends
//! the frame ([`END_MARK`]). Independent blocks share no dictionary, so their order of
//! compression does not matter, only their order in the frame. The stream's tail encoder
//! (`stream/tail_codec.rs`) builds its frames of 64 KiB blocks from the same parts.

use super::error::CodecError;

/// The most raw bytes one block holds: 256 KiB, the frame's declared maximum. Small enough
/// that a block's buffers stay under the allocator's mmap threshold (reused, not faulted in
/// afresh), large enough that the ratio matches 4 MiB blocks (lz4 looks back 64 KiB).
pub const BLOCK_LEN: usize = 256 << 10;

/// How many threads compress one object's blocks at once when its writer is all the caller
/// waits for (one file archived on its own, a backup's bundle): every core, up to 4 (more
/// would only hold more blocks in memory for little gain).
pub fn parallel_compressors() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The header of a frame of independent blocks of at most `max_block` raw bytes (at most
/// [`BLOCK_LEN`]), without checksums or content size, as `lz4_flex` writes it (so that the
/// descriptor's checksum is the library's).
pub(crate) fn frame_header(max_block: lz4_flex::frame::BlockSize) -> Vec<u8> {
    use lz4_flex::frame::{BlockMode, FrameEncoder, FrameInfo};
    let info = FrameInfo::new()
        .block_size(max_block)
        .block_mode(BlockMode::Independent);
    let mut empty = FrameEncoder::with_frame_info(info, Vec::new())
        .finish()
        .unwrap_or_default();
    // An empty frame is the header followed by the end mark.
    empty.truncate(empty.len().saturating_sub(END_MARK.len()));
    empty
}

/// The maximum block size [`super::ObjectWriter::with_lz4_blocks`] declares: [`BLOCK_LEN`].
pub(crate) const OBJECT_BLOCK_SIZE: lz4_flex::frame::BlockSize =
    lz4_flex::frame::BlockSize::Max256KB;

/// The end of the frame: a block size word of zero.
pub(crate) const END_MARK: [u8; 4] = [0; 4];

/// The size word's flag for a block stored raw.
pub(crate) const RAW_FLAG: u32 = 1 << 31;

/// One block of a frame: its size word and bytes, ready to be written in place.
#[derive(Debug, Default)]
pub struct Lz4Block {
    /// Size word then block bytes; only `bytes[..len]` is the block (the rest is reused
    /// space, so that a recycled block's buffer is not zeroed again).
    bytes: Vec<u8>,
    len: usize,
    raw_len: usize,
}

impl Lz4Block {
    /// Compresses `raw` (at most [`BLOCK_LEN`] bytes) into a block, reusing `self`'s buffer.
    pub fn compress(&mut self, raw: &[u8]) -> Result<(), CodecError> {
        if raw.len() > BLOCK_LEN {
            return Err(CodecError::Io(std::io::Error::other(format!(
                "an lz4 block holds at most {BLOCK_LEN} bytes, not {}",
                raw.len()
            ))));
        }
        let room = 4 + lz4_flex::block::get_maximum_output_size(BLOCK_LEN);
        if self.bytes.len() < room {
            self.bytes = vec![0; room];
        }
        let packed = lz4_flex::block::compress_into(raw, &mut self.bytes[4..])
            .map_err(|e| CodecError::Io(std::io::Error::other(format!("lz4: {e}"))))?;
        let word = if packed < raw.len() {
            packed as u32
        } else {
            self.bytes[4..4 + raw.len()].copy_from_slice(raw);
            raw.len() as u32 | RAW_FLAG
        };
        self.bytes[..4].copy_from_slice(&word.to_le_bytes());
        self.len = 4 + (word & !RAW_FLAG) as usize;
        self.raw_len = raw.len();
        Ok(())
    }

    /// The block as it goes into the frame.
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The raw bytes the block holds.
    pub fn raw_len(&self) -> usize {
        self.raw_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecError, ObjectWriter, decode_to_vec};

    /// Bytes that are neither all compressible nor all random, like WAL.
    fn mixed(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|i| {
                if (i / 70_000) % 3 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    (i % 251) as u8
                }
            })
            .collect()
    }

    fn encode_in_blocks(content: &[u8], crc32c: u32) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        let mut writer = ObjectWriter::with_lz4_blocks(&mut out)?;
        let mut block = Lz4Block::default();
        for piece in content.chunks(BLOCK_LEN) {
            block.compress(piece)?;
            writer.write_lz4_block(&block)?;
        }
        let (summary, _) = writer.finish_with_crc(crc32c)?;
        assert_eq!(summary.raw_len, content.len() as u64);
        Ok(out)
    }

    #[test]
    fn blocks_in_order_decode_as_the_content() {
        let content = mixed(3 * BLOCK_LEN + 12_345);
        let stored = encode_in_blocks(&content, crate::crc::crc32c(&content)).unwrap();
        assert!(stored.len() < content.len());
        assert_eq!(decode_to_vec(&stored, u64::MAX).unwrap(), content);
        let empty = encode_in_blocks(&[], 0).unwrap();
        assert_eq!(decode_to_vec(&empty, u64::MAX).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_wrong_caller_crc_makes_a_corrupt_object() {
        let content = mixed(BLOCK_LEN / 2);
        let stored = encode_in_blocks(&content, crate::crc::crc32c(&content) ^ 1).unwrap();
        assert!(matches!(
            decode_to_vec(&stored, u64::MAX),
            Err(CodecError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn plain_writes_are_refused() {
        let mut writer = ObjectWriter::with_lz4_blocks(Vec::new()).unwrap();
        assert!(std::io::Write::write_all(&mut writer, b"raw").is_err());
    }

    #[test]
    fn frame_header_declares_independent_blocks_of_block_len() {
        let header = frame_header(OBJECT_BLOCK_SIZE);
        assert_eq!(header.len(), 7);
        assert_eq!(header[..4], 0x184d_2204u32.to_le_bytes());
        assert_eq!(
            header[4], 0b0110_0000,
            "version 01, independent blocks, no options"
        );
        assert_eq!(header[5], 5 << 4, "256 KiB blocks");
        assert_eq!(BLOCK_LEN, 256 << 10);
    }

    #[test]
    fn incompressible_block_is_stored_raw() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let raw: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut block = Lz4Block::default();
        block.compress(&raw).unwrap();
        let word = u32::from_le_bytes(block.encoded()[..4].try_into().unwrap());
        assert_eq!(word, 4096 | RAW_FLAG);
        assert_eq!(&block.encoded()[4..], &raw[..]);
    }

    #[test]
    fn oversized_input_is_refused() {
        let mut block = Lz4Block::default();
        assert!(block.compress(&vec![0u8; BLOCK_LEN + 1]).is_err());
    }
}
