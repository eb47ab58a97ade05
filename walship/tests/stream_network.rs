//! `walship stream` through a network that fails: a TCP proxy between the stream and
//! Postgres cuts every connection under pgbench and refuses new ones for a few seconds. The
//! stream must reconnect with backoff and resume where it was: afterwards every segment in
//! the range is in the repository, contiguous, byte-identical to the primary's pg_wal, and no
//! stream tail is left beside a complete segment. Every major the harness finds.

mod stream_support;
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, PgInstall, StopMode};
use stream_support::proxy::Proxy;
use stream_support::*;
use support::{TestRepo, describe, wait_until};

/// How long the network stays down.
const OUTAGE: Duration = Duration::from_secs(4);

fn network_drop_test(install: &PgInstall, repo: &TestRepo) {
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        // Keep the segments in pg_wal so the test can compare them with the repository.
        .setting("wal_keep_size", "'1GB'")
        // Notice the dead connection soon (the proxy's shutdown normally tells it at once).
        .setting("wal_sender_timeout", "'5s'")
        .start();
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    let proxy = Proxy::start(format!("127.0.0.1:{}", primary.port()).parse().unwrap());
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        proxy.port()
    );
    let addr = format!("127.0.0.1:{}", pg_test_harness::ports::free_port());
    let mut stream = StreamProc::start_with(&primary, repo, &conn, &["--metrics-addr", &addr]);
    wait_streaming(&primary, &stream, "walship");
    let start = lsn(&primary.query_string("select pg_current_wal_lsn()::text"));

    let load = pgbench(&primary, &["-n", "-T", "20", "-c", "4", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let accepted = proxy.accepted();
    proxy.cut();
    let cut_at = Instant::now();
    let cut_lsn = lsn(&primary.query_string("select pg_current_wal_lsn()::text"));
    // While the network is down the stream keeps trying, spaced by its backoff.
    wait_until(
        Duration::from_secs(3),
        "the stream to notice the cut",
        || metric(&http_get(&addr, "/metrics").1, "walship_stream_up") == 0.0,
    );
    std::thread::sleep(OUTAGE.saturating_sub(cut_at.elapsed()));
    let (_, during) = http_get(&addr, "/metrics");
    let reconnects = metric(&during, "walship_stream_reconnects_total");
    assert!(
        reconnects >= 2.0,
        "refused connections must be retried: {reconnects} reconnects in {OUTAGE:?}\n{}",
        stream.log()
    );
    assert!(
        reconnects <= 12.0,
        "retries must back off, not spin: {reconnects} in {OUTAGE:?}"
    );
    assert_eq!(proxy.accepted(), accepted, "the proxy refused everything");
    proxy.heal();
    wait_streaming(&primary, &stream, "walship");
    assert!(proxy.accepted() > accepted, "reconnected through the proxy");

    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "pgbench: {}", describe(&out));
    let end = support::switch_wal(&primary);
    let target = lsn(&primary.query_string("select pg_current_wal_flush_lsn()::text"));
    assert!(target > cut_lsn + 2 * SEG, "too little WAL after the cut");
    wait_flushed(&primary, &stream, "walship", target);
    let code = stream.terminate();
    let log = stream.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("replication connection lost"), "{log}");
    primary.stop(StopMode::Fast);

    let wal = pg_wal_files(&primary);
    let n = assert_segments_match(repo, &wal, &end);
    let names = repo_wal_names(repo.local_root());
    let first = names
        .iter()
        .find(|n| support::is_segment_name(n))
        .expect("segments");
    assert!(
        first.as_str() <= seg_name(1, start).as_str(),
        "the range begins where streaming began ({first} > {})",
        seg_name(1, start)
    );
    // Bases and (local repositories) journals alike.
    for name in names
        .iter()
        .filter(|n| n.ends_with(".partial") || n.ends_with(".partial.journal"))
    {
        let segment = name
            .trim_end_matches(".journal")
            .trim_end_matches(".partial");
        assert!(
            !names.iter().any(|n| n == segment),
            "a stream tail {name} is left beside its complete segment"
        );
    }
    eprintln!(
        "PG{}: network cut for {OUTAGE:?} under pgbench ({reconnects} refused reconnects): {n} segments, no gap, identical",
        install.major
    );
}

#[test]
fn network_drop_is_survived_without_gap_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        network_drop_test(&install, &repo);
    }
}
