//! Turning a tar entry's name into a path inside the backup, or refusing it: the one place
//! that decides which paths a backup may hold (safety rule 5: no path escapes the data
//! directory).
//!
//! A backup path is relative, `/`-separated, valid UTF-8, with no empty, `.` or `..`
//! component and no NUL; entries of a tablespace's archive are placed under
//! `pg_tblspc/<oid>/`, as in Postgres's own `backup_manifest`. One leading `./` is dropped:
//! Postgres writes `./pg_wal/archive_status/` that way. The same check runs again
//! when a manifest is read back ([`check_backup_path`]).

use super::error::BackupError;

/// The backup path of the entry named `raw` in `archive` (of tablespace `tablespace`, or the
/// main data directory for `None`). A directory's trailing `/` is dropped.
pub fn entry_path(
    archive: &str,
    tablespace: Option<u32>,
    raw: &[u8],
) -> Result<String, BackupError> {
    let refuse = |reason: &'static str| BackupError::UnsafePath {
        archive: archive.to_string(),
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|_| refuse("the name is not valid UTF-8"))?;
    let text = text.strip_suffix('/').unwrap_or(text);
    // Postgres names a few entries relative to the directory ("./pg_wal/archive_status").
    let text = text.strip_prefix("./").unwrap_or(text);
    check_backup_path(text).map_err(refuse)?;
    Ok(match tablespace {
        Some(oid) => format!("pg_tblspc/{oid}/{text}"),
        None => text.to_string(),
    })
}

/// Checks a path as stored in a manifest; returns the broken rule.
pub fn check_backup_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') {
        return Err("absolute paths are refused");
    }
    if path.contains('\0') {
        return Err("the path contains NUL");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("the path has an empty component"),
            "." => return Err("the path has a '.' component"),
            ".." => return Err("'..' components are refused"),
            _ => {}
        }
    }
    Ok(())
}

/// The tablespace OID when `path` is exactly a tablespace link, `pg_tblspc/<oid>`.
pub fn tablespace_link_oid(path: &str) -> Option<u32> {
    let oid = path.strip_prefix("pg_tblspc/")?;
    if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    oid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_data_directory_paths_and_places_tablespace_files() {
        assert_eq!(
            entry_path("base.tar", None, b"base/1/1259").unwrap(),
            "base/1/1259"
        );
        assert_eq!(entry_path("base.tar", None, b"pg_wal/").unwrap(), "pg_wal");
        assert_eq!(
            entry_path("base.tar", None, b"./pg_wal/archive_status/").unwrap(),
            "pg_wal/archive_status"
        );
        assert_eq!(
            entry_path("16384.tar", Some(16384), b"PG_15_202209061/5/16385").unwrap(),
            "pg_tblspc/16384/PG_15_202209061/5/16385"
        );
    }

    #[test]
    fn refuses_escaping_and_malformed_paths() {
        for bad in [
            &b"../etc/passwd"[..],
            b"/etc/passwd",
            b"base/../../x",
            b"base/./1",
            b"././x",
            b"./",
            b"base//1",
            b"",
            b"/",
            b"..",
            b"a\0b",
            b"\xff\xfe",
        ] {
            let err = entry_path("base.tar", None, bad).unwrap_err();
            assert!(
                matches!(err, BackupError::UnsafePath { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.is_refusal());
        }
    }

    #[test]
    fn recognises_tablespace_links() {
        assert_eq!(tablespace_link_oid("pg_tblspc/16384"), Some(16384));
        assert_eq!(tablespace_link_oid("pg_tblspc/16384/x"), None);
        assert_eq!(tablespace_link_oid("pg_tblspc/"), None);
        assert_eq!(tablespace_link_oid("base/1"), None);
    }
}
