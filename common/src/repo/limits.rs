//! How large each kind of object may be: the bound every whole-object read and every decode
//! of a repository object is held to, so that a hostile or misplaced object (a decompression
//! bomb: a few KiB of zstd that decode to gigabytes) costs a bounded amount of memory and
//! fails with an error naming its key, instead of exhausting the host.
//!
//! Content limits are what an object of that kind can legitimately hold; the stored bytes
//! may exceed the content only by the codec's framing ([`stored_limit`]). The values are
//! part of the repository format (`docs/FORMAT.md`, "Size limits").

use crate::pg::file_name::ArchiveFileName;

/// `walship.json`: a few fields; read with this limit before it is parsed.
pub const IDENTITY_MAX: u64 = 64 << 10;
/// A timeline history file: one short line per timeline switch (some 40,000 switches).
pub const HISTORY_MAX: u64 = 4 << 20;
/// A backup history file (`.backup`): a dozen short lines and a label of at most 1 KiB.
pub const BACKUP_HISTORY_MAX: u64 = 64 << 10;
/// A backup's `manifest.json`: about 300 bytes per file of the cluster (walship's entry and
/// Postgres's own `backup_manifest` line), so some 1.5 million files.
pub const MANIFEST_MAX: u64 = 512 << 20;
/// A pin record (`backups/<id>/pins/NNNNNNNN.json`): a few hundred bytes of JSON.
pub const PIN_RECORD_MAX: u64 = 64 << 10;

/// The most content the WAL archive file `name` may hold: a segment (or the beginning of
/// one, `.partial`) is at most the segment size its name was parsed with.
pub fn wal_content_limit(name: &ArchiveFileName) -> u64 {
    match name {
        ArchiveFileName::Segment(wal) | ArchiveFileName::Partial(wal) => wal.seg_size().as_u64(),
        ArchiveFileName::History(_) => HISTORY_MAX,
        ArchiveFileName::Backup { .. } => BACKUP_HISTORY_MAX,
    }
}

/// The most stored bytes an object whose content is at most `content_limit` bytes may take:
/// the content (incompressible data is stored as raw blocks) plus the header, the trailer
/// and the framing of chunks and codec blocks, with a wide margin.
pub fn stored_limit(content_limit: u64) -> u64 {
    content_limit
        .saturating_add(content_limit / 16)
        .saturating_add(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, encode_to_vec};
    use crate::pg::segment::WalSegSize;

    #[test]
    fn a_segment_may_hold_its_segment_size() {
        let size = WalSegSize::new(16 << 20).unwrap();
        let name = ArchiveFileName::parse("000000010000000000000001", size).unwrap();
        assert_eq!(wal_content_limit(&name), 16 << 20);
        let name = ArchiveFileName::parse("00000002.history", size).unwrap();
        assert_eq!(wal_content_limit(&name), HISTORY_MAX);
    }

    #[test]
    fn incompressible_content_fits_the_stored_limit() {
        let content: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd { level: 3 }] {
            let stored = encode_to_vec(&content, codec).unwrap();
            assert!(
                stored.len() as u64 <= stored_limit(content.len() as u64),
                "{codec}"
            );
        }
    }
}
