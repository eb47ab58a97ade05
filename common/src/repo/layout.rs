//! Where things live in a repository: the one place that turns names into object keys.
//! The layout is part of the on-storage format (`docs/FORMAT.md`, "Repository layout").
//!
//! ```text
//! walship.json                                       identity (plain JSON, written once)
//! wal/00000002.history                                timeline history files
//! wal/0000000100000003/000000010000000300000042       WAL segments, grouped by the first 16 hex digits
//! wal/0000000100000003/000000010000000300000042.partial
//! wal/0000000100000003/000000010000000300000042.00000028.backup
//! backups/<id>/...                                    base backups (manifest.json written last)
//! ```

use crate::pg::file_name::ArchiveFileName;
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
    }
}
