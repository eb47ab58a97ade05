//! `walship backup`, `list` and `info` against real Postgres of every major: a backup of a
//! cluster archiving with `walship archive` (data, an extra tablespace, an unlogged table)
//! materialises into a directory that Postgres recovers to consistency with WAL fetched by
//! `walship fetch`, with exactly the rows written before the backup; `pg_verifybackup` (15)
//! accepts it; `pg_checksums --check` passes where the install has it; kill -9 at random
//! moments never leaves a listed backup; password authentication works.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, PgInstall, StopMode};
use support::{TestRepo, archive_everything, describe, wait_until, walship_bin};
use walship_common::backup::find_backup;
use walship_common::catalog::BackupManifest;
use walship_common::codec::Codec;
use walship_common::repo::Repository;
use walship_common::storage::{AnyStorage, S3Credentials, S3Options};

/// A primary archiving into `repo` with `walship archive`.
fn archiving_cluster(install: &PgInstall, repo: &TestRepo) -> Cluster {
    Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start()
}

/// A local repository and a primary of the newest major archiving into it.
fn newest_archiving_cluster() -> (TestRepo, Cluster) {
    let installs = pg_test_harness::installs_under_test();
    let install = installs.last().unwrap();
    let repo = TestRepo::local();
    let primary = archiving_cluster(install, &repo);
    (repo, primary)
}

fn conn(cluster: &Cluster) -> String {
    format!("host=127.0.0.1 port={} user=postgres", cluster.port())
}

/// Runs `walship backup` against `cluster`; panics unless it succeeds; returns the JSON
/// summary.
fn backup(repo: &TestRepo, cluster: &Cluster, extra: &[&str]) -> serde_json::Value {
    let c = conn(cluster);
    let mut args = vec![
        "backup",
        "-d",
        &c,
        "--checkpoint",
        "fast",
        "--json",
        "--wal-timeout",
        "60s",
    ];
    args.extend_from_slice(extra);
    let out = repo.walship(&args);
    assert!(out.status.success(), "walship backup: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

/// Opens the test repository as the library sees it.
async fn open_repo(repo: &TestRepo) -> Repository {
    let s3 = match &repo.s3 {
        Some(s3) => S3Options {
            endpoint: Some(s3.endpoint.clone()),
            region: Some(s3.region.clone()),
            force_path_style: Some(true),
            credentials: Some(S3Credentials {
                access_key_id: "walship-test".into(),
                secret_access_key: "walship-test".into(),
                session_token: None,
            }),
            ..S3Options::default()
        },
        None => S3Options::default(),
    };
    Repository::new(AnyStorage::open(&repo.url, &s3).await.unwrap(), Codec::Lz4)
}

/// Materialises backup `which` into `<dir>/data`, tablespaces into `<dir>/ts<oid>`.
fn materialise(repo: &TestRepo, which: &str, dir: &Path) -> (BackupManifest, PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = open_repo(repo).await;
        let manifest = find_backup(&r, which).await.unwrap();
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        let places: BTreeMap<u32, PathBuf> = manifest
            .tablespaces
            .iter()
            .map(|t| (t.oid, dir.join(format!("ts{}", t.oid))))
            .collect();
        let opts = walship_restore::MaterialiseOptions {
            tablespaces: places.clone(),
            parallel: 2,
            ..Default::default()
        };
        walship_restore::materialise::materialise(&r, &manifest, &data, &opts, Arc::new(|_| {}))
            .await
            .unwrap();
        for ts in places.values() {
            pg_test_harness::chown_to_owner_recursive(ts).unwrap();
        }
        (manifest, data)
    })
}

fn rows(cluster: &Cluster) -> Vec<Vec<Option<String>>> {
    cluster.query_rows(
        "select (select count(*) || ':' || coalesce(sum(i), 0) from t), \
                (select count(*) || ':' || coalesce(sum(i), 0) from t_ts)",
    )
}

/// Starts Postgres on a materialised backup with WAL from `walship fetch`, stopping at
/// consistency, and waits until it has promoted.
fn recover_to_consistency(install: &PgInstall, data: &Path, repo: &TestRepo) -> Cluster {
    std::fs::write(data.join("recovery.signal"), b"").unwrap();
    let mut restored = Cluster::from_data_dir(install, data);
    restored.append_conf("archive_mode = off");
    restored.append_conf(&format!("restore_command = '{}'", repo.restore_command()));
    restored.append_conf("recovery_target = 'immediate'");
    restored.append_conf("recovery_target_action = 'promote'");
    restored.start();
    wait_until(Duration::from_secs(120), "recovery to consistency", || {
        restored.query_string("select pg_is_in_recovery()") == "f"
    });
    restored
}

/// A backup of every major restores, with WAL from the archive, to exactly the rows
/// written before it.
fn backup_restores_to_consistency(install: &PgInstall, repo: &TestRepo) {
    let primary = archiving_cluster(install, repo);
    let ts_dir = pg_test_harness::test_dir("ts");
    primary.execute(&format!(
        "create tablespace ts location '{}'",
        ts_dir.path().display()
    ));
    primary.execute("create table t(i int, pad text)");
    primary.execute("insert into t select g, repeat('x', 200) from generate_series(1, 20000) g");
    primary.execute("create table t_ts(i int) tablespace ts");
    primary.execute("insert into t_ts select generate_series(1, 5000)");
    primary.execute("create unlogged table u(i int)");
    primary.execute("insert into u select generate_series(1, 1000)");
    let before = rows(&primary);

    let summary = backup(repo, &primary, &[]);
    let id = summary["id"].as_str().unwrap().to_string();
    assert_eq!(summary["pg_major"], install.major);
    // Rows written after the backup must not be in a restore to consistency.
    primary.execute("insert into t select g, 'after' from generate_series(1, 100) g");
    archive_everything(&primary, Duration::from_secs(60));

    let list = repo.walship(&["list", "--json"]);
    assert!(list.status.success(), "{}", describe(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    let table = repo.walship(&["list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));
    let info = repo.walship(&["info", "latest", "--json"]);
    assert!(info.status.success(), "{}", describe(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["id"], id.as_str());
    assert!(info["files"].as_array().unwrap().len() > 100);

    let dir = pg_test_harness::test_dir("restored");
    let (manifest, data) = materialise(repo, &id, dir.path());
    assert_eq!(manifest.tablespaces.len(), 1);
    // The unlogged table's main fork is not in the backup, only its init fork.
    if install.major == pg_test_harness::CLIENT_TOOLS_MAJOR {
        let out = Command::new(pg_test_harness::client_tool("pg_verifybackup"))
            .args(["--no-parse-wal", "--ignore", "tablespace_map"])
            .arg(&data)
            .output()
            .unwrap();
        if !out.status.success() {
            let ls = Command::new("ls")
                .arg("-laR")
                .arg(dir.path())
                .output()
                .unwrap();
            let files: Vec<_> = manifest
                .files
                .iter()
                .filter(|f| f.path.starts_with("pg_tblspc"))
                .collect();
            panic!(
                "pg_verifybackup: {}\n{}\n{files:#?}",
                describe(&out),
                String::from_utf8_lossy(&ls.stdout)
            );
        }
    }
    let mut restored = recover_to_consistency(install, &data, repo);
    assert_eq!(rows(&restored), before, "PG{}", install.major);
    assert_eq!(restored.query_string("select count(*) from u"), "0");
    restored.stop(StopMode::Fast);
    // pg_checksums of the install, or Debian's for its own major (15): never skipped there.
    let checksums = if install.has_tool("pg_checksums") {
        Some(install.bin_dir.join("pg_checksums"))
    } else {
        (install.major == pg_test_harness::CLIENT_TOOLS_MAJOR)
            .then(|| pg_test_harness::client_tool("pg_checksums"))
    };
    if let Some(tool) = checksums {
        let mut cmd = Command::new(tool);
        cmd.current_dir(dir.path())
            .arg("--check")
            .arg("-D")
            .arg(&data);
        restored.run_as_owner(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "pg_checksums: {}", describe(&out));
    }
    eprintln!(
        "PG{}: backup {id} ({} files, {} bundles) restored to {:?}",
        install.major,
        manifest.files.len(),
        manifest.bundles.len(),
        before
    );
}

#[test]
fn backup_restores_to_consistency_every_major_local_repo() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        backup_restores_to_consistency(&install, &repo);
    }
}

#[test]
fn backup_restores_to_consistency_s3_repo() {
    let Some(repo) = TestRepo::s3() else { return };
    let installs = pg_test_harness::installs_under_test();
    let install = installs
        .iter()
        .find(|i| i.major == pg_test_harness::CLIENT_TOOLS_MAJOR)
        .unwrap_or_else(|| installs.last().unwrap());
    backup_restores_to_consistency(install, &repo);
}

/// Deterministic pseudo-random fractions in [0, 1).
fn fractions(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f64 / 10_000.0
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_never_leaves_a_listed_backup() {
    let (repo, primary) = newest_archiving_cluster();
    primary.execute("create table t(i int, pad text)");
    primary.execute(
        "insert into t select g, repeat(md5(g::text), 8) from generate_series(1, 200000) g",
    );
    let c = conn(&primary);
    let args = [
        "--config",
        repo.config.to_str().unwrap(),
        "backup",
        "-d",
        &c,
        "--checkpoint",
        "fast",
        "--bundle-size",
        "1MiB",
        "--parallel",
        "2",
        "--max-rate",
        "16384",
    ];
    // How long a whole backup takes, to spread the kills over it.
    let started = Instant::now();
    let out = Command::new(walship_bin())
        .args(args)
        .envs(repo.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let full = started.elapsed();
    let listed_ids = |repo: &TestRepo| -> Vec<String> {
        let out = repo.walship(&["list", "--json"]);
        assert!(out.status.success(), "{}", describe(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    let complete = listed_ids(&repo);
    assert_eq!(complete.len(), 1);
    eprintln!("a whole backup takes {full:?}");
    let mut killed = 0;
    let mut most_incomplete = 0;
    for fraction in fractions(30) {
        if killed >= 12 {
            break;
        }
        let delay = full.mul_f64(fraction * 0.9);
        let mut child = Command::new(walship_bin())
            .args(args)
            .envs(repo.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            killed += 1;
        }
        let status = child.wait().unwrap();
        let ids = listed_ids(&repo);
        let out = repo.walship(&["list", "--incomplete", "--json"]);
        let incomplete: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let incomplete = incomplete.as_array().unwrap().clone();
        eprintln!(
            "kill after {delay:?}: exit {:?}, {} listed, {} incomplete",
            status.code(),
            ids.len(),
            incomplete.len()
        );
        most_incomplete = most_incomplete.max(incomplete.len());
        // A killed backup is never listed; its leftovers are only "incomplete".
        for leftover in &incomplete {
            assert!(!ids.iter().any(|id| leftover["id"] == id.as_str()));
        }
        if !status.success() {
            assert_eq!(
                ids.len(),
                complete.len() + killed_successes(&ids, &complete)
            );
        }
        for id in &ids {
            let info = repo.walship(&["info", id, "--json"]);
            assert!(
                info.status.success(),
                "listed backup {id} is unreadable: {}",
                describe(&info)
            );
        }
    }
    assert!(killed >= 10, "only {killed} backups were killed mid-way");
    assert!(
        most_incomplete > 0,
        "no kill ever left objects behind: the kills all missed the upload"
    );
    // The next successful backup removes the leftovers of the killed ones.
    backup(&repo, &primary, &[]);
    let out = repo.walship(&["list", "--incomplete", "--json"]);
    let incomplete: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(incomplete.as_array().unwrap().len(), 0, "{incomplete}");
}

/// Backups listed now beyond those of `before`: ones that finished before their kill.
fn killed_successes(now: &[String], before: &[String]) -> usize {
    now.iter().filter(|id| !before.contains(id)).count()
}

#[test]
fn incomplete_backups_are_removed_by_the_documented_command() {
    let (repo, primary) = newest_archiving_cluster();
    // One segment archived (walship.json exists), then WAL archiving off: the backup cannot
    // complete, and says which segment is missing.
    archive_everything(&primary, Duration::from_secs(60));
    primary.execute("alter system set archive_command = '/bin/false'");
    primary.execute("select pg_reload_conf()");
    let c = conn(&primary);
    let out = repo.walship(&[
        "backup",
        "-d",
        &c,
        "--checkpoint",
        "fast",
        "--wal-timeout",
        "2s",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WAL segment 0000000") && stderr.contains("not in the repository"),
        "{stderr}"
    );
    let list = repo.walship(&["list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    let out = repo.walship(&["list", "--incomplete", "--json"]);
    let incomplete: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(incomplete.as_array().unwrap().len(), 1, "{incomplete}");
    // Too recent for the default --idle 1h: kept.
    let out = repo.walship(&["list", "--incomplete", "--remove", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "{}",
        describe(&out)
    );
    let out = repo.walship(&["list", "--incomplete", "--remove", "--idle", "0s", "--json"]);
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed.as_array().unwrap().len(), 1, "{}", describe(&out));
    let out = repo.walship(&["list", "--incomplete", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn backup_authenticates_with_md5_and_scram_passwords() {
    let (repo, primary) = newest_archiving_cluster();
    for (method, encryption) in [("scram-sha-256", "scram-sha-256"), ("md5", "md5")] {
        primary.execute(&format!("set password_encryption = '{encryption}'; drop role if exists rep; create role rep login replication password 'se''cret'"));
        primary.set_hba(&format!(
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost replication rep 127.0.0.1/32 {method}\n"
        ));
        primary.execute("select pg_reload_conf()");
        let c = format!("host=127.0.0.1 port={} user=rep", primary.port());
        let mut cmd = Command::new(walship_bin());
        cmd.args([
            "--config",
            repo.config.to_str().unwrap(),
            "backup",
            "-d",
            &c,
            "--checkpoint",
            "fast",
            "--wal-timeout",
            "60s",
        ])
        .envs(repo.env());
        let wrong = cmd.env("PGPASSWORD", "wrong").output().unwrap();
        assert!(
            !wrong.status.success(),
            "{method}: a wrong password was accepted"
        );
        assert!(
            !String::from_utf8_lossy(&wrong.stderr).contains("wrong"),
            "the password leaked"
        );
        let right = cmd.env("PGPASSWORD", "se'cret").output().unwrap();
        assert!(
            right.status.success(),
            "{method}: {}\n{}",
            describe(&right),
            primary.log_excerpt()
        );
    }
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path).unwrap();
    stat.blocks_available() as u64 * stat.fragment_size() as u64
}

#[test]
fn a_relation_larger_than_one_segment_file_round_trips() {
    let probe = pg_test_harness::test_dir("space");
    if free_bytes(probe.path()) < 4 << 30 {
        pg_test_harness::ci::skip_or_fail(
            "a_relation_larger_than_one_segment_file_round_trips needs 4 GiB free on the temp file system",
        );
        return;
    }
    let installs = pg_test_harness::installs_under_test();
    let install = installs.last().unwrap();
    let repo = TestRepo::local();
    // Load the big table without archiving its WAL (wal_level minimal, created and filled in
    // one transaction), so that only the backup carries its 1.1 GiB.
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=16")
        .setting("wal_level", "minimal")
        .setting("max_wal_senders", "0")
        .setting("archive_mode", "off")
        .start();
    primary.execute(
        "begin; create table big(i int, pad text); \
         insert into big select g, repeat('b', 1000) from generate_series(1, 1150000) g; commit",
    );
    let relpath = primary.query_string("select pg_relation_filepath('big')");
    primary.stop(StopMode::Fast);
    primary.append_conf("wal_level = replica");
    primary.append_conf("max_wal_senders = 10");
    primary.append_conf("archive_mode = on");
    primary.append_conf(&format!("archive_command = '{}'", repo.archive_command("")));
    primary.start();
    let before = primary.query_string("select count(*) || ':' || sum(i) from big");
    // The backup's memory stays bounded whatever the size of the database.
    let c = conn(&primary);
    let mut cmd = Command::new(walship_bin());
    cmd.args(["--config", repo.config.to_str().unwrap()])
        .args(["backup", "-d", &c, "--checkpoint", "fast", "--json"])
        .envs(repo.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let run = pg_test_harness::bench::measure(&mut cmd).unwrap();
    assert!(
        run.status.success(),
        "walship backup failed: {:?}",
        run.status
    );
    assert!(
        run.peak_rss_mib() <= 256.0,
        "walship backup peaked at {:.0} MiB",
        run.peak_rss_mib()
    );
    let out = repo.walship(&["info", "latest", "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["id"].as_str().unwrap().to_string();
    primary.stop(StopMode::Fast);
    let dir = pg_test_harness::test_dir("restored-big");
    let (manifest, data) = materialise(&repo, &id, dir.path());
    let second = format!("{relpath}.1");
    let segment = manifest
        .files
        .iter()
        .find(|f| f.path == second)
        .unwrap_or_else(|| panic!("{second} is not in the backup"));
    assert!(segment.size > 0);
    let first = manifest.files.iter().find(|f| f.path == relpath).unwrap();
    assert_eq!(first.size, 1 << 30);
    assert_eq!(
        std::fs::metadata(data.join(&second)).unwrap().len(),
        segment.size
    );
    let restored = recover_to_consistency(install, &data, &repo);
    assert_eq!(
        restored.query_string("select count(*) || ':' || sum(i) from big"),
        before
    );
    eprintln!(
        "PG{}: {} ({} bytes + {} bytes) backed up in {} bundles ({:.0} MiB peak RSS, {:?}) and restored",
        install.major,
        relpath,
        first.size,
        segment.size,
        manifest.bundles.len(),
        run.peak_rss_mib(),
        run.wall
    );
}

#[test]
fn a_postgres_restart_mid_backup_leaves_no_listed_backup() {
    let (repo, mut primary) = newest_archiving_cluster();
    primary.execute("create table t(i int, pad text)");
    primary.execute(
        "insert into t select g, repeat(md5(g::text), 8) from generate_series(1, 100000) g",
    );
    let c = conn(&primary);
    let child = Command::new(walship_bin())
        .args(["--config", repo.config.to_str().unwrap()])
        .args([
            "backup",
            "-d",
            &c,
            "--checkpoint",
            "fast",
            "--max-rate",
            "4096",
        ])
        .envs(repo.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    primary.stop(StopMode::Immediate);
    primary.start();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the backup survived a server restart?"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("walship backup: error"), "{stderr}");
    let list = repo.walship(&["list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    // A later backup succeeds and cleans up.
    backup(&repo, &primary, &[]);
    let out = repo.walship(&["list", "--incomplete", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
