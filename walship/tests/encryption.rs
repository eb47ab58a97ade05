//! Client-side encryption through the binary, with real Postgres 15: WAL archived into an
//! encrypted repository holds no plaintext, recovery through `walship fetch` with the key
//! returns every row, without the key `fetch` stops recovery (exit 200, never "absent"),
//! and after `key rotate` and `key rewrap` only the new key file is needed, with no data
//! object rewritten.

mod restore_support;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use support::keys::{configure_key, contains, key_file, secret_of};
use support::{TestRepo, archive_everything, describe, low_level_copy, wait_until};

const MARKER: &str = "walship-plaintext-marker-7d3f";

/// Every regular file under `dir`, with its size and mtime.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), (meta.len(), meta.mtime(), meta.mtime_nsec()));
            }
        }
    }
    out
}

fn install_15() -> Option<PgInstall> {
    pg_test_harness::installs_under_test()
        .into_iter()
        .find(|i| i.major == 15)
}

/// A copy of `copy` that recovers through `walship fetch` and must reach `rows` rows.
fn recover(install: &PgInstall, copy: &Path, repo: &TestRepo, rows: i64) {
    let scratch = pg_test_harness::test_dir("recovering");
    let data = scratch.path().join("data");
    copy_tree(&copy.join("data"), &data);
    std::fs::write(data.join("recovery.signal"), b"").unwrap();
    support::chown_tree_like(&data, scratch.path());
    let mut cluster = Cluster::from_data_dir(install, &data);
    cluster.append_conf("archive_mode = off");
    cluster.append_conf(&format!("restore_command = '{}'", repo.restore_command()));
    cluster.start();
    wait_until(Duration::from_secs(120), "recovery to end", || {
        cluster.query_string("select pg_is_in_recovery()") == "f"
    });
    let found: i64 = cluster
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(found, rows, "rows after recovery");
    let markers: i64 = cluster
        .query_string(&format!(
            "select count(*) from t where pad like '{MARKER}%'"
        ))
        .parse()
        .unwrap();
    assert!(markers > 0);
    cluster.stop(StopMode::Fast);
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn encrypted_archive_holds_no_plaintext_recovers_and_survives_rotate_and_rewrap() {
    let Some(install) = install_15() else { return };
    let repo = TestRepo::local();
    let first_key = key_file(&repo, "first.keys");
    configure_key(&repo, Some(&first_key));

    let mut primary = Cluster::builder(&install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start();
    primary.execute("create table t(i int, pad text)");
    primary.execute("insert into t select g, 'base' from generate_series(1, 100) g");
    let copy = pg_test_harness::test_dir("copy");
    low_level_copy(&primary, &copy.path().join("data"));
    for batch in 1..=3 {
        primary.execute(&format!(
            "insert into t select g, '{MARKER}' || g from generate_series({}, {}) g",
            batch * 1000,
            batch * 1000 + 499
        ));
        primary.execute("select pg_switch_wal()");
    }
    archive_everything(&primary, Duration::from_secs(120));

    // The marker is in the plain WAL (so the check below means something)...
    let pg_wal = listing(&primary.data_dir().join("pg_wal"));
    assert!(
        pg_wal
            .keys()
            .any(|p| contains(&std::fs::read(p).unwrap_or_default(), MARKER.as_bytes())),
        "the marker should be visible in the server's own WAL"
    );
    // ...and in none of the repository's bytes.
    let root = repo.local_root().to_path_buf();
    let stored = listing(&root);
    assert!(stored.keys().any(|p| p.starts_with(root.join("keys"))));
    for path in stored.keys() {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "plaintext marker found in {}",
            path.display()
        );
    }
    let identity = std::fs::read_to_string(root.join("walship.json")).unwrap();
    assert!(identity.contains("walship-envelope-v1"), "{identity}");
    // Key material never reaches the repository.
    let secret = secret_of(&first_key);
    for path in stored.keys() {
        assert!(!contains(&std::fs::read(path).unwrap(), secret.as_bytes()));
    }

    let rows: i64 = primary
        .query_string("select count(*) from t")
        .parse()
        .unwrap();

    // Without the key: fetch stops recovery (above 125), never "absent", and says why.
    configure_key(&repo, None);
    let segment = stored
        .keys()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .find(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap();
    let dest = repo.dir.path().join("fetched");
    let out = repo.walship(&["fetch", &segment, dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    assert!(describe(&out).contains("encrypted"), "{}", describe(&out));
    assert!(!dest.exists());
    // An unencrypted walship also refuses to write into it.
    let archive_out = repo.walship(&[
        "archive",
        primary
            .data_dir()
            .join("pg_wal")
            .join(&segment)
            .to_str()
            .unwrap(),
    ]);
    assert!(!archive_out.status.success(), "{}", describe(&archive_out));
    // The wrong key: exit 200 too.
    let wrong_key = key_file(&repo, "wrong.keys");
    configure_key(&repo, Some(&wrong_key));
    let out = repo.walship(&["fetch", &segment, dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    assert!(describe(&out).contains("no key in"), "{}", describe(&out));
    assert!(!dest.exists());

    // With the key: Postgres recovers every row through walship fetch.
    configure_key(&repo, Some(&first_key));
    recover(&install, copy.path(), &repo, rows);

    // Rotate: a new active key and data key; more WAL is archived with it.
    let out = repo.walship(&["key", "rotate"]);
    assert!(out.status.success(), "{}", describe(&out));
    // The test runs walship as root; the database's user must still read what it wrote
    // (in production both share the repository through a group).
    support::chown_tree_like(repo.local_root(), repo.dir.path());
    primary.execute(&format!(
        "insert into t select g, '{MARKER}' || g from generate_series(9000, 9499) g"
    ));
    archive_everything(&primary, Duration::from_secs(120));
    let rows: i64 = primary
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    let out = repo.walship(&["key", "list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["deks"].as_array().unwrap().len(), 2, "{listed}");
    // Each data key protects objects, and together they protect exactly the sealed objects
    // the repository holds (walship.json and keys/ are plain and not counted).
    let sealed = listing(&root)
        .keys()
        .filter(|p| !p.starts_with(root.join("keys")) && !p.ends_with("walship.json"))
        .filter(|p| walship_common::codec::is_envelope(&std::fs::read(p).unwrap()))
        .count() as u64;
    let counts: Vec<u64> = listed["deks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["objects"].as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|&n| n > 0), "{listed}");
    assert_eq!(counts.iter().sum::<u64>(), sealed, "{listed}");
    assert_eq!(listed["damaged_objects"], 0, "{listed}");
    let out = repo.walship(&["key", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for n in &counts {
        assert!(text.contains(&format!("{n} object(s)")), "{text}");
    }

    // Rewrap under a brand-new key file; no data object changes.
    let wal_before: BTreeMap<_, _> = listing(&root)
        .into_iter()
        .filter(|(p, _)| p.starts_with(root.join("wal")))
        .collect();
    let new_key = key_file(&repo, "new.keys");
    let out = repo.walship(&["key", "rewrap", "--new-key-file", new_key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    // Both changes to the keys are in the audit trail, with no key material.
    let out = repo.walship(&["audit", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let trail = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        trail.contains("\"key_rotate\"") && trail.contains("\"key_rewrap\""),
        "{trail}"
    );
    let wal_after: BTreeMap<_, _> = listing(&root)
        .into_iter()
        .filter(|(p, _)| p.starts_with(root.join("wal")))
        .collect();
    assert_eq!(wal_before, wal_after, "rewrap must not touch data objects");
    support::chown_tree_like(repo.local_root(), repo.dir.path());

    // Only the new key file from now on: the old ones are gone.
    primary.stop(StopMode::Fast);
    std::fs::remove_file(&first_key).unwrap();
    configure_key(&repo, Some(&new_key));
    recover(&install, copy.path(), &repo, rows);
}

/// The S3 half: `walship backup` into an encrypted SeaweedFS repository, restore to a time
/// with the key (rows equal), and without the key restore refuses before writing anything.
#[test]
fn encrypted_backup_on_s3_restores_to_a_time_and_refuses_without_the_key() {
    use restore_support::{archiving_cluster, restore, start_restored, utc_now, walship_backup};
    let Some(install) = install_15() else { return };
    let Some(repo) = TestRepo::s3() else { return };
    let key = key_file(&repo, "s3.keys");
    configure_key(&repo, Some(&key));
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t(i int, pad text)");
    cluster.execute(&format!(
        "insert into t select g, '{MARKER}' || g from generate_series(1, 2000) g"
    ));
    walship_backup(&cluster, &repo);
    cluster.execute("insert into t select g, 'after' from generate_series(2001, 2500) g");
    std::thread::sleep(Duration::from_millis(30));
    let time = utc_now(&cluster);
    let want: i64 = cluster
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    cluster.execute("delete from t");
    archive_everything(&cluster, Duration::from_secs(120));

    // Without the key: refused, nothing restored.
    configure_key(&repo, None);
    let dir = pg_test_harness::test_dir("enc-restored");
    let refused_to = dir.path().join("refused");
    let out = restore(&repo, &refused_to, &["--target-time", &time]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("encrypted"), "{}", describe(&out));
    assert!(
        !refused_to.join("global/pg_control").exists(),
        "nothing may be restored without the key"
    );

    configure_key(&repo, Some(&key));
    let to = dir.path().join("data");
    let out = restore(&repo, &to, &["--target-time", &time]);
    assert!(out.status.success(), "{}", describe(&out));
    // The recovery configuration names the key file, never key material.
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    let secret = secret_of(&key);
    assert!(!auto.contains(&secret));
    assert!(!describe(&out).contains(&secret));
    let mut restored = start_restored(&install, &to);
    let found: i64 = restored
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(found, want);
    restored.stop(StopMode::Fast);

    // verify opens every sealed object (WAL, manifest, bundles) with the key: sound.
    let out = repo.walship(&["verify"]);
    assert!(out.status.success(), "{}", describe(&out));
    // Without the key nothing can be checked: never "sound".
    configure_key(&repo, None);
    let out = repo.walship(&["verify"]);
    assert!(!out.status.success(), "{}", describe(&out));
}

/// `passphrase_command`: WAL archived with a key derived from a command's output is fetched
/// back with it; a tampered or truncated object, or another passphrase, stops recovery (exit
/// 200); a failing command is reported without its text or output, even with `-vv`.
#[test]
fn passphrase_command_encrypts_and_never_shows_the_passphrase() {
    let Some(install) = install_15() else { return };
    let repo = TestRepo::local();
    let passphrase = "walship-test-passphrase-31337";
    let base = std::fs::read_to_string(&repo.config).unwrap();
    let with_command = |command: &str| {
        std::fs::write(
            &repo.config,
            format!("{base}[encryption]\npassphrase_command = \"{command}\"\n"),
        )
        .unwrap();
    };
    with_command(&format!("printf {passphrase}"));
    let mut primary = Cluster::builder(&install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start();
    primary.execute("create table t(i int, pad text)");
    primary.execute(&format!(
        "insert into t select g, '{MARKER}' from generate_series(1, 500) g"
    ));
    archive_everything(&primary, Duration::from_secs(120));
    primary.stop(StopMode::Fast);
    let root = repo.local_root().to_path_buf();
    let stored = listing(&root);
    for path in stored.keys() {
        let bytes = std::fs::read(path).unwrap();
        assert!(!contains(&bytes, MARKER.as_bytes()), "{}", path.display());
        assert!(
            !contains(&bytes, passphrase.as_bytes()),
            "{}",
            path.display()
        );
    }
    let segment = stored
        .keys()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .find(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap();
    let dest = repo.dir.path().join("fetched");
    let out = repo.walship(&["-vv", "fetch", &segment, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 1 << 20);
    assert!(!describe(&out).contains(passphrase), "{}", describe(&out));
    std::fs::remove_file(&dest).unwrap();

    // Tampered objects through the binary: a flipped ciphertext byte, and the object cut at
    // every chunk boundary before its final chunk (after the 96 header bytes, and after each
    // sealed chunk that is not the last), are refused with exit 200 (never "absent"), naming
    // the object, nothing delivered.
    let stored_path = stored
        .keys()
        .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(segment.as_str()))
        .unwrap()
        .clone();
    let original = std::fs::read(&stored_path).unwrap();
    let mut boundaries = vec![96];
    loop {
        let at = *boundaries.last().unwrap();
        let word = u32::from_le_bytes(original[at..at + 4].try_into().unwrap());
        let end = at + 4 + (word & 0x7fff_ffff) as usize;
        if word & (1 << 31) != 0 {
            assert_eq!(end, original.len(), "nothing follows the final chunk");
            break;
        }
        boundaries.push(end);
    }
    let mut flipped = original.clone();
    flipped[96 + 4 + 10] ^= 0x20;
    let mut cases = vec![("a flipped byte".to_string(), flipped)];
    for cut in &boundaries {
        cases.push((format!("cut at {cut}"), original[..*cut].to_vec()));
    }
    for (what, bytes) in cases {
        std::fs::write(&stored_path, bytes).unwrap();
        let out = repo.walship(&["fetch", &segment, dest.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(200), "{what}: {}", describe(&out));
        assert!(
            describe(&out).contains(&segment),
            "{what}: {}",
            describe(&out)
        );
        assert!(!dest.exists(), "{what}: nothing may be delivered");
    }
    std::fs::write(&stored_path, &original).unwrap();

    with_command("printf another-passphrase-entirely");
    let out = repo.walship(&["-vv", "fetch", &segment, dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    assert!(!dest.exists());

    with_command(&format!("echo {passphrase}; exit 7"));
    let out = repo.walship(&["-vv", "fetch", &segment, dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("passphrase_command failed"), "{text}");
    assert!(!text.contains(passphrase), "{text}");
    let out = repo.walship(&["--json", "list"]);
    assert!(!describe(&out).contains(passphrase), "{}", describe(&out));
}
