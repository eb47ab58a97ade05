//! Where things live in a repository: the one place that turns names into object keys.
//! The layout is part of the on-storage format (`docs/FORMAT.md`, "Repository layout").
//!
//! ```text
//! walship.json                                       identity (plain JSON, written once)
//! wal/00000002.history                                timeline history files
//! wal/0000000100000003/000000010000000300000042       WAL segments, grouped by the first 16 hex digits
//! wal/0000000100000003/000000010000000300000042.partial
//! wal/0000000100000003/000000010000000300000042.partial.0001A000   a stream tail piece (offset)
//! wal/0000000100000003/000000010000000300000042.partial.journal    a stream tail journal (local)
//! wal/0000000100000003/000000010000000300000042.00000028.backup
//! backups/<id>/...                                    base backups (manifest.json written last)
//! backups/<id>/pins/00000001.json                     pin and unpin records (create-only, numbered)
//! ```

use crate::catalog::BackupId;
use crate::pg::WalSegSize;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::storage::ObjectKey;

/// Key of the repository identity object.
pub const IDENTITY: &str = "walship.json";
/// Prefix of every WAL object.
pub const WAL_PREFIX: &str = "wal/";

/// The key of `walship.json`.
pub fn identity_key() -> ObjectKey {
    valid_key(IDENTITY.to_string())
}

/// The key under which an archive file is stored. Segments, partial segments and backup
/// history files sit in the group of their segment's first 16 hex digits (timeline and
/// "log" number), so no directory or listing grows past a few thousand entries; history
/// files sit directly under `wal/`.
pub fn wal_key(name: &ArchiveFileName) -> ObjectKey {
    let text = name.to_string();
    match name {
        ArchiveFileName::History(_) => valid_key(format!("{WAL_PREFIX}{text}")),
        _ => valid_key(format!("{WAL_PREFIX}{}/{text}", &text[..16])),
    }
}

/// One append-only piece of a stream tail: the bytes of `segment` from `offset` on, stored
/// under `<segment>.partial.<offset, 8 hex digits>` (`docs/FORMAT.md`, "`.partial` objects").
/// Not an [`ArchiveFileName`]: Postgres never hands such a name to `archive_command`, and
/// `walship archive` refuses it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TailPiece {
    /// The segment the piece belongs to.
    pub segment: WalFileName,
    /// Where in the segment its bytes start.
    pub offset: u32,
}

/// The separator between a `.partial` name and a piece's offset.
const PIECE_SEPARATOR: &str = ".partial.";

/// The key of a tail piece: `wal/<16 hex>/<segment>.partial.<offset, 8 hex>`.
pub fn tail_piece_key(piece: TailPiece) -> ObjectKey {
    valid_key(format!(
        "{}{:08X}",
        tail_pieces_prefix(piece.segment),
        piece.offset
    ))
}

/// The prefix every tail piece of `segment` starts with (a listing prefix).
pub fn tail_pieces_prefix(segment: WalFileName) -> String {
    let partial = wal_key(&ArchiveFileName::Partial(segment));
    format!("{partial}.")
}

/// The piece `key` names, if it is exactly a tail piece's key for segments of `seg_size`
/// (canonical spelling, offset inside the segment); `None` for anything else.
pub fn tail_piece_of(key: &ObjectKey, seg_size: WalSegSize) -> Option<TailPiece> {
    let name = key.file_name();
    let at = name.find(PIECE_SEPARATOR)?;
    let (partial, digits) = (
        &name[..at + PIECE_SEPARATOR.len() - 1],
        &name[at + PIECE_SEPARATOR.len()..],
    );
    let ArchiveFileName::Partial(segment) = ArchiveFileName::parse(partial, seg_size).ok()? else {
        return None;
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let offset = u32::from_str_radix(digits, 16).ok()?;
    if u64::from(offset) >= seg_size.as_u64() {
        return None;
    }
    let piece = TailPiece { segment, offset };
    (tail_piece_key(piece) == *key).then_some(piece)
}

/// The suffix that makes a `.partial` key a tail journal's.
const JOURNAL_SUFFIX: &str = ".journal";

/// The key of a segment's tail journal (`docs/FORMAT.md`, "`.partial` objects"): the pieces of
/// a stream's tail appended as frames to one file per segment, `<segment>.partial.journal`.
/// Neither a [`TailPiece`] key (its suffix is not 8 hex digits) nor an [`ArchiveFileName`],
/// but under [`tail_pieces_prefix`], so one listing finds a segment's pieces and journal.
pub fn tail_journal_key(segment: WalFileName) -> ObjectKey {
    let partial = wal_key(&ArchiveFileName::Partial(segment));
    valid_key(format!("{partial}{JOURNAL_SUFFIX}"))
}

/// The segment whose tail journal `key` is, if it is exactly one's key for segments of
/// `seg_size`; `None` for anything else.
pub fn tail_journal_of(key: &ObjectKey, seg_size: WalSegSize) -> Option<WalFileName> {
    let partial = key.file_name().strip_suffix(JOURNAL_SUFFIX)?;
    let ArchiveFileName::Partial(segment) = ArchiveFileName::parse(partial, seg_size).ok()? else {
        return None;
    };
    (tail_journal_key(segment) == *key).then_some(segment)
}

/// One object of a stream's tail besides the base: a piece or a segment's journal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum TailObject {
    /// A piece object `<segment>.partial.<offset>`.
    Piece(TailPiece),
    /// The journal `<segment>.partial.journal`.
    Journal(WalFileName),
}

impl TailObject {
    /// The segment the object belongs to.
    pub fn segment(&self) -> WalFileName {
        match self {
            TailObject::Piece(p) => p.segment,
            TailObject::Journal(s) => *s,
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        match self {
            TailObject::Piece(p) => tail_piece_key(*p),
            TailObject::Journal(s) => tail_journal_key(*s),
        }
    }
}

/// The tail piece or journal `key` names, if it is one (see [`tail_piece_of`],
/// [`tail_journal_of`]).
pub fn tail_object_of(key: &ObjectKey, seg_size: WalSegSize) -> Option<TailObject> {
    tail_piece_of(key, seg_size)
        .map(TailObject::Piece)
        .or_else(|| tail_journal_of(key, seg_size).map(TailObject::Journal))
}

/// Prefix of every backup's objects.
pub const BACKUPS_PREFIX: &str = "backups/";
/// File name of a backup's manifest, the object written last.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The prefix under which one backup's objects live: `backups/<id>/`.
pub fn backup_prefix(id: BackupId) -> String {
    format!("{BACKUPS_PREFIX}{id}/")
}

/// The key of a backup's manifest: `backups/<id>/manifest.json`.
pub fn manifest_key(id: BackupId) -> ObjectKey {
    valid_key(format!("{}{MANIFEST_NAME}", backup_prefix(id)))
}

/// The key of one bundle of a backup: `backups/<id>/bundles/<name>`. `name` is one the
/// bundler made ([`crate::backup::bundle_name`]); a name read from a manifest is checked by
/// [`ObjectKey`]'s rules and refused if it would leave the backup's `bundles/` folder.
pub fn bundle_key(id: BackupId, name: &str) -> Result<ObjectKey, crate::storage::InvalidKey> {
    if name.contains('/') {
        return Err(crate::storage::InvalidKey {
            key: name.to_string(),
            reason: "a bundle name is a single key segment",
        });
    }
    ObjectKey::new(format!("{}bundles/{name}", backup_prefix(id)))
}

/// The prefix of a backup's pin records: `backups/<id>/pins/`.
pub fn pins_prefix(id: BackupId) -> String {
    format!("{}pins/", backup_prefix(id))
}

/// The key of a backup's pin record number `seq`: `backups/<id>/pins/00000001.json`. Records
/// are create-only and numbered; the highest number says whether the backup is pinned.
pub fn pin_key(id: BackupId, seq: u32) -> ObjectKey {
    valid_key(format!("{}{seq:08}.json", pins_prefix(id)))
}

/// The number of a pin record key, if `key` is one.
pub fn pin_seq_of(key: &ObjectKey) -> Option<u32> {
    let id = backup_id_of(key)?;
    let name = key.as_str().strip_prefix(&pins_prefix(id))?;
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The backup id of a key under `backups/`, if it has one (`backups/<id>/...`).
pub fn backup_id_of(key: &ObjectKey) -> Option<BackupId> {
    let rest = key.as_str().strip_prefix(BACKUPS_PREFIX)?;
    let (id, _) = rest.split_once('/')?;
    id.parse().ok()
}

/// Builds a key from text this module composed out of validated names. Such text always
/// passes `ObjectKey`'s rules (hex digits, dots and slashes only), so a failure would be a
/// bug in this module, not bad input.
fn valid_key(text: String) -> ObjectKey {
    match ObjectKey::new(text) {
        Ok(key) => key,
        Err(err) => panic!("repository layout built an invalid key: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let cases = [
            (
                "000000010000000300000042",
                "wal/0000000100000003/000000010000000300000042",
            ),
            (
                "000000010000000300000042.partial",
                "wal/0000000100000003/000000010000000300000042.partial",
            ),
            (
                "000000010000000300000042.00000028.backup",
                "wal/0000000100000003/000000010000000300000042.00000028.backup",
            ),
            ("00000002.history", "wal/00000002.history"),
        ];
        for (name, key) in cases {
            let name =
                ArchiveFileName::parse(name, crate::pg::WalSegSize::from_mib(16).unwrap()).unwrap();
            assert_eq!(wal_key(&name).as_str(), key);
        }
        assert_eq!(identity_key().as_str(), "walship.json");
        let id: BackupId = "20261122T140300Z".parse().unwrap();
        assert_eq!(backup_prefix(id), "backups/20261122T140300Z/");
        assert_eq!(
            manifest_key(id).as_str(),
            "backups/20261122T140300Z/manifest.json"
        );
        assert_eq!(
            bundle_key(id, "00000001").unwrap().as_str(),
            "backups/20261122T140300Z/bundles/00000001"
        );
        assert!(bundle_key(id, "../x").is_err() && bundle_key(id, "..").is_err());
        assert_eq!(backup_id_of(&manifest_key(id)), Some(id));
        assert_eq!(
            pin_key(id, 2).as_str(),
            "backups/20261122T140300Z/pins/00000002.json"
        );
        assert_eq!(pin_seq_of(&pin_key(id, 2)), Some(2));
        assert_eq!(pin_seq_of(&manifest_key(id)), None);
    }

    #[test]
    fn tail_piece_keys_round_trip_and_nothing_else_is_one() {
        let size = WalSegSize::from_mib(16).unwrap();
        let segment = WalFileName::parse("000000010000000300000042", size).unwrap();
        let piece = TailPiece {
            segment,
            offset: 0x1A000,
        };
        let key = tail_piece_key(piece);
        assert_eq!(
            key.as_str(),
            "wal/0000000100000003/000000010000000300000042.partial.0001A000"
        );
        assert!(key.as_str().starts_with(&tail_pieces_prefix(segment)));
        assert_eq!(tail_piece_of(&key, size), Some(piece));
        for other in [
            "wal/0000000100000003/000000010000000300000042.partial",
            "wal/0000000100000003/000000010000000300000042.partial.0001a000",
            "wal/0000000100000003/000000010000000300000042.partial.01000000",
            "wal/0000000100000003/000000010000000300000042.partial.1A000",
            "wal/0000000100000004/000000010000000300000042.partial.0001A000",
            "wal/0000000100000003/000000010000000300000042",
        ] {
            let key = ObjectKey::new(other.to_string()).unwrap();
            assert_eq!(tail_piece_of(&key, size), None, "{other}");
        }
        assert!(ArchiveFileName::parse("000000010000000300000042.partial.0001A000", size).is_err());
    }

    #[test]
    fn tail_journal_keys_round_trip_and_are_neither_pieces_nor_archive_names() {
        let size = WalSegSize::from_mib(16).unwrap();
        let segment = WalFileName::parse("000000010000000300000042", size).unwrap();
        let key = tail_journal_key(segment);
        assert_eq!(
            key.as_str(),
            "wal/0000000100000003/000000010000000300000042.partial.journal"
        );
        assert!(key.as_str().starts_with(&tail_pieces_prefix(segment)));
        assert_eq!(tail_journal_of(&key, size), Some(segment));
        assert_eq!(
            tail_object_of(&key, size),
            Some(TailObject::Journal(segment))
        );
        assert_eq!(tail_piece_of(&key, size), None);
        assert!(ArchiveFileName::parse(key.file_name(), size).is_err());
        for other in [
            "wal/0000000100000004/000000010000000300000042.partial.journal",
            "wal/0000000100000003/000000010000000300000042.journal",
            "wal/0000000100000003/000000010000000300000042.partial.Journal",
        ] {
            let key = ObjectKey::new(other.to_string()).unwrap();
            assert_eq!(tail_journal_of(&key, size), None, "{other}");
        }
    }
}
