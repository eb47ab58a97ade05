//! The `bench stream` benchmark still works: every series for a few seconds with this build's
//! `walship stream` (default mode and `--synchronous`, filesystem and SeaweedFS) and
//! `pg_receivewal --synchronous`. Speed is not checked here (debug build, seconds of load);
//! the bench itself checks that the stream stored everything the primary wrote.

use std::path::Path;

use pg_test_harness::bench::stream::{LagSeries, StreamBenchConfig, SyncSeries, run_stream};

fn assert_lag(what: &str, s: &LagSeries) {
    assert!(!s.lags_s.is_empty(), "{what}: no lag sample");
    assert!(s.lags_s.iter().all(|l| *l >= 0.0), "{what}: {s:?}");
    assert!(s.tps > 0.0 && s.wal_mb_s > 0.0, "{what}: {s:?}");
    assert!(s.peak_rss_mib > 1.0, "{what}: {s:?}");
}

fn assert_sync(what: &str, s: &SyncSeries, standby: bool) {
    assert!(s.tps > 0.0 && s.latency_ms > 0.0, "{what}: {s:?}");
    assert!(s.latency_p99_ms >= s.latency_ms * 0.5, "{what}: {s:?}");
    assert_eq!(s.peak_rss_mib > 1.0, standby, "{what}: {s:?}");
}

#[test]
fn bench_stream_runs_for_a_few_seconds() {
    let s3 = pg_test_harness::s3_under_test();
    let config = StreamBenchConfig {
        seconds: 3,
        clients: 2,
        walship: Some(Path::new(env!("CARGO_BIN_EXE_walship")).to_path_buf()),
    };
    let report = run_stream(&config, s3.as_ref())
        .unwrap_or_else(|e| panic!("bench stream --seconds 3: {e:#}"));
    println!("{}", report.render());
    assert_lag("default, filesystem", &report.lag_fs);
    assert_sync("--synchronous, filesystem", &report.sync_fs, true);
    assert_sync("pg_receivewal", &report.receivewal, true);
    assert_sync("no standby", &report.no_standby, false);
    match (&s3, &report.lag_s3, &report.sync_s3) {
        (Some(_), Some(lag), Some(sync)) => {
            assert_lag("default, S3", lag);
            assert_sync("--synchronous, S3", sync, true);
        }
        (None, None, None) => {}
        _ => panic!("S3 series present without S3, or missing with it"),
    }
    let text = report.render();
    assert!(
        text.contains("aims:")
            && text.contains("repository lag p99 s")
            && text.contains("commit latency p99 ms")
            && text.contains("x pg_receivewal --synchronous (filesystem): "),
        "{text}"
    );
}
