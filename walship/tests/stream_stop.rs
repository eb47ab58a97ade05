//! Stopping `walship stream` during a storage outage (issue 18, item 14), through the binary,
//! with real Postgres and SeaweedFS behind a TCP proxy that the test cuts: after SIGTERM the
//! stream gives up storing after `stream.stop_timeout` and exits 3 (it used to retry forever),
//! having lost nothing it acknowledged: every byte up to the flush position the server last
//! got is in the repository, and the slot keeps the rest. The same when the storage is silent
//! (an upload hangs in flight). A second signal exits at once with 130 (it used to be
//! swallowed).

mod stream_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pg_test_harness::Cluster;
use stream_support::proxy::Proxy;
use stream_support::*;
use support::{TestRepo, wait_until};

/// The stop timeout the test configures.
const STOP: Duration = Duration::from_secs(4);

/// Points the repository's config at `endpoint`, with a short stop timeout.
fn config_through(repo: &TestRepo, endpoint: &str) {
    let s3 = repo.s3.as_ref().unwrap();
    std::fs::write(
        &repo.config,
        format!(
            "repo = \"{}\"\n[s3]\nendpoint = \"{endpoint}\"\nregion = \"{}\"\n\
             connect_timeout = \"1s\"\noperation_timeout = \"10s\"\nmax_attempts = 2\n\
             [stream]\nstop_timeout = \"{}s\"\n",
            repo.url,
            s3.region,
            STOP.as_secs()
        ),
    )
    .unwrap();
}

/// A `walship stream` process the test signals itself.
struct Stream {
    child: Child,
    log: std::path::PathBuf,
}

impl Stream {
    fn start(cluster: &Cluster, repo: &TestRepo, extra: &[&str]) -> Stream {
        let log = repo
            .dir
            .path()
            .join(format!("stream-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).unwrap();
        support::chown_tree_like(&log, repo.dir.path());
        let mut cmd = Command::new(support::walship_bin());
        cmd.arg("--config")
            .arg(&repo.config)
            .args(["-v", "stream", "-d", &cluster.connstr()])
            .args(extra)
            .envs(repo.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        cluster.run_as_owner(&mut cmd);
        Stream {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the exit (at most `limit`, then kills it and panics): the code and when.
    fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Instant) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), Instant::now());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "walship stream still running {limit:?} after the signal:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flush_lsn(cluster: &Cluster) -> u64 {
    lsn(&cluster.query_string(
        "select coalesce(max(flush_lsn)::text, '0/0') from pg_stat_replication where application_name = 'walship'",
    ))
}

fn slot_lsn(cluster: &Cluster) -> u64 {
    lsn(&cluster.query_string(
        "select coalesce(max(restart_lsn)::text, '0/0') from pg_replication_slots where slot_name = 'walship'",
    ))
}

/// How the storage fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Connections refused: every upload fails at once and is retried.
    Refused,
    /// Connections accepted, never answered: an upload hangs in flight.
    Silent,
}

/// Streams, then cuts the storage off and writes more WAL, so the uploader is failing.
/// Returns where the slot stood when streaming began.
fn stream_into_outage(
    primary: &Cluster,
    stream: &Stream,
    proxy: &Proxy,
    table: &str,
    outage: Outage,
) -> u64 {
    let as_proc = StreamProc::none();
    wait_streaming(primary, &as_proc, "walship");
    let began = slot_lsn(primary);
    primary.execute(&format!("create table {table} (id int, pad text)"));
    primary.execute(&format!(
        "insert into {table} select g, repeat('x', 200) from generate_series(1, 5000) g"
    ));
    let target = lsn(&primary.query_string("select pg_current_wal_lsn()::text"));
    wait_flushed(primary, &as_proc, "walship", target);
    match outage {
        Outage::Refused => proxy.cut(),
        Outage::Silent => proxy.stall(),
    }
    primary.execute(&format!(
        "insert into {table} select g, repeat('y', 200) from generate_series(1, 5000) g"
    ));
    primary.query_string("select pg_switch_wal()::text");
    primary.execute(&format!("insert into {table} values (0, 'tail')"));
    match outage {
        Outage::Refused => wait_until(Duration::from_secs(30), "uploads to fail", || {
            stream.log().contains("retrying in")
        }),
        // The upload started after the stall hangs (the S3 operation timeout is 10 s).
        Outage::Silent => std::thread::sleep(Duration::from_secs(2)),
    }
    began
}

#[test]
fn stream_stops_within_its_stop_timeout_during_a_storage_outage() {
    let Some(repo) = TestRepo::s3() else {
        return;
    };
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs
        .iter()
        .find(|i| i.major == 15)
        .or_else(|| installs.last())
    else {
        return;
    };
    let proxy = Proxy::start(repo.s3.as_ref().unwrap().addr());
    config_through(&repo, &format!("http://127.0.0.1:{}", proxy.port()));
    let primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("wal_keep_size", "'1GB'")
        .start();

    // One signal: the stream keeps trying for the stop timeout, then gives up, exit 3.
    let mut stream = Stream::start(&primary, &repo, &[]);
    let start = stream_into_outage(&primary, &stream, &proxy, "first", Outage::Refused);
    let acked = flush_lsn(&primary);
    assert!(acked > start, "nothing acknowledged before the outage");
    let signalled = Instant::now();
    stream.signal(Signal::SIGTERM);
    let (code, exited) = stream.wait_exit(STOP + Duration::from_secs(40));
    let took = exited - signalled;
    let log = stream.log();
    assert_eq!(code, Some(3), "{log}");
    assert!(
        took >= STOP && took < STOP + Duration::from_secs(6),
        "stopped {took:?} after SIGTERM with a stop timeout of {STOP:?}:\n{log}"
    );
    assert!(log.contains("gave up storing"), "{log}");
    // What the server was told is stored: the slot's position after the stream is gone.
    let acked = acked.max(slot_lsn(&primary));

    // Nothing acknowledged is lost: every byte up to the last reported flush is stored.
    proxy.heal();
    let wal = pg_wal_files(&primary);
    let first = start / SEG;
    for segno in first..acked / SEG {
        let name = seg_name(1, segno * SEG);
        let original = wal
            .get(&name)
            .unwrap_or_else(|| panic!("{name} not in pg_wal"));
        assert!(
            fetch(&repo, &name, false) == *original,
            "{name} differs or is missing"
        );
    }
    if !acked.is_multiple_of(SEG) {
        let name = seg_name(1, acked);
        let stored = fetch(&repo, &name, true);
        let upto = (acked % SEG) as usize;
        assert!(
            stored[..upto] == wal[&name][..upto],
            "{name}: the acknowledged part up to {acked:X} is not in the repository"
        );
    }

    // A silent storage: the upload in flight is abandoned at the stop timeout, not after the
    // S3 timeouts (10 s per attempt, 2 attempts, then the uploader's backoff).
    let mut stream = Stream::start(&primary, &repo, &[]);
    stream_into_outage(&primary, &stream, &proxy, "silent", Outage::Silent);
    let signalled = Instant::now();
    stream.signal(Signal::SIGTERM);
    let (code, exited) = stream.wait_exit(STOP + Duration::from_secs(40));
    let silent_took = exited - signalled;
    assert_eq!(code, Some(3), "{}", stream.log());
    assert!(
        silent_took < STOP + Duration::from_secs(4),
        "stopped {silent_took:?} after SIGTERM with a silent storage (stop timeout {STOP:?}):\n{}",
        stream.log()
    );
    proxy.heal();

    // Two signals: the second exits at once, 130, however long the stop timeout.
    let mut stream = Stream::start(&primary, &repo, &["--stop-timeout", "60s"]);
    stream_into_outage(&primary, &stream, &proxy, "second", Outage::Refused);
    stream.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        stream.child.try_wait().unwrap().is_none(),
        "the first signal must not stop the stream at once during an outage:\n{}",
        stream.log()
    );
    let second = Instant::now();
    stream.signal(Signal::SIGINT);
    let (code, exited) = stream.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{}", stream.log());
    assert!(
        exited - second < Duration::from_secs(2),
        "the second signal took {:?} to stop the stream",
        exited - second
    );
    assert!(stream.log().contains("second signal"), "{}", stream.log());
    eprintln!(
        "PG{}: stopped {took:?} after SIGTERM during an outage (stop timeout {STOP:?}), \
         everything up to {acked:X} stored; {silent_took:?} with a silent storage; a second \
         signal stopped it in {:?}",
        install.major,
        exited - second
    );
    drop(proxy);
}
