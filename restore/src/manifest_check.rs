//! The structural check of a backup manifest, run by the plan so that `--dry-run` refuses
//! exactly what a restore would refuse, before any data moves.
//!
//! A manifest is outside input (anyone who can write the repository can write one, and a
//! restore often runs as root), so nothing in it is trusted: every path is checked
//! ([`check_backup_path`]), every file names an existing bundle and a byte range inside
//! that bundle's raw length without overlapping another file, links exist only as
//! `pg_tblspc/<oid>` of a listed tablespace and point where the list says, files exist
//! under `pg_tblspc/` only for listed tablespaces, `global/pg_control` is a regular file of
//! exactly [`PG_CONTROL_FILE_SIZE`] bytes, and the files restore writes itself
//! (`postgresql.auto.conf`, `backup_label`, the signal files, ...) are never directories.
//! Arithmetic on sizes and offsets is checked, so no value makes the restore abort.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use walship_common::backup::entry_path::{check_backup_path, tablespace_link_oid};
use walship_common::catalog::{BackupManifest, FileKind};
use walship_common::repo::layout;

use crate::materialise::PG_CONTROL;

/// `PG_CONTROL_FILE_SIZE` (`src/include/catalog/pg_control.h`): every major writes
/// `global/pg_control` as exactly this many bytes.
pub const PG_CONTROL_FILE_SIZE: u64 = 8192;

/// Files restore writes itself (or Postgres reads as configuration): a manifest may hold
/// them only as regular files, never as directories or links, nor as a parent of anything.
pub const FILES_RESTORE_WRITES: &[&str] = &[
    PG_CONTROL,
    "postgresql.auto.conf",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "recovery.signal",
    "standby.signal",
];

/// Every structural problem of `manifest`, each naming the entry involved; empty when the
/// manifest can be restored as it stands.
pub fn structural_problems(manifest: &BackupManifest) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.stop_lsn < manifest.start_lsn {
        problems.push(format!(
            "stop LSN {} is before start LSN {}",
            manifest.stop_lsn, manifest.start_lsn
        ));
    }
    let listed = tablespace_problems(manifest, &mut problems);
    let mut kinds: BTreeMap<&str, FileKind> = BTreeMap::new();
    let mut by_bundle: BTreeMap<u32, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for entry in &manifest.files {
        let path = entry.path.as_str();
        if let Err(reason) = check_backup_path(path) {
            problems.push(format!("path {path:?}: {reason}"));
            continue;
        }
        if kinds.insert(path, entry.kind).is_some() {
            problems.push(format!("{path} is listed more than once"));
            continue;
        }
        if let Some(rest) = path.strip_prefix("pg_tblspc/") {
            let oid = rest.split('/').next().and_then(|o| o.parse::<u32>().ok());
            match oid {
                Some(oid) if listed.contains_key(&oid) => {}
                _ => problems.push(format!(
                    "{path} is under pg_tblspc/ but not in a tablespace the backup lists ({:?})",
                    listed.keys().collect::<Vec<_>>()
                )),
            }
        }
        match entry.kind {
            FileKind::Dir => {}
            FileKind::Symlink => {
                let oid = tablespace_link_oid(path);
                match (oid.and_then(|o| listed.get(&o)), &entry.link_target) {
                    (Some(location), Some(target)) if target == location => {}
                    (Some(location), target) => problems.push(format!(
                        "link {path} points to {target:?}, but the backup lists that tablespace at {location:?}"
                    )),
                    (None, _) => problems.push(format!(
                        "{path} is a link; only pg_tblspc/<oid> links of listed tablespaces are restored"
                    )),
                }
            }
            FileKind::File => {
                let (Some(bundle), Some(offset), Some(_)) =
                    (entry.bundle, entry.offset, entry.crc32c)
                else {
                    problems.push(format!("file {path} has no bundle, offset or crc32c"));
                    continue;
                };
                let Some(info) = manifest.bundles.get(bundle as usize) else {
                    problems.push(format!(
                        "file {path} names bundle {bundle}, but the backup has {} bundles",
                        manifest.bundles.len()
                    ));
                    continue;
                };
                match offset.checked_add(entry.size) {
                    Some(end) if end <= info.raw_len => {
                        by_bundle
                            .entry(bundle)
                            .or_default()
                            .push((offset, end, path));
                    }
                    _ => problems.push(format!(
                        "file {path} ({} bytes at offset {offset}) does not fit in bundle {} ({} bytes)",
                        entry.size, info.name, info.raw_len
                    )),
                }
            }
        }
    }
    for (index, bundle) in manifest.bundles.iter().enumerate() {
        if let Err(e) = layout::bundle_key(manifest.id, &bundle.name) {
            problems.push(format!("bundle {index} has an unusable name: {e}"));
        }
    }
    for (bundle, mut ranges) in by_bundle {
        ranges.sort();
        for pair in ranges.windows(2) {
            let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
            if start < end {
                problems.push(format!(
                    "files {first} and {second} overlap in bundle {bundle}"
                ));
            }
        }
    }
    tree_problems(&kinds, &mut problems);
    match manifest.files.iter().find(|f| f.path == PG_CONTROL) {
        None => problems.push(format!("the backup has no {PG_CONTROL}")),
        Some(f) if f.kind != FileKind::File || f.size != PG_CONTROL_FILE_SIZE => {
            problems.push(format!(
                "{PG_CONTROL} is a {:?} of {} bytes; it must be a regular file of {PG_CONTROL_FILE_SIZE} bytes",
                f.kind, f.size
            ))
        }
        Some(_) => {}
    }
    problems
}

/// Checks the tablespace list; returns the listed ones, OID to location.
fn tablespace_problems(
    manifest: &BackupManifest,
    problems: &mut Vec<String>,
) -> BTreeMap<u32, String> {
    let mut listed = BTreeMap::new();
    for ts in &manifest.tablespaces {
        if ts.oid == 0 {
            problems.push("tablespace OID 0 is not a tablespace".to_string());
        }
        if let Err(reason) = check_location(&ts.location) {
            problems.push(format!(
                "tablespace {} location {:?}: {reason}",
                ts.oid, ts.location
            ));
        }
        if listed.insert(ts.oid, ts.location.clone()).is_some() {
            problems.push(format!("tablespace {} is listed more than once", ts.oid));
        }
    }
    listed
}

/// A tablespace directory must be a clean absolute path without control characters (it
/// goes into `tablespace_map`, one line per tablespace).
pub fn check_location(location: &str) -> Result<(), &'static str> {
    let path = Path::new(location);
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    if location.chars().any(char::is_control) {
        return Err("holds a control character");
    }
    let clean = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::RootDir));
    if !clean || location.ends_with('/') && location != "/" || location.contains("//") {
        return Err("not a clean path (no '.', '..' or empty components)");
    }
    if path.parent().is_none() {
        return Err("the root directory");
    }
    Ok(())
}

/// Every listed parent of an entry is a directory (or a tablespace's link), and the files
/// restore writes itself are regular files and parents of nothing.
fn tree_problems(kinds: &BTreeMap<&str, FileKind>, problems: &mut Vec<String>) {
    let mut reported = BTreeSet::new();
    for path in kinds.keys() {
        let mut parent = *path;
        while let Some((up, _)) = parent.rsplit_once('/') {
            parent = up;
            let under_restored_file = FILES_RESTORE_WRITES.contains(&parent);
            let kind = kinds.get(parent).copied();
            let bad = match kind {
                _ if under_restored_file => true,
                Some(FileKind::File) => true,
                Some(FileKind::Symlink) => tablespace_link_oid(parent).is_none(),
                Some(FileKind::Dir) | None => false,
            };
            if bad && reported.insert(parent) {
                problems.push(format!(
                    "{path} is listed under {parent}, which is not a directory"
                ));
            }
        }
    }
    for name in FILES_RESTORE_WRITES {
        if let Some(kind) = kinds.get(name)
            && *kind != FileKind::File
        {
            problems.push(format!("{name} is a {kind:?}; it must be a regular file"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walship_common::catalog::{BundleInfo, FileEntry, TablespaceInfo};

    fn file(path: &str, bundle: u32, offset: u64, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileKind::File,
            size,
            mode: 0o600,
            mtime: 0,
            crc32c: Some(0),
            bundle: Some(bundle),
            offset: Some(offset),
            link_target: None,
        }
    }

    fn entry(path: &str, kind: FileKind, target: Option<&str>) -> FileEntry {
        FileEntry {
            kind,
            link_target: target.map(str::to_string),
            bundle: None,
            offset: None,
            crc32c: None,
            size: 0,
            ..file(path, 0, 0, 0)
        }
    }

    fn manifest(files: Vec<FileEntry>) -> BackupManifest {
        let json = serde_json::json!({
            "format_version": 1, "id": "20261120T140300Z", "label": "t",
            "system_identifier": "1", "pg_major": 15, "pg_version_num": 150000,
            "wal_segment_size": 16777216, "start_timeline": 1, "stop_timeline": 1,
            "start_lsn": "0/2000028", "stop_lsn": "0/2000100",
            "start_time": "2026-11-20T14:03:00Z", "stop_time": "2026-11-20T14:03:01Z",
            "duration_ms": 1, "backup_label": "", "tablespace_map": null,
            "tablespaces": [], "pg_backup_manifest": null, "bytes_raw": 0,
            "bytes_stored": 0, "walship_version": "t", "bundles": [], "files": []
        });
        let mut m: BackupManifest = serde_json::from_value(json).unwrap();
        m.bundles = vec![BundleInfo {
            name: "00000000".into(),
            raw_len: 20000,
            stored_len: 1,
        }];
        m.tablespaces = vec![TablespaceInfo {
            oid: 16400,
            location: "/srv/ts".into(),
        }];
        m.files = files;
        m
    }

    fn good() -> Vec<FileEntry> {
        vec![
            entry("global", FileKind::Dir, None),
            file(PG_CONTROL, 0, 0, 8192),
            file("postgresql.auto.conf", 0, 8192, 100),
            entry("pg_tblspc", FileKind::Dir, None),
            entry("pg_tblspc/16400", FileKind::Symlink, Some("/srv/ts")),
            file("pg_tblspc/16400/PG_15_1/5/1", 0, 8292, 10),
        ]
    }

    #[test]
    fn a_sound_manifest_has_no_problem() {
        assert_eq!(structural_problems(&manifest(good())), Vec::<String>::new());
    }

    #[test]
    fn every_tampering_is_named() {
        type Tamper = Box<dyn Fn(&mut BackupManifest)>;
        let cases: Vec<(Tamper, &str)> = vec![
            (
                Box::new(|m| m.files[1].size = 1 << 40),
                "must be a regular file of 8192",
            ),
            (Box::new(|m| m.files[2].size = u64::MAX), "does not fit"),
            (Box::new(|m| m.files[2].offset = Some(100)), "overlap"),
            (Box::new(|m| m.files[2].bundle = Some(7)), "names bundle 7"),
            (Box::new(|m| m.bundles[0].name = "../x".into()), "bundle 0"),
            (
                Box::new(|m| {
                    m.files.remove(1);
                }),
                "no global/pg_control",
            ),
            (
                Box::new(|m| m.files[2].kind = FileKind::Dir),
                "postgresql.auto.conf is a Dir",
            ),
            (
                Box::new(|m| {
                    m.files
                        .push(entry("pg_tblspc/99", FileKind::Symlink, Some("/root")))
                }),
                "not in a tablespace the backup lists",
            ),
            (
                Box::new(|m| m.files.push(file("pg_tblspc/99/x", 0, 9000, 1))),
                "not in a tablespace the backup lists",
            ),
            (
                Box::new(|m| m.files[4].link_target = Some("/root/.ssh".into())),
                "points to",
            ),
            (
                Box::new(|m| m.files.push(entry("base", FileKind::Symlink, Some("/etc")))),
                "only pg_tblspc/<oid> links",
            ),
            (
                Box::new(|m| m.tablespaces[0].location = "/srv/ts\n1 /etc".into()),
                "control character",
            ),
            (
                Box::new(|m| m.files.push(file("postgresql.auto.conf/x", 0, 9000, 1))),
                "not a directory",
            ),
            (
                Box::new(|m| m.files.push(good()[2].clone())),
                "more than once",
            ),
        ];
        for (tamper, needle) in cases {
            let mut m = manifest(good());
            tamper(&mut m);
            let problems = structural_problems(&m);
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle}: {problems:?}"
            );
        }
    }
}
