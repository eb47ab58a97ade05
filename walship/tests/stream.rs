//! `walship stream` against real Postgres: a crash of the primary under pgbench loses no
//! complete segment and at most the last interval of WAL; recovery from the stream's objects
//! (complete segments plus the `.partial` tail) gets every transaction acknowledged well
//! before the crash. Recovery is `walship restore --target latest` of a `walship backup`
//! taken while the stream ran, into a new directory. Every major the harness finds.

mod restore_support;
mod stream_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use stream_support::*;
use support::{TestRepo, describe, low_level_copy, wait_until};

fn crash_test(install: &PgInstall, repo: &TestRepo) {
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .start();
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    let port = pg_test_harness::ports::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut stream = StreamProc::start(&primary, repo, &["--metrics-addr", &addr]);
    wait_streaming(&primary, &stream, "walship");
    let slot = primary.query_string("select count(*) from pg_replication_slots where slot_name = 'walship' and slot_type = 'physical'");
    assert_eq!(slot, "1", "the stream creates its physical slot");

    take_backup(&primary, repo);

    let mut load = pgbench(&primary, &["-n", "-T", "120", "-c", "4", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let acknowledged: i64 = primary
        .query_string("select count(*) from pgbench_history")
        .parse()
        .unwrap();
    let ack_lsn = lsn(&primary.query_string("select pg_current_wal_flush_lsn()::text"));
    let (status, health) = http_get(&addr, "/health");
    assert!(status.contains("200"), "{status}: {health}");
    let (_, metrics) = http_get(&addr, "/metrics");
    let flushed = metric(&metrics, "walship_stream_flushed_lsn");
    assert!(
        flushed > 0.0 && metric(&metrics, "walship_stream_uploads_total{kind=\"segment\"}") >= 1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "walship_stream_up") == 1.0, "{metrics}");
    // More than two partial intervals (1 s each) before the crash.
    std::thread::sleep(Duration::from_millis(2500));
    primary.stop(StopMode::Immediate);
    let _ = load.kill();
    let _ = load.wait();
    let crash_lsn_seg = seg_name(1, ack_lsn);
    let wal = pg_wal_files(&primary);
    // The primary is gone for good.
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    let code = stream.terminate();
    let log = stream.log();
    assert_eq!(
        code,
        Some(0),
        "SIGTERM must end walship stream with 0:\n{log}"
    );

    // Every complete segment in the repository is byte-identical to what the primary wrote,
    // and there is no gap from the first to the one before the acknowledged position.
    let names = streamed_names(repo, &crash_lsn_seg);
    let complete: Vec<&String> = names
        .iter()
        .filter(|n| support::is_segment_name(n))
        .collect();
    assert!(
        complete.len() >= 3,
        "too few segments streamed: {names:?}\n{log}"
    );
    let first = segno_of(complete[0]);
    let mut compared = 0;
    for (i, name) in complete.iter().enumerate() {
        let expected = seg_name(1, (first + i as u64) * SEG);
        assert_eq!(**name, expected, "gap in the streamed segments: {names:?}");
        let bytes = fetch(repo, name, false);
        assert_eq!(bytes.len() as u64, SEG);
        if name.as_str() <= crash_lsn_seg.as_str()
            && let Some(original) = wal.get(name.as_str())
        {
            assert!(
                bytes == *original,
                "{name} differs from the primary's pg_wal"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "only {compared} segments still in pg_wal to compare"
    );
    let last_complete = complete.last().unwrap().as_str();
    assert!(
        last_complete >= seg_name(1, ack_lsn - ack_lsn % SEG - 1).as_str(),
        "complete segments end at {last_complete}, but WAL was acknowledged up to {ack_lsn:X}"
    );
    // The tail covers the acknowledged position.
    if last_complete < crash_lsn_seg.as_str() {
        // The tail: a base `.partial`, pieces `.partial.<offset>`, or both.
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("{crash_lsn_seg}.partial"))),
            "no tail for {crash_lsn_seg}: {names:?}"
        );
        let tail = fetch(repo, &crash_lsn_seg, true);
        let original = &wal[&crash_lsn_seg];
        let covered = (ack_lsn % SEG) as usize;
        assert_eq!(
            tail[..covered],
            original[..covered],
            "the tail of {crash_lsn_seg} differs from pg_wal up to the acknowledged position"
        );
    }

    // `walship restore --target latest` (segments + tail) has every acknowledged row.
    let (_dir, mut restored) = restore_latest(install, repo);
    let recovered: i64 = restored
        .query_string("select count(*) from pgbench_history")
        .parse()
        .unwrap();
    assert!(
        recovered >= acknowledged,
        "PG{}: recovered {recovered} transactions, {acknowledged} were acknowledged 2.5 s before the crash",
        install.major
    );
    eprintln!(
        "PG{}: {} segments streamed byte-identical; recovered {recovered} transactions (>= {acknowledged} acknowledged 2.5 s before the crash)",
        install.major,
        complete.len()
    );
    restored.stop(StopMode::Fast);
}

#[test]
fn primary_crash_under_pgbench_loses_nothing_acknowledged_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        crash_test(&install, &repo);
    }
}

fn restart_and_archive_test(install: &PgInstall, repo: &TestRepo) {
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        // Keep the segments in pg_wal so the test can compare them with the repository.
        .setting("wal_keep_size", "'1GB'")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start();
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    let mut stream = StreamProc::start(&primary, repo, &[]);
    wait_streaming(&primary, &stream, "walship");
    let load = |primary: &Cluster| {
        let out = pgbench(primary, &["-n", "-T", "3", "-c", "4", "-j", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pgbench: {}", describe(&out));
    };
    load(&primary);
    primary.stop(StopMode::Fast);
    primary.start();
    wait_streaming(&primary, &stream, "walship");
    load(&primary);
    primary.stop(StopMode::Immediate);
    primary.start();
    wait_streaming(&primary, &stream, "walship");
    load(&primary);
    let end = support::switch_wal(&primary);
    support::archive_everything(&primary, Duration::from_secs(120));
    let target = lsn(&primary.query_string("select pg_current_wal_flush_lsn()::text"));
    wait_flushed(&primary, &stream, "walship", target);
    let code = stream.terminate();
    let log = stream.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("replication connection lost"),
        "the restarts must have been noticed:\n{log}"
    );
    primary.stop(StopMode::Fast);
    let server_log = primary.log();
    assert!(
        !server_log.contains("archive command failed"),
        "walship archive failed beside the stream:\n{server_log}"
    );
    let wal = pg_wal_files(&primary);
    let n = assert_segments_match(repo, &wal, &end);
    eprintln!(
        "PG{}: two restarts and walship archive beside the stream: {n} segments, no gap, identical",
        install.major
    );
}

#[test]
fn primary_crash_with_a_seaweedfs_repository() {
    let Some(repo) = TestRepo::s3() else { return };
    let installs = pg_test_harness::installs_under_test();
    crash_test(installs.last().expect("a Postgres install"), &repo);
}

#[test]
fn restarts_and_concurrent_archive_leave_no_gap_or_conflict_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        restart_and_archive_test(&install, &repo);
    }
}

/// `walship backup` of `cluster` into `repo` (the stream supplies its WAL), under another
/// application_name than the stream's.
fn take_backup(cluster: &Cluster, repo: &TestRepo) {
    let conn = format!("{} application_name=walship_backup", cluster.connstr());
    let out = repo.walship(&[
        "backup",
        "-d",
        &conn,
        "--checkpoint",
        "fast",
        "--wal-timeout",
        "120s",
    ]);
    assert!(out.status.success(), "walship backup: {}", describe(&out));
}

/// `walship restore --target latest` into a new directory, started (not archiving, no
/// synchronous standby) until recovery has ended.
fn restore_latest(install: &PgInstall, repo: &TestRepo) -> (tempfile::TempDir, Cluster) {
    let dir = pg_test_harness::test_dir("stream-restored");
    let to = dir.path().join("data");
    let out = restore_support::restore(repo, &to, &["--target", "latest"]);
    assert!(
        out.status.success(),
        "PG{} walship restore --target latest: {}",
        install.major,
        describe(&out)
    );
    let mut restored = Cluster::from_data_dir(install, &to);
    restored.append_conf("synchronous_standby_names = ''");
    restored.append_conf("archive_mode = off");
    restored.start();
    wait_until(Duration::from_secs(180), "recovery to end", || {
        restored.query_string("select pg_is_in_recovery()") == "f"
    });
    // The restored cluster lives in `dir`, which must outlive it.
    (dir, restored)
}

fn synchronous_test(install: &PgInstall, repo: &TestRepo) {
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("synchronous_standby_names", "'walship'")
        .start();
    let mut stream = StreamProc::start(&primary, repo, &["--synchronous"]);
    wait_streaming(&primary, &stream, "walship");
    wait_sync_standby(&primary);
    primary.execute("create table acked(writer int, n int)");
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    take_backup(&primary, repo);

    let mut load = pgbench(&primary, &["-n", "-T", "120", "-c", "4", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let writers = spawn_ack_writers(&primary, 3);
    std::thread::sleep(Duration::from_secs(6));
    primary.stop(StopMode::Immediate);
    let acked: Vec<i32> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let _ = load.kill();
    let _ = load.wait();
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    let code = stream.terminate();
    assert_eq!(code, Some(0), "{}", stream.log());
    assert!(acked.iter().all(|&n| n > 10), "too few commits: {acked:?}");

    let (_dir, mut restored) = restore_latest(install, repo);
    assert_acked_rows(&restored, &acked, &format!("PG{}", install.major));
    let total = acked.iter().sum::<i32>();
    eprintln!(
        "PG{}: --synchronous: all {total} acknowledged commits survived the crash (3 writers beside pgbench -c 4: mean commit latency {:.1} ms, local repository; not a benchmark)",
        install.major,
        6000.0 * 3.0 / f64::from(total)
    );
    restored.stop(StopMode::Fast);
}

#[test]
fn synchronous_stream_keeps_every_acknowledged_commit_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        synchronous_test(&install, &repo);
    }
}

fn timeline_test(install: &PgInstall, repo: &TestRepo) {
    let mut primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("wal_keep_size", "'1GB'")
        .start();
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    // A standby of the primary, and the stream reading from the standby.
    let standby_dir = pg_test_harness::test_dir("stream-standby");
    let standby_data = standby_dir.path().join("data");
    low_level_copy(&primary, &standby_data);
    std::fs::write(standby_data.join("standby.signal"), b"").unwrap();
    support::chown_tree_like(&standby_data, standby_dir.path());
    let mut standby = Cluster::from_data_dir(install, &standby_data);
    standby.append_conf(&format!(
        "primary_conninfo = '{} application_name=standby'",
        primary.connstr()
    ));
    standby.start();
    wait_streaming(&primary, &StreamProc::none(), "standby");
    let mut stream = StreamProc::start(&standby, repo, &[]);
    wait_streaming(&standby, &stream, "walship");
    // The base for the restore at the end: a backup on timeline 1.
    take_backup(&primary, repo);
    let load = |cluster: &Cluster| {
        let out = pgbench(cluster, &["-n", "-T", "2", "-c", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pgbench: {}", describe(&out));
    };
    load(&primary);
    primary.stop(StopMode::Fast);
    standby.execute("select pg_promote()");
    wait_until(Duration::from_secs(60), "promotion", || {
        standby.query_string("select pg_is_in_recovery()") == "f"
    });
    load(&standby);
    let rows = standby.query_string("select count(*) from pgbench_history");
    support::switch_wal(&standby);
    let target = lsn(&standby.query_string("select pg_current_wal_flush_lsn()::text"));
    wait_flushed(&standby, &stream, "walship", target);
    let code = stream.terminate();
    let log = stream.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("following timeline 2"), "{log}");
    let names = repo_wal_names(repo.local_root());
    assert!(names.contains(&"00000002.history".to_string()), "{names:?}");
    let history = fetch(repo, "00000002.history", false);
    assert_eq!(
        history,
        std::fs::read(standby.data_dir().join("pg_wal/00000002.history")).unwrap()
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("00000001") && support::is_segment_name(n))
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("00000002") && support::is_segment_name(n))
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("00000001") && n.ends_with(".partial")),
        "the stream's own tail of timeline 1 must be gone once timeline 2 holds that WAL: {names:?}"
    );
    standby.stop(StopMode::Fast);

    let (_dir, mut restored) = restore_latest(install, repo);
    assert_eq!(
        restored.query_string("select count(*) from pgbench_history"),
        rows,
        "restore across the timeline switch"
    );
    let tli = restored.query_string("select timeline_id from pg_control_checkpoint()");
    assert!(tli.parse::<u32>().unwrap() >= 2, "timeline {tli}");
    eprintln!(
        "PG{}: followed the promotion to timeline 2; restore across it has all {rows} rows",
        install.major
    );
    restored.stop(StopMode::Fast);
}

#[test]
fn timeline_switch_of_a_promoted_standby_is_followed_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        timeline_test(&install, &repo);
    }
}
