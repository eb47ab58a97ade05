//! The `bench backup` and `bench restore` benchmarks still work: a pgbench database of scale 1
//! backed up by this build's `walship backup` (filesystem and SeaweedFS), pg_basebackup and
//! pgBackRest (when installed), and restored by `walship restore` and `pgbackrest restore`,
//! each restore started by Postgres and its rows checked by the bench. Speed is not checked
//! here (debug build, tiny database); that every series ran and measured something is. And
//! `bench backup --incremental` (PostgreSQL 17+): full, incremental, full, both restores checked.
//! And `bench verify`: walship and pgBackRest each find their repositories (filesystem and
//! SeaweedFS over HTTPS) sound, the bench checking what each says it checked.

use std::path::Path;

use pg_test_harness::bench::backup::run_backup;
use pg_test_harness::bench::backup_db::Run;
use pg_test_harness::bench::incremental::run_incremental;
use pg_test_harness::bench::restore::run_restore;
use pg_test_harness::bench::verify::run_verify;
use pg_test_harness::bench::walship_bin::BenchArgs;

const SCALE: usize = 1;

fn assert_run(what: &str, run: &Run) {
    assert!(run.run.status.success(), "{what}: {run:?}");
    assert!(run.run.wall.as_secs_f64() > 0.0, "{what}: {run:?}");
    assert!(run.run.peak_rss_mib() > 0.0, "{what}: {run:?}");
    assert!(run.stored_bytes > 0, "{what}: {run:?}");
}

fn has_pgbackrest() -> bool {
    pg_test_harness::bench::find_peer("pgbackrest").is_some()
}

#[test]
fn bench_backup_runs_at_scale_1() {
    // HTTPS, as `bench backup` runs it: pgBackRest backs up to the same SeaweedFS.
    let s3 = pg_test_harness::s3_https_under_test();
    let walship = Path::new(env!("CARGO_BIN_EXE_walship"));
    let report = run_backup(SCALE, s3.as_ref(), Some(walship), true)
        .unwrap_or_else(|e| panic!("bench backup --scale {SCALE}: {e:#}"));
    println!("{}", report.render());
    assert_eq!(report.scale, SCALE);
    assert!(report.data_bytes > 15_000_000, "{}", report.data_bytes);
    assert_run("walship backup, filesystem", &report.walship_file);
    assert_eq!(report.walship_s3.is_some(), s3.is_some());
    if let Some(run) = &report.walship_s3 {
        assert_run("walship backup, S3", run);
    }
    assert_run("pg_basebackup", &report.basebackup);
    assert_eq!(report.pgbackrest.is_some(), has_pgbackrest());
    if let Some(run) = &report.pgbackrest {
        assert_run("pgbackrest backup", run);
    }
    assert_eq!(
        report.pgbackrest_s3.is_some(),
        has_pgbackrest() && s3.is_some()
    );
    if let Some(run) = &report.pgbackrest_s3 {
        assert_run("pgbackrest backup to SeaweedFS", run);
    }
    let text = report.render();
    assert!(
        text.contains("aims:") && text.contains("peak RSS MiB"),
        "{text}"
    );
}

#[test]
fn bench_restore_runs_at_scale_1() {
    let s3 = pg_test_harness::s3_under_test();
    let walship = Path::new(env!("CARGO_BIN_EXE_walship"));
    let report = run_restore(SCALE, 2, s3.as_ref(), Some(walship), true)
        .unwrap_or_else(|e| panic!("bench restore --scale {SCALE}: {e:#}"));
    println!("{}", report.render());
    assert_eq!(report.rounds, 2);
    assert_run("walship restore, filesystem", &report.walship_file);
    assert_eq!(report.walship_s3.is_some(), s3.is_some());
    if let Some(run) = &report.walship_s3 {
        assert_run("walship restore, S3", run);
    }
    assert_eq!(report.pgbackrest.is_some(), has_pgbackrest());
    if let Some(run) = &report.pgbackrest {
        assert_run("pgbackrest restore", run);
    }
    let encrypted = report
        .walship_file_encrypted
        .as_ref()
        .expect("--encrypt restores from the encrypted repository too");
    assert_run("walship restore, filesystem, encrypted", encrypted);
    // Every restored directory was started and checked by Postgres.
    // Two rounds, each series (plain and encrypted filesystem, S3, pgBackRest) taking its
    // turn in each.
    let expected = 2 * (2 + usize::from(s3.is_some()) + usize::from(has_pgbackrest()));
    assert_eq!(report.recoveries.len(), expected, "{:?}", report.recoveries);
    let text = report.render();
    assert!(
        text.contains("aims:") && text.contains("restored MiB"),
        "{text}"
    );
}

#[test]
fn bench_backup_incremental_runs_at_scale_1() {
    if !pg_test_harness::installs().iter().any(|i| i.major >= 17) {
        pg_test_harness::ci::skip_or_fail("bench backup --incremental needs PostgreSQL 17+");
        return;
    }
    let walship = Path::new(env!("CARGO_BIN_EXE_walship"));
    let report = run_incremental(SCALE, 1, Some(walship))
        .unwrap_or_else(|e| panic!("bench backup --incremental --scale {SCALE}: {e:#}"));
    println!("{}", report.render());
    assert!(report.major >= 17, "{}", report.major);
    assert_eq!(report.updated_rows, 2_000);
    for (what, run) in [
        ("full", &report.full),
        ("incremental", &report.incremental),
        ("full after", &report.full_after),
        ("chain restore", &report.chain_restore),
        ("full restore", &report.full_restore),
    ] {
        assert_run(what, run);
    }
    assert!(
        report.incremental.stored_bytes < report.full.stored_bytes,
        "{report:?}"
    );
    // Both restores were started by Postgres and held the updated rows.
    assert_eq!(report.recoveries.len(), 2, "{:?}", report.recoveries);
    let text = report.render();
    assert!(
        text.contains("incremental stored bytes <=") && text.contains("chain restore time <="),
        "{text}"
    );
}

#[test]
fn bench_verify_runs_at_scale_1() {
    if !has_pgbackrest() {
        pg_test_harness::ci::skip_or_fail("bench verify compares with pgbackrest verify");
        return;
    }
    let s3 = pg_test_harness::s3_https_under_test();
    let args = BenchArgs {
        scale: Some(SCALE),
        segments: Some(2),
        walship: Some(env!("CARGO_BIN_EXE_walship").into()),
        ..BenchArgs::default()
    };
    let report = run_verify(&args, s3.as_ref())
        .unwrap_or_else(|e| panic!("bench verify --scale {SCALE}: {e:#}"));
    let text = report.render();
    println!("{text}");
    // The bench fails unless each verify called its repository sound; here: each ran.
    assert!(report.walship_file.run.status.success());
    assert!(
        report.pgbackrest.checked.contains("status: valid"),
        "{text}"
    );
    assert_eq!(report.walship_s3.is_some(), s3.is_some());
    assert_eq!(report.pgbackrest_s3.is_some(), s3.is_some());
    if let Some(peer) = &report.pgbackrest_s3 {
        assert!(peer.checked.contains("status: valid"), "{text}");
    }
    assert!(text.contains("(same storage)"), "{text}");
}
