//! The archiver's queue as Postgres keeps it: `pg_wal/archive_status/<name>.ready` files.
//!
//! `walship archive --async` reads this queue to push the files Postgres will ask for next.
//! The order mirrors `pgarch.c` (`ready_file_comparator`, PG 15+; the same order earlier):
//! timeline history files first, then by name, which for WAL files is oldest first.

use std::path::Path;

use crate::pg::file_name::ArchiveFileName;
use crate::pg::segment::WalSegSize;

/// Suffix of the status files Postgres creates for each file waiting to be archived.
const READY_SUFFIX: &str = ".ready";

/// Up to `limit` files waiting in `<pg_wal>/archive_status`, in the order Postgres archives
/// them, leaving out `skip` (the file being archived now). Status files whose name is not a
/// valid archive name are ignored: they were not made by Postgres and are not ours to push.
pub fn ready_files(
    pg_wal: &Path,
    seg_size: WalSegSize,
    skip: &ArchiveFileName,
    limit: usize,
) -> std::io::Result<Vec<ArchiveFileName>> {
    let mut names: Vec<ArchiveFileName> = Vec::new();
    for entry in std::fs::read_dir(pg_wal.join("archive_status"))? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(status) = file_name.to_str() else {
            continue;
        };
        let Some(name) = status.strip_suffix(READY_SUFFIX) else {
            continue;
        };
        match ArchiveFileName::parse(name, seg_size) {
            Ok(parsed) if &parsed != skip => names.push(parsed),
            _ => {}
        }
    }
    names.sort_by_key(archive_order);
    names.truncate(limit);
    Ok(names)
}

/// Sort key reproducing Postgres's archive order: history files, then everything by name.
fn archive_order(name: &ArchiveFileName) -> (bool, String) {
    (
        !matches!(name, ArchiveFileName::History(_)),
        name.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_first_then_oldest_and_skips_current() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("archive_status");
        std::fs::create_dir(&status).unwrap();
        for f in [
            "000000010000000000000005.ready",
            "000000010000000000000003.ready",
            "000000010000000000000004.done",
            "00000002.history.ready",
            "000000010000000000000002.ready",
            "garbage.ready",
            "000000010000000000000003.00000028.backup.ready",
        ] {
            std::fs::write(status.join(f), b"").unwrap();
        }
        let size = WalSegSize::from_mib(16).unwrap();
        let skip = ArchiveFileName::parse("000000010000000000000002", size).unwrap();
        let got: Vec<String> = ready_files(dir.path(), size, &skip, 10)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "00000002.history",
                "000000010000000000000003",
                "000000010000000000000003.00000028.backup",
                "000000010000000000000005",
            ]
        );
        assert_eq!(ready_files(dir.path(), size, &skip, 2).unwrap().len(), 2);
    }
}
