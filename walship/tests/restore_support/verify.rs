//! Checking a restored data directory against Postgres's own `backup_manifest` (which
//! `walship restore` writes beside the files, as `pg_basebackup` does), before Postgres
//! starts on it: with `pg_verifybackup` where one that reads the manifest's version is
//! installed, and always with the test's own reader (every listed file present, with its
//! size and CRC-32C; no file that the manifest does not list), so that the majors without a
//! matching `pg_verifybackup` are checked too.
//!
//! Like `pg_verifybackup`, the reader ignores what a restore (or `pg_basebackup -R`)
//! legitimately writes or changes: `backup_manifest`, `pg_wal`, `postgresql.auto.conf`,
//! `recovery.signal`, `standby.signal`; and with a relocated tablespace the rewritten
//! `tablespace_map` (`pg_verifybackup -i tablespace_map`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pg_test_harness::PgInstall;

use crate::support::describe;

/// What `pg_verifybackup` ignores by default, plus what walship restore adds.
const IGNORED: &[&str] = &[
    "backup_manifest",
    "pg_wal",
    "postgresql.auto.conf",
    "recovery.signal",
    "standby.signal",
];

/// A `pg_verifybackup` that reads the manifests of `major`: the install's own, else the
/// Debian client tool (15) for majors whose manifest is version 1 (13 to 16). PG17 added
/// manifest version 2 (with the system identifier), which older tools refuse.
fn pg_verifybackup(install: &PgInstall) -> Option<Command> {
    if install.has_tool("pg_verifybackup") {
        return Some(install.command("pg_verifybackup"));
    }
    let debian = pg_test_harness::client_tool("pg_verifybackup");
    (install.major <= 16).then(|| Command::new(debian))
}

/// Checks the restored directory `data` against its `backup_manifest`; `relocated` when a
/// tablespace was moved with `--tablespace` (its `tablespace_map` then differs on purpose).
/// Panics naming every difference.
pub fn verify_restored(install: &PgInstall, data: &Path, relocated: bool) {
    let text = std::fs::read_to_string(data.join("backup_manifest")).unwrap_or_else(|e| {
        panic!(
            "PG{}: restore wrote no backup_manifest in {}: {e}",
            install.major,
            data.display()
        )
    });
    let mut ignored: Vec<&str> = IGNORED.to_vec();
    if relocated {
        ignored.push("tablespace_map");
    }
    let problems = own_check(&text, data, &ignored);
    assert!(
        problems.is_empty(),
        "PG{}: restored files differ from backup_manifest:\n{}",
        install.major,
        problems.join("\n")
    );
    match pg_verifybackup(install) {
        Some(mut cmd) => {
            // The WAL is in the repository, not in pg_wal: -n (--no-parse-wal).
            cmd.arg("-n");
            if relocated {
                cmd.args(["-i", "tablespace_map"]);
            }
            cmd.arg(data);
            let out = cmd.output().expect("run pg_verifybackup");
            assert!(
                out.status.success(),
                "PG{}: pg_verifybackup {}: {}",
                install.major,
                data.display(),
                describe(&out)
            );
        }
        None => eprintln!(
            "NOTE: PG{}: no pg_verifybackup reads this major's backup_manifest (version 2); \
             checked by the test's own reader only",
            install.major
        ),
    }
}

/// Every listed file with its size and CRC-32C, and no unlisted file, as `pg_verifybackup`
/// checks them. Returns one line per difference.
fn own_check(text: &str, data: &Path, ignored: &[&str]) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_str(text).expect("backup_manifest is JSON");
    let skip = |path: &str| {
        ignored
            .iter()
            .any(|i| path == *i || path.starts_with(&format!("{i}/")))
    };
    let mut listed = BTreeMap::new();
    let mut problems = Vec::new();
    for file in manifest["Files"].as_array().expect("Files") {
        let path = file["Path"].as_str().expect("Path (no Encoded-Path here)");
        listed.insert(path.to_string(), ());
        if skip(path) {
            continue;
        }
        let bytes = match std::fs::read(data.join(path)) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(format!("{path}: {e}"));
                continue;
            }
        };
        if Some(bytes.len() as u64) != file["Size"].as_u64() {
            problems.push(format!("{path}: size {} != {}", bytes.len(), file["Size"]));
        }
        if file["Checksum-Algorithm"] == "CRC32C" {
            // Postgres prints the final CRC's bytes in memory order (little-endian here).
            let found: String = crc32c::crc32c(&bytes)
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if file["Checksum"].as_str() != Some(found.as_str()) {
                problems.push(format!("{path}: crc32c {found} != {}", file["Checksum"]));
            }
        }
    }
    for path in files_under(data, data) {
        if !skip(&path) && !listed.contains_key(&path) {
            problems.push(format!("{path}: present but not in backup_manifest"));
        }
    }
    problems
}

/// Relative paths of the regular files under `dir`, following the `pg_tblspc` links.
fn files_under(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let meta = std::fs::metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files_under(root, &path));
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out
}
