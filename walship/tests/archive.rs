//! `walship archive` as Postgres's archive_command, against real Postgres and real SeaweedFS:
//! every segment Postgres marks archived is in the repository byte for byte, outages lose
//! nothing, and every unsafe input is refused.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use support::{TestRepo, archive_everything, describe, done_files, is_segment_name, wait_until};

/// Starts a cluster of `install` that archives with `walship archive <extra>` into `repo`,
/// keeping every segment in pg_wal so the test can compare them with the archive.
fn archiving_cluster(
    install: &PgInstall,
    repo: &TestRepo,
    extra: &str,
    wal_segsize_mb: u32,
) -> Cluster {
    Cluster::builder(install)
        .initdb_arg(&format!("--wal-segsize={wal_segsize_mb}"))
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command(extra)),
        )
        .setting("wal_keep_size", "'2GB'")
        .setting("max_wal_size", "'4GB'")
        .setting("checkpoint_timeout", "'1h'")
        .start()
}

/// Runs pgbench against `cluster` until at least `segments` more segments are archived.
fn pgbench_until_archived(cluster: &Cluster, segments: usize) {
    let pgbench = pg_test_harness::client_tool("pgbench");
    let port = cluster.port().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(&pgbench)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-n"])
            .args(args)
            .arg("postgres")
            .output()
            .expect("run pgbench");
        assert!(out.status.success(), "pgbench {args:?}: {}", describe(&out));
    };
    let out = Command::new(&pgbench)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-i",
            "-s",
            "2",
            "postgres",
        ])
        .output()
        .expect("run pgbench -i");
    assert!(out.status.success(), "pgbench -i: {}", describe(&out));
    let start = done_files(cluster).len();
    while done_files(cluster)
        .iter()
        .filter(|n| is_segment_name(n))
        .count()
        < start + segments
    {
        run(&["-T", "2", "-c", "4", "-j", "2"]);
        cluster.execute("select pg_switch_wal()");
    }
    archive_everything(cluster, Duration::from_secs(120));
}

/// Fetches every archived segment back with `walship fetch` and compares it with pg_wal.
fn assert_archive_matches_pg_wal(cluster: &Cluster, repo: &TestRepo, min_segments: usize) {
    let out_dir = pg_test_harness::test_dir("fetched");
    let pg_wal = cluster.data_dir().join("pg_wal");
    let segments: Vec<String> = done_files(cluster)
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    assert!(
        segments.len() >= min_segments,
        "only {} segments archived",
        segments.len()
    );
    for name in &segments {
        let dest = out_dir.path().join(name);
        let out = repo.walship(&["fetch", name, dest.to_str().unwrap()]);
        assert!(out.status.success(), "fetch {name}: {}", describe(&out));
        let original =
            std::fs::read(pg_wal.join(name)).unwrap_or_else(|e| panic!("{name} left pg_wal: {e}"));
        let fetched = std::fs::read(&dest).unwrap();
        assert!(
            original == fetched,
            "{name}: fetched bytes differ from pg_wal"
        );
    }
    if cluster.install().major == 15 {
        waldump_reads(&out_dir.path().join(segments.last().unwrap()));
    }
}

/// Debian's pg_waldump (version 15) reads a PG15 segment we fetched back.
fn waldump_reads(segment: &Path) {
    let out = Command::new(pg_test_harness::client_tool("pg_waldump"))
        .arg("--stats")
        .arg(segment)
        .output()
        .expect("run pg_waldump");
    assert!(
        out.status.success(),
        "pg_waldump {}: {}",
        segment.display(),
        describe(&out)
    );
}

#[test]
fn postgres_archives_under_pgbench_sync_and_async_every_major() {
    let Some(repo_s3) = TestRepo::s3() else {
        return;
    };
    drop(repo_s3);
    for install in pg_test_harness::installs_under_test() {
        for extra in ["", "--async"] {
            let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
            let cluster = archiving_cluster(&install, &repo, extra, 1);
            pgbench_until_archived(&cluster, 30);
            assert_archive_matches_pg_wal(&cluster, &repo, 30);
            eprintln!(
                "PG{} {extra:8} S3: {} files archived and verified",
                install.major,
                done_files(&cluster).len()
            );
        }
    }
}

#[test]
fn postgres_archives_16mib_segments_to_a_local_repository() {
    let installs = pg_test_harness::installs_under_test();
    let install = installs
        .iter()
        .find(|i| i.major == 15)
        .unwrap_or(&installs[0]);
    let repo = TestRepo::local();
    let cluster = archiving_cluster(install, &repo, "--async", 16);
    pgbench_until_archived(&cluster, 4);
    assert_archive_matches_pg_wal(&cluster, &repo, 4);
    // Objects and directories are group-readable, never world-readable.
    let segment = done_files(&cluster)
        .into_iter()
        .find(|n| is_segment_name(n))
        .unwrap();
    let object = repo
        .local_root()
        .join("wal")
        .join(&segment[..16])
        .join(&segment);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&object).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640, "{}", object.display());
}

/// A cluster archiving `--async` into two repositories (a local one, then S3, one command
/// after the other): what the first call pushed ahead must not count as stored in the second.
#[test]
fn async_archiving_into_two_repositories_fills_both() {
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs.iter().find(|i| i.major == 15).or(installs.first()) else {
        return;
    };
    let Some(s3) = TestRepo::s3() else {
        return;
    };
    let local = TestRepo::local();
    let both = format!(
        "{} && {}",
        local.archive_command("--async"),
        s3.archive_command("--async")
    );
    let cluster = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting("archive_command", &format!("'{both}'"))
        .setting("wal_keep_size", "'2GB'")
        .setting("checkpoint_timeout", "'1h'")
        .start();
    pgbench_until_archived(&cluster, 12);
    assert_archive_matches_pg_wal(&cluster, &local, 12);
    assert_archive_matches_pg_wal(&cluster, &s3, 12);
}

#[test]
fn s3_outage_while_archiving_loses_nothing() {
    let Some(mut repo) = TestRepo::s3() else {
        return;
    };
    let installs = pg_test_harness::installs_under_test();
    let install = installs.last().unwrap();
    let cluster = archiving_cluster(install, &repo, "", 1);
    cluster.execute("create table t(i int)");
    archive_everything(&cluster, Duration::from_secs(60));

    repo.s3.as_mut().unwrap().stop();
    for i in 0..5 {
        cluster.execute(&format!(
            "insert into t select generate_series(1, 1000) + {i} * 1000"
        ));
        cluster.execute("select pg_switch_wal()");
    }
    wait_until(
        Duration::from_secs(60),
        "archive failures to be counted",
        || cluster.query_string("select failed_count from pg_stat_archiver") != "0",
    );
    let waiting = support::ready_files(&cluster);
    assert!(
        waiting.len() >= 5,
        "Postgres must keep the unarchived files: {waiting:?}"
    );
    for name in &waiting {
        assert!(
            cluster.data_dir().join("pg_wal").join(name).exists(),
            "{name} was removed"
        );
    }

    repo.s3.as_mut().unwrap().restart();
    archive_everything(&cluster, Duration::from_secs(120));
    for name in waiting {
        let dest = repo.dir.path().join(&name);
        let out = repo.walship(&["fetch", &name, dest.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "fetch {name} after outage: {}",
            describe(&out)
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(cluster.data_dir().join("pg_wal").join(&name)).unwrap(),
            "{name}"
        );
    }
    cluster_stop(cluster);
}

fn cluster_stop(mut cluster: Cluster) {
    cluster.stop(StopMode::Fast);
}
