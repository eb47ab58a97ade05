//! WAL page headers: `XLogPageHeaderData` (every page) and `XLogLongPageHeaderData` (the
//! first page of each segment), decoded from bytes.
//!
//! Mirrors `src/include/access/xlog_internal.h`. Fields are in the server's native byte
//! order; walship reads them as little-endian, the order of every platform it supports
//! (x86-64, arm64). Decoding only splits bytes into fields: deciding whether a header is
//! right for its place in a file is `segment_check`'s job.

use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// `XLOG_BLCKSZ`: the WAL page size. Every supported server is built with 8192 and
/// walship refuses others (`xlp_xlog_blcksz` is checked on each segment's first page).
pub const XLOG_BLCKSZ: u32 = 8192;

/// `SizeOfXLogShortPHD`: `MAXALIGN(sizeof(XLogPageHeaderData))`.
pub const SIZE_OF_XLOG_SHORT_PHD: usize = 24;

/// `SizeOfXLogLongPHD`: `MAXALIGN(sizeof(XLogLongPageHeaderData))`.
pub const SIZE_OF_XLOG_LONG_PHD: usize = 40;

/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the continuation of a record.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: this page has an `XLogLongPageHeaderData`.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_BKP_REMOVABLE`: backup blocks on this page are optional (13-18).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: replaces a missing continuation (13.5+, 14.1+).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `XLP_ALL_FLAGS`: every flag bit a 13-18 server may set.
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// `XLogPageHeaderData`: the 24-byte header at the start of every WAL page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogPageHeaderData {
    /// `xlp_magic`: the WAL format version (`XLOG_PAGE_MAGIC`).
    pub xlp_magic: u16,
    /// `xlp_info`: `XLP_*` flag bits.
    pub xlp_info: u16,
    /// `xlp_tli`: the timeline of the first record that starts on this page.
    pub xlp_tli: TimelineId,
    /// `xlp_pageaddr`: the LSN of the page's first byte.
    pub xlp_pageaddr: Lsn,
    /// `xlp_rem_len`: bytes of a record continued from the previous page.
    pub xlp_rem_len: u32,
}

/// `XLogLongPageHeaderData`: the 40-byte header of a segment's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogLongPageHeaderData {
    /// `std`: the ordinary page header.
    pub std: XLogPageHeaderData,
    /// `xlp_sysid`: the cluster's system identifier (as in `pg_control`).
    pub xlp_sysid: u64,
    /// `xlp_seg_size`: the cluster's `wal_segment_size`.
    pub xlp_seg_size: u32,
    /// `xlp_xlog_blcksz`: the cluster's `XLOG_BLCKSZ`.
    pub xlp_xlog_blcksz: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl XLogPageHeaderData {
    /// Decodes the header at the start of `page`; `None` when fewer than 24 bytes.
    pub fn decode(page: &[u8]) -> Option<XLogPageHeaderData> {
        let b = page.get(..SIZE_OF_XLOG_SHORT_PHD)?;
        Some(XLogPageHeaderData {
            xlp_magic: u16_at(b, 0),
            xlp_info: u16_at(b, 2),
            xlp_tli: TimelineId(u32_at(b, 4)),
            xlp_pageaddr: Lsn(u64_at(b, 8)),
            xlp_rem_len: u32_at(b, 16),
        })
    }

    /// The header's 24 bytes (padding zeroed), the inverse of [`Self::decode`].
    pub fn encode(&self) -> [u8; SIZE_OF_XLOG_SHORT_PHD] {
        let mut out = [0u8; SIZE_OF_XLOG_SHORT_PHD];
        out[0..2].copy_from_slice(&self.xlp_magic.to_le_bytes());
        out[2..4].copy_from_slice(&self.xlp_info.to_le_bytes());
        out[4..8].copy_from_slice(&self.xlp_tli.0.to_le_bytes());
        out[8..16].copy_from_slice(&self.xlp_pageaddr.0.to_le_bytes());
        out[16..20].copy_from_slice(&self.xlp_rem_len.to_le_bytes());
        out
    }

    /// True when `XLP_LONG_HEADER` is set.
    pub fn is_long(&self) -> bool {
        self.xlp_info & XLP_LONG_HEADER != 0
    }

    /// `XLogPageHeaderSize`: 40 for a long header, 24 otherwise.
    pub fn size(&self) -> usize {
        if self.is_long() {
            SIZE_OF_XLOG_LONG_PHD
        } else {
            SIZE_OF_XLOG_SHORT_PHD
        }
    }
}

impl XLogLongPageHeaderData {
    /// Decodes the long header at the start of `page`; `None` when fewer than 40 bytes.
    /// Does not look at `XLP_LONG_HEADER`: the caller knows the page is a segment's first.
    pub fn decode(page: &[u8]) -> Option<XLogLongPageHeaderData> {
        let b = page.get(..SIZE_OF_XLOG_LONG_PHD)?;
        Some(XLogLongPageHeaderData {
            std: XLogPageHeaderData::decode(b)?,
            xlp_sysid: u64_at(b, 24),
            xlp_seg_size: u32_at(b, 32),
            xlp_xlog_blcksz: u32_at(b, 36),
        })
    }

    /// The header's 40 bytes, the inverse of [`Self::decode`].
    pub fn encode(&self) -> [u8; SIZE_OF_XLOG_LONG_PHD] {
        let mut out = [0u8; SIZE_OF_XLOG_LONG_PHD];
        out[..SIZE_OF_XLOG_SHORT_PHD].copy_from_slice(&self.std.encode());
        out[24..32].copy_from_slice(&self.xlp_sysid.to_le_bytes());
        out[32..36].copy_from_slice(&self.xlp_seg_size.to_le_bytes());
        out[36..40].copy_from_slice(&self.xlp_xlog_blcksz.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_long_header_byte_by_byte() {
        let mut page = vec![0u8; 8192];
        let bytes: [u8; 40] = [
            0x10, 0xD1, // magic 0xD110
            0x07, 0x00, // info: contrecord | long | bkp removable
            0x02, 0x00, 0x00, 0x00, // tli 2
            0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, // pageaddr 1/3000000
            0x10, 0x00, 0x00, 0x00, // rem_len 16
            0, 0, 0, 0, // padding
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // sysid
            0x00, 0x00, 0x00, 0x01, // seg size 16 MiB
            0x00, 0x20, 0x00, 0x00, // blcksz 8192
        ];
        page[..40].copy_from_slice(&bytes);
        let long = XLogLongPageHeaderData::decode(&page).unwrap();
        assert_eq!(long.std.xlp_magic, 0xD110);
        assert_eq!(long.std.xlp_info, 0x7);
        assert!(long.std.is_long());
        assert_eq!(long.std.size(), 40);
        assert_eq!(long.std.xlp_tli, TimelineId(2));
        assert_eq!(long.std.xlp_pageaddr, Lsn(0x1_0300_0000));
        assert_eq!(long.std.xlp_rem_len, 16);
        assert_eq!(long.xlp_sysid, 0x1122_3344_5566_7788);
        assert_eq!(long.xlp_seg_size, 16 << 20);
        assert_eq!(long.xlp_xlog_blcksz, 8192);
        assert_eq!(long.encode(), bytes);
        assert_eq!(XLogPageHeaderData::decode(&page).unwrap(), long.std);
    }

    #[test]
    fn short_input_is_none() {
        assert_eq!(XLogPageHeaderData::decode(&[0; 23]), None);
        assert_eq!(XLogLongPageHeaderData::decode(&[0; 39]), None);
        let short = XLogPageHeaderData::decode(&[0; 24]).unwrap();
        assert!(!short.is_long());
        assert_eq!(short.size(), 24);
    }
}
