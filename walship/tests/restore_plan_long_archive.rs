//! `walship restore --dry-run` plans against an archive of more than 500 segments: the plan
//! reads every one of them, from the backup to the end of the archive.
//! One major (15 when found), real Postgres, real SeaweedFS.
//!
//! How long the plan takes (the restore issue's aim: under 10 seconds) is measured by
//! `bench plan` on a release build; this debug-build test prints its time only.

mod restore_support;
mod support;

use std::time::{Duration, Instant};

use pg_test_harness::Cluster;
use restore_support::{restore, take_backup};
use support::{TestRepo, archive_everything, describe};

#[test]
fn dry_run_reads_an_archive_of_over_500_segments() {
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs.iter().find(|i| i.major == 15).or(installs.first()) else {
        return;
    };
    let Some(repo) = TestRepo::s3() else {
        return;
    };
    let cluster = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("--async")),
        )
        .setting("checkpoint_timeout", "'1h'")
        .start();
    cluster.execute("create table tick (n int)");
    let backup = take_backup(&cluster, &repo);
    let start = backup
        .stop_lsn
        .segno(walship_common::pg::WalSegSize::from_mib(1).unwrap());
    for n in 0..520 {
        cluster.execute(&format!(
            "insert into tick values ({n}); select pg_switch_wal()"
        ));
    }
    archive_everything(&cluster, Duration::from_secs(600));
    let end: u64 = cluster
        .query_string("select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 17, 8))::bit(32)::bigint + ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 9, 8))::bit(32)::bigint * 4096")
        .parse()
        .unwrap();
    assert!(
        end - start.0 >= 500,
        "only {} segments after the backup",
        end - start.0
    );

    let dir = pg_test_harness::test_dir("plan-time");
    let started = Instant::now();
    let out = restore(
        &repo,
        &dir.path().join("data"),
        &["--target", "latest", "--dry-run", "--json"],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let segments: u64 = plan["wal_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["segments"].as_u64().unwrap())
        .sum();
    eprintln!("plan over {segments} segments took {took:?} (debug build)");
    // The plan covers the backup's first segment up to the last one archived.
    assert!(
        segments >= end - start.0,
        "{segments} segments planned\n{plan}"
    );
}
