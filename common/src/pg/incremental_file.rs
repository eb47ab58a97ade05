//! The `INCREMENTAL.<relfile>[.segno]` files of a PostgreSQL 17+ incremental backup
//! (basebackup_incremental.c writes them; pg_combinebackup's reconstruct.c reads them):
//!
//! ```text
//! u32 magic (0xd3ae1f0d) | u32 num_blocks | u32 truncation_block_length
//! | u32 block_number[num_blocks] | zero padding to a multiple of BLCKSZ (only when
//! num_blocks > 0) | num_blocks blocks of BLCKSZ bytes, in block_number order
//! ```
//!
//! All in the server's byte order (little-endian on every platform walship runs on). The
//! reconstructed file is `max(truncation_block_length, highest block + 1)` blocks long: a
//! block listed here comes from here, every other block below `truncation_block_length`
//! from an older backup, and a block no backup has is zeros.

use std::io::Read;

/// `INCREMENTAL_MAGIC` (basebackup_incremental.h).
pub const INCREMENTAL_MAGIC: u32 = 0xd3ae_1f0d;

/// `BLCKSZ` of the builds walship supports (the default; a cluster built with another block
/// size is refused by the header check below, whose block counts would not fit).
pub const BLCKSZ: u64 = 8192;

/// `RELSEG_SIZE` in blocks (1 GiB segments of 8 KiB blocks): no count in a header may pass it.
pub const RELSEG_SIZE: u32 = 131_072;

/// The prefix of an incremental file's name.
pub const INCREMENTAL_PREFIX: &str = "INCREMENTAL.";

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalHeader {
    /// Blocks below this may come from older backups; the relation was at most this long
    /// (in this segment) when the backup started.
    pub truncation_block_length: u32,
    /// The blocks this file carries, in the order their contents follow the header.
    pub blocks: Vec<u32>,
}

/// Why a header cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IncrementalFileError {
    /// Reading failed (or the file ends inside its header).
    #[error("reading the header: {0}")]
    Io(#[from] std::io::Error),
    /// Not an incremental file.
    #[error(
        "bad magic number 0x{found:08x} (an incremental file starts with 0x{INCREMENTAL_MAGIC:08x})"
    )]
    BadMagic {
        /// What the file starts with.
        found: u32,
    },
    /// A count beyond a relation segment.
    #[error("{what} {value} is beyond a relation segment ({RELSEG_SIZE} blocks)")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u32,
    },
}

impl IncrementalHeader {
    /// Reads the header (and its padding) from `r`, leaving `r` at the first block.
    pub fn read(r: &mut impl Read) -> Result<IncrementalHeader, IncrementalFileError> {
        let mut word = [0u8; 4];
        let mut next = |r: &mut dyn Read| -> Result<u32, std::io::Error> {
            r.read_exact(&mut word)?;
            Ok(u32::from_le_bytes(word))
        };
        let magic = next(r)?;
        if magic != INCREMENTAL_MAGIC {
            return Err(IncrementalFileError::BadMagic { found: magic });
        }
        let num_blocks = next(r)?;
        if num_blocks > RELSEG_SIZE {
            return Err(IncrementalFileError::TooLarge {
                what: "block count",
                value: num_blocks,
            });
        }
        let truncation_block_length = next(r)?;
        if truncation_block_length > RELSEG_SIZE {
            return Err(IncrementalFileError::TooLarge {
                what: "truncation block length",
                value: truncation_block_length,
            });
        }
        let mut blocks = Vec::with_capacity(num_blocks as usize);
        for _ in 0..num_blocks {
            let b = next(r)?;
            if b >= RELSEG_SIZE {
                return Err(IncrementalFileError::TooLarge {
                    what: "block number",
                    value: b,
                });
            }
            blocks.push(b);
        }
        let header = IncrementalHeader {
            truncation_block_length,
            blocks,
        };
        let padding = header.header_length() - header.unpadded_length();
        std::io::copy(&mut r.take(padding), &mut std::io::sink())?;
        Ok(header)
    }

    fn unpadded_length(&self) -> u64 {
        12 + 4 * self.blocks.len() as u64
    }

    /// Bytes before the first block: the header rounded up to BLCKSZ when it has blocks.
    pub fn header_length(&self) -> u64 {
        let raw = self.unpadded_length();
        if self.blocks.is_empty() {
            raw
        } else {
            raw.div_ceil(BLCKSZ) * BLCKSZ
        }
    }

    /// The whole file's expected size.
    pub fn file_length(&self) -> u64 {
        self.header_length() + BLCKSZ * self.blocks.len() as u64
    }

    /// Blocks of the reconstructed file: `truncation_block_length`, or past it to the
    /// highest block this file carries.
    pub fn reconstructed_blocks(&self) -> u32 {
        self.blocks
            .iter()
            .map(|b| b + 1)
            .fold(self.truncation_block_length, u32::max)
    }
}

/// For a backup path `dir/INCREMENTAL.name`, the path of the file it reconstructs
/// (`dir/name`); `None` for any other path.
pub fn reconstructed_path(path: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let bare = name.strip_prefix(INCREMENTAL_PREFIX)?;
    if bare.is_empty() {
        return None;
    }
    Some(match dir {
        Some(dir) => format!("{dir}/{bare}"),
        None => bare.to_string(),
    })
}

/// The incremental name of a backup path `dir/name`: `dir/INCREMENTAL.name`.
pub fn incremental_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{INCREMENTAL_PREFIX}{name}"),
        None => format!("{INCREMENTAL_PREFIX}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(blocks: &[u32], trunc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&INCREMENTAL_MAGIC.to_le_bytes());
        out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&trunc.to_le_bytes());
        for b in blocks {
            out.extend_from_slice(&b.to_le_bytes());
        }
        if !blocks.is_empty() {
            out.resize(BLCKSZ as usize, 0);
        }
        for b in blocks {
            out.extend(std::iter::repeat_n(*b as u8, BLCKSZ as usize));
        }
        out
    }

    #[test]
    fn header_with_blocks_is_padded_to_a_block() {
        let bytes = file(&[3, 1, 9], 5);
        let mut r = &bytes[..];
        let h = IncrementalHeader::read(&mut r).unwrap();
        assert_eq!(h.blocks, vec![3, 1, 9]);
        assert_eq!(h.truncation_block_length, 5);
        assert_eq!(h.header_length(), BLCKSZ);
        assert_eq!(h.file_length(), bytes.len() as u64);
        assert_eq!(h.reconstructed_blocks(), 10);
        assert_eq!(r.len() as u64, 3 * BLCKSZ, "left at the first block");
        assert_eq!(r[0], 3);
    }

    #[test]
    fn empty_header_is_not_padded() {
        let bytes = file(&[], 7);
        let h = IncrementalHeader::read(&mut &bytes[..]).unwrap();
        assert_eq!(h.header_length(), 12);
        assert_eq!(h.file_length(), 12);
        assert_eq!(h.reconstructed_blocks(), 7);
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut bytes = file(&[1], 2);
        bytes[0] ^= 1;
        assert!(matches!(
            IncrementalHeader::read(&mut &bytes[..]),
            Err(IncrementalFileError::BadMagic { .. })
        ));
        let mut bytes = file(&[], 2);
        bytes[8..12].copy_from_slice(&(RELSEG_SIZE + 1).to_le_bytes());
        assert!(IncrementalHeader::read(&mut &bytes[..]).is_err());
        assert!(IncrementalHeader::read(&mut &file(&[1], 2)[..6]).is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            reconstructed_path("base/5/INCREMENTAL.16384.1").as_deref(),
            Some("base/5/16384.1")
        );
        assert_eq!(reconstructed_path("base/5/16384"), None);
        assert_eq!(reconstructed_path("base/5/INCREMENTAL."), None);
        assert_eq!(incremental_path("base/5/16384"), "base/5/INCREMENTAL.16384");
    }
}
