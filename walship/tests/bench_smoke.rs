//! The `bench archive` benchmark still works: 4 real segments pushed through this build's
//! `walship archive` (sync and `--async`, filesystem and SeaweedFS) and through pgBackRest
//! when it is installed; with `--encrypt` (as here), also into an encrypted repository and
//! pgBackRest with `aes-256-cbc`. Speed is not checked here (debug build); the bench checks each
//! pushed segment's exit code and fetches the last one back.

use std::path::Path;

use pg_test_harness::bench::archive::{ArchiveReport, Series, run_archive};

const SEGMENTS: usize = 4;

fn assert_series(what: &str, series: &Series) {
    assert_eq!(series.runs.len(), SEGMENTS, "{what}: one call per segment");
    assert!(series.runs.mb_per_s() > 0.0, "{what}: {series:?}");
    assert!(series.runs.max_rss_mib() > 0.0, "{what}: {series:?}");
}

#[test]
fn bench_archive_runs_on_four_segments() {
    let s3 = pg_test_harness::s3_under_test();
    let walship = Path::new(env!("CARGO_BIN_EXE_walship"));
    let report: ArchiveReport = run_archive(SEGMENTS, s3.as_ref(), Some(walship), true)
        .unwrap_or_else(|e| panic!("bench archive --segments {SEGMENTS}: {e:#}"));
    println!("{}", report.render());
    assert_eq!(report.segments, SEGMENTS);
    assert_series("sync, filesystem", &report.sync_fs);
    assert_series("async, filesystem", &report.async_fs);
    for (what, series) in [
        ("sync, S3", &report.sync_s3),
        ("async, S3", &report.async_s3),
    ] {
        match (&s3, series) {
            (Some(_), Some(series)) => assert_series(what, series),
            (None, None) => {}
            _ => panic!("{what}: S3 series present without S3, or missing with it"),
        }
    }
    let stored = report
        .sync_fs
        .stored_bytes
        .expect("a filesystem repository has a size");
    assert!(
        stored > 0 && stored < SEGMENTS as u64 * 16 * 1024 * 1024 * 2,
        "{stored}"
    );
    // --encrypt: walship into an encrypted repository, and pgBackRest with aes-256-cbc.
    assert_series(
        "sync, filesystem, encrypted",
        report
            .sync_fs_encrypted
            .as_ref()
            .expect("encrypted series ran"),
    );
    if pg_test_harness::bench::find_peer("pgbackrest").is_some() {
        assert_series(
            "pgbackrest sync aes-256-cbc",
            report
                .peer_sync_encrypted
                .as_ref()
                .expect("pgbackrest aes-256-cbc ran"),
        );
        assert_series(
            "pgbackrest sync",
            report.peer_sync.as_ref().expect("pgbackrest ran"),
        );
        assert_series(
            "pgbackrest async",
            report.peer_async.as_ref().expect("pgbackrest ran"),
        );
    }
    let text = report.render();
    assert!(
        text.contains("aims:")
            && text.contains("latency p99 ms")
            && text.contains("walship unencrypted")
            && text.contains("aes-256-cbc"),
        "{text}"
    );
}

/// The `bench fetch` benchmark still works on 2 segments: every way recovers the base copy
/// (each recovery is checked against the primary's rows by the bench itself, and every way
/// must end redo at the same LSN), and the report prints the aim, the machine's floor and the
/// CPU time the hypervisor took during the rounds.
#[test]
fn bench_fetch_runs_every_way_on_two_segments() {
    use pg_test_harness::bench::fetch::{Way, run_fetch};
    let walship = Path::new(env!("CARGO_BIN_EXE_walship"));
    let report = run_fetch(2, 1, Some(walship), false)
        .unwrap_or_else(|e| panic!("bench fetch --segments 2 --rounds 1: {e:#}"));
    let text = report.render();
    println!("{text}");
    for way in Way::ALL {
        let runs = report.recoveries.iter().filter(|(w, _)| *w == way).count();
        assert_eq!(runs, 1, "{way:?} recovered once: {text}");
    }
    assert!(report.replayed_segments >= 2, "{text}");
    assert!(text.contains("aim: replay through walship fetch"), "{text}");
    assert!(
        text.contains("the floor of any restore_command that decompresses"),
        "{text}"
    );
    assert!(
        text.contains("the hypervisor took") && text.contains("(st "),
        "the CPU stolen by the host is reported with the rounds: {text}"
    );
}
