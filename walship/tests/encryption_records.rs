//! Records in an encrypted repository, through the binary, with real Postgres 15 and a
//! file:// repository: audit records, pin records and drill reports are sealed like every
//! other object (a marker written into a table, a pin reason and a drill check's output hold
//! it, yet no byte of any object does); with the key `audit --verify`, `list`, `info` and
//! `status` read them; without it each refuses, saying the repository is encrypted (never
//! "nothing there"); and `audit --verify` names an encrypted record that was altered,
//! replaced by another's bytes, removed, or forged in plain JSON.

mod restore_support;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use restore_support::{archiving_cluster, walship_backup};
use support::keys::{configure_key, contains, key_file};
use support::{TestRepo, archive_everything, describe, switch_wal};

const MARKER: &str = "walship-record-marker-51c9";

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `audit --verify --json`: the exit code and what it printed.
fn verify(repo: &TestRepo) -> (Option<i32>, serde_json::Value, String) {
    let out = repo.walship(&["audit", "--verify", "--json"]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json ({e}): {}", describe(&out)));
    (out.status.code(), json, describe(&out))
}

/// The repository key of a file of the local repository.
fn key_of(repo: &TestRepo, path: &Path) -> String {
    path.strip_prefix(repo.local_root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn encrypted_records_hold_no_plaintext_read_with_the_key_and_tampering_is_named() {
    let Some(install) = pg_test_harness::installs_under_test()
        .into_iter()
        .find(|i| i.major == 15)
    else {
        return;
    };
    let repo = TestRepo::local();
    let key = key_file(&repo, "records.keys");
    configure_key(&repo, Some(&key));
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t(i int, pad text)");
    cluster.execute(&format!(
        "insert into t select g, '{MARKER}' || g from generate_series(1, 500) g"
    ));
    // The first archive creates walship.json and the data key as the database's user; the
    // commands below run as root and leave the repository to that user again.
    switch_wal(&cluster);
    archive_everything(&cluster, Duration::from_secs(120));
    walship_backup(&cluster, &repo);
    support::chown_tree_like(repo.local_root(), repo.dir.path());
    switch_wal(&cluster);
    archive_everything(&cluster, Duration::from_secs(120));
    drop(cluster);

    let out = repo.walship(&["list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    // The pin's reason (and so its audit record's arguments) holds the marker...
    let reason = format!("{MARKER} legal hold");
    let out = repo.walship(&["pin", &id, "--reason", &reason]);
    assert!(out.status.success(), "{}", describe(&out));
    // ...and so does the drill's report: a check that returns table data fails, quoting it.
    let sql = repo.dir.path().join("check.sql");
    std::fs::write(
        &sql,
        format!("select pad from t where pad like '{MARKER}%' order by i limit 1;\n"),
    )
    .unwrap();
    let out = repo.walship(&["drill", "--check-sql", sql.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(describe(&out).contains(MARKER), "{}", describe(&out));
    let out = repo.walship(&["verify"]);
    assert!(out.status.success(), "{}", describe(&out));

    // No byte of any object holds the marker; every record is sealed.
    let root = repo.local_root().to_path_buf();
    for path in files(&root) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "plaintext marker found in {}",
            path.display()
        );
    }
    let audit = files(&root.join("audit"));
    let drills = files(&root.join("drills"));
    let pins = files(&root.join("backups").join(&id).join("pins"));
    assert!(audit.len() >= 4, "{audit:?}");
    assert_eq!((drills.len(), pins.len()), (1, 1), "{drills:?} {pins:?}");
    for path in audit.iter().chain(&drills).chain(&pins) {
        assert!(
            walship_common::codec::is_envelope(&std::fs::read(path).unwrap()),
            "{} is not sealed",
            path.display()
        );
    }

    // With the key: the trail verifies and every command reads the records.
    let (code, json, text) = verify(&repo);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(json["verified"], true, "{text}");
    let operations: Vec<&str> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["operation"].as_str().unwrap())
        .collect();
    for op in ["backup", "pin", "drill", "verify"] {
        assert!(operations.contains(&op), "{op} not in {operations:?}");
    }
    assert!(text.contains(&reason), "the pin's arguments: {text}");
    let out = repo.walship(&["list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["pinned"]["reason"], reason.as_str(), "{listed}");
    let out = repo.walship(&["info", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains(&reason), "{}", describe(&out));
    let out = repo.walship(&["status", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["last_drill"]["passed"], false, "{status}");
    assert!(
        status["last_drill"]["failures"]
            .to_string()
            .contains(MARKER),
        "{status}"
    );
    assert!(status["last_verify"].is_string(), "{status}");

    // Without the key: each refuses and says why; nothing is "absent" or "none".
    configure_key(&repo, None);
    for args in [
        vec!["audit"],
        vec!["audit", "--verify"],
        vec!["status"],
        vec!["list"],
        vec!["info", id.as_str()],
        vec!["pin", id.as_str()],
    ] {
        let out = repo.walship(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", describe(&out));
        assert!(
            describe(&out).contains("is encrypted"),
            "{args:?}: {}",
            describe(&out)
        );
    }
    assert_eq!(files(&root.join("backups").join(&id).join("pins")), pins);
    configure_key(&repo, Some(&key));

    // Tampering with an encrypted record: each case is named, then undone.
    let audit = files(&root.join("audit"));
    let (victim, other) = (&audit[1], &audit[2]);
    let original = std::fs::read(victim).unwrap();
    let victim_key = key_of(&repo, victim);
    let broken = |what: &str| {
        let (code, json, text) = verify(&repo);
        assert_eq!(code, Some(4), "{what}: {text}");
        assert_eq!(json["verified"], false, "{what}: {text}");
        let problems = json["problems"].to_string();
        assert!(problems.contains(&victim_key), "{what}: {problems}");
        problems
    };
    let mut flipped = original.clone();
    let at = flipped.len() - 20;
    flipped[at] ^= 0x01;
    std::fs::write(victim, &flipped).unwrap();
    broken("a flipped byte");
    // Another record's bytes in its place (a reorder): the envelope names its own key.
    std::fs::write(victim, std::fs::read(other).unwrap()).unwrap();
    broken("another record's bytes");
    // A forged plain record: refused in an encrypted repository.
    let forged = serde_json::to_vec_pretty(&forged_record()).unwrap();
    std::fs::write(victim, forged).unwrap();
    let problems = broken("a forged plain record");
    assert!(problems.contains("not encrypted"), "{problems}");
    std::fs::remove_file(victim).unwrap();
    let problems = broken("a removed record");
    assert!(problems.contains("removed"), "{problems}");
    std::fs::write(victim, &original).unwrap();
    let (code, _, text) = verify(&repo);
    assert_eq!(code, Some(0), "restored: {text}");
}

/// A plausible audit record in plain JSON, as a forger without the key would write it.
fn forged_record() -> serde_json::Value {
    serde_json::json!({
        "format_version": 1,
        "time": "2026-01-01T00:00:00Z",
        "operation": "backup",
        "arguments": [],
        "os_user": "root",
        "host": "forged",
        "walship_version": "0",
        "result": "ok",
        "exit_code": 0,
        "figures": {},
        "previous_key": null,
        "previous_sha256": null,
    })
}
