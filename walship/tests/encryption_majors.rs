//! Issue 22, test 1, on every installed major (13-18): an encrypted repository takes archives
//! and a `walship backup`, `walship restore --target-time` brings back exactly the rows of
//! that time, and a marker string that Postgres's own WAL shows in plain text is found in
//! none of the repository's objects (every byte of every object read and searched).
//!
//! Cost, and why it is affordable: one cluster per major with 1 MiB segments. Every major
//! archives into an encrypted local directory. On the first and last installed majors the
//! same `archive_command` also archives into an encrypted SeaweedFS repository (two walship
//! calls chained with `&&`, each with its own key file), and that repository gets its own
//! backup and restore: S3 is checked at both ends of the version range without starting a
//! SeaweedFS for each major (`encryption.rs` also covers 15 on S3).

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use restore_support::{open_repo, restore, runtime, start_restored, utc_now, walship_backup};
use support::keys::{configure_key, contains, key_file, secret_of};
use support::{TestRepo, archive_everything, describe};
use walship_common::storage::Storage;

const MARKER: &str = "walship-majors-plaintext-4a1c";

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select i::text || ':' || pad from t order by i")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Every object of `repo` with its bytes: read raw (no key, no decoding) from the storage.
fn every_object(repo: &TestRepo) -> Vec<(String, Vec<u8>)> {
    let rt = runtime();
    let repository = open_repo(&rt, repo);
    let storage = repository.storage();
    let listed = rt.block_on(storage.list("")).unwrap();
    listed
        .iter()
        .map(|meta| {
            let bytes = rt.block_on(storage.get_bytes(&meta.key, 1 << 30)).unwrap();
            (meta.key.to_string(), bytes.to_vec())
        })
        .collect()
}

/// Asserts that no object of `repo` holds the marker or `secret`, and that WAL, a bundle and a
/// manifest are among them (so the search covered every kind of object).
fn assert_no_plaintext(repo: &TestRepo, secret: &str, major: u32) {
    let objects = every_object(repo);
    for kind in ["wal/", "/manifest.json", "keys/"] {
        assert!(
            objects.iter().any(|(k, _)| k.contains(kind)),
            "PG{major} {}: no {kind} object among {:?}",
            repo.url,
            objects.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
    }
    assert!(
        objects
            .iter()
            .any(|(k, _)| k.starts_with("backups/") && !k.ends_with("manifest.json")),
        "PG{major}: no bundle"
    );
    for (key, bytes) in &objects {
        assert!(
            !contains(bytes, MARKER.as_bytes()),
            "PG{major} {}: plaintext marker found in {key}",
            repo.url
        );
        assert!(
            !contains(bytes, secret.as_bytes()),
            "PG{major}: key material in {key}"
        );
    }
    let identity = objects
        .iter()
        .find(|(k, _)| k == "walship.json")
        .expect("walship.json");
    assert!(
        contains(&identity.1, b"walship-envelope-v1"),
        "PG{major}: walship.json does not say encrypted"
    );
}

/// The marker appears in the plain WAL Postgres wrote (so that its absence from the
/// repository means something).
fn assert_marker_in_pg_wal(cluster: &Cluster) {
    let pg_wal = cluster.data_dir().join("pg_wal");
    let found = std::fs::read_dir(&pg_wal).unwrap().flatten().any(|e| {
        e.path().is_file()
            && contains(
                &std::fs::read(e.path()).unwrap_or_default(),
                MARKER.as_bytes(),
            )
    });
    assert!(
        found,
        "the marker should be visible in the server's own WAL"
    );
}

/// Restores `repo` to `time`, starts the copy and compares its rows with `want`.
fn restore_and_compare(install: &PgInstall, repo: &TestRepo, time: &str, want: &[String]) {
    let dir = pg_test_harness::test_dir("enc-major-restored");
    let to = dir.path().join("data");
    let out = restore(repo, &to, &["--target-time", time]);
    assert!(
        out.status.success(),
        "PG{} restore from {}: {}",
        install.major,
        repo.url,
        describe(&out)
    );
    let mut restored = start_restored(install, &to);
    assert_eq!(
        rows(&restored),
        want,
        "PG{} from {}",
        install.major,
        repo.url
    );
    restored.stop(StopMode::Fast);
}

fn run_major(install: &PgInstall, with_s3: bool) {
    let mut repos = vec![TestRepo::local()];
    if with_s3 {
        repos.push(TestRepo::s3().expect("SeaweedFS ran a moment ago"));
    }
    let mut secrets = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        let key = key_file(repo, &format!("keys-{i}"));
        configure_key(repo, Some(&key));
        secrets.push(secret_of(&key));
    }
    let archive_command = repos
        .iter()
        .map(|r| r.archive_command(""))
        .collect::<Vec<_>>()
        .join(" && ");
    let cluster = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting("archive_command", &format!("'{archive_command}'"))
        .setting("checkpoint_timeout", "'1h'")
        .start();
    cluster.execute("create table t(i int primary key, pad text)");
    // In the data files (so in the backup's bundles) and in the WAL.
    cluster.execute(&format!(
        "insert into t select g, '{MARKER}' || g from generate_series(1, 2000) g"
    ));
    // The first archive creates walship.json and the data key as the cluster's user.
    archive_everything(&cluster, Duration::from_secs(120));
    for repo in &repos {
        walship_backup(&cluster, repo);
        if repo.s3.is_none() {
            // walship backup ran as root; the archiver (the cluster's user) goes on writing.
            support::chown_tree_like(repo.local_root(), repo.dir.path());
        }
    }
    cluster.execute(&format!(
        "insert into t select g, '{MARKER}' || g from generate_series(2001, 2500) g"
    ));
    std::thread::sleep(Duration::from_millis(30));
    let time = utc_now(&cluster);
    let want = rows(&cluster);
    std::thread::sleep(Duration::from_millis(30));
    cluster.execute("delete from t");
    archive_everything(&cluster, Duration::from_secs(120));
    assert_marker_in_pg_wal(&cluster);

    for (repo, secret) in repos.iter().zip(&secrets) {
        assert_no_plaintext(repo, secret, install.major);
        restore_and_compare(install, repo, &time, &want);
    }
    eprintln!(
        "PG{}: encrypted archive, backup and restore to a time ({})",
        install.major,
        if with_s3 { "local and S3" } else { "local" }
    );
}

#[test]
fn encrypted_repositories_restore_to_a_time_and_hold_no_plaintext_on_every_major() {
    let installs = pg_test_harness::installs_under_test();
    let s3 = match TestRepo::s3() {
        Some(probe) => {
            drop(probe);
            true
        }
        None => false,
    };
    let first = installs.first().map(|i| i.major);
    let last = installs.last().map(|i| i.major);
    for install in &installs {
        let ends = Some(install.major) == first || Some(install.major) == last;
        run_major(install, s3 && ends);
    }
}
