//! Crafted WAL for tests that need a repository but no Postgres: segments `walship archive`
//! accepts (a valid long page header, zeros after it).

/// The segment size of the crafted segments.
pub const SEG_SIZE: u32 = 16 << 20;
/// Their system identifier.
pub const SYSID: u64 = 7_400_000_000_000_000_001;
/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const PG15_MAGIC: u16 = 0xD110;

/// A segment of PostgreSQL 15 whose first page has a valid long header and whose other
/// pages are zeros (valid WAL that ends after the first page), as `walship archive` accepts.
pub fn segment(segno: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; SEG_SIZE as usize];
    let page = &mut bytes[..40];
    page[0..2].copy_from_slice(&PG15_MAGIC.to_le_bytes());
    page[2..4].copy_from_slice(&0x0002u16.to_le_bytes()); // XLP_LONG_HEADER
    page[4..8].copy_from_slice(&1u32.to_le_bytes()); // timeline 1
    page[8..16].copy_from_slice(&(segno * u64::from(SEG_SIZE)).to_le_bytes());
    page[24..32].copy_from_slice(&SYSID.to_le_bytes());
    page[32..36].copy_from_slice(&SEG_SIZE.to_le_bytes());
    page[36..40].copy_from_slice(&8192u32.to_le_bytes());
    bytes
}

pub fn segment_name(segno: u64) -> String {
    format!("00000001{:08X}{:08X}", segno >> 8, segno & 0xFF)
}
