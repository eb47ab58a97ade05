//! Helpers of the `walship stream` tests: the stream process, WAL names of 1 MiB segments,
//! pgbench, reading pg_wal and the repository, and the metrics endpoint.

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{self, TestRepo, describe, wait_until};
use pg_test_harness::Cluster;

/// 1 MiB segments (`initdb --wal-segsize=1`): many segments in a short test.
pub const SEG: u64 = 1 << 20;

/// A running `walship stream`, killed if the test fails before it stops it.
pub struct StreamProc {
    child: Option<Child>,
    stderr: PathBuf,
}

impl StreamProc {
    pub fn start(cluster: &Cluster, repo: &TestRepo, extra: &[&str]) -> StreamProc {
        StreamProc::start_with(cluster, repo, &cluster.connstr(), extra)
    }

    /// Like [`StreamProc::start`], connecting with `conn` (through a proxy, say).
    pub fn start_with(
        cluster: &Cluster,
        repo: &TestRepo,
        conn: &str,
        extra: &[&str],
    ) -> StreamProc {
        let stderr = repo
            .dir
            .path()
            .join(format!("stream-{}.log", rand_suffix()));
        let log = std::fs::File::create(&stderr).unwrap();
        support::chown_tree_like(&stderr, repo.dir.path());
        let mut cmd = Command::new(support::walship_bin());
        cmd.arg("--config")
            .arg(&repo.config)
            .args(["-vv", "stream", "-d", conn])
            .args(extra)
            .envs(repo.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        cluster.run_as_owner(&mut cmd);
        StreamProc {
            child: Some(cmd.spawn().expect("start walship stream")),
            stderr,
        }
    }

    /// No process: for waits that watch another client.
    pub fn none() -> StreamProc {
        StreamProc {
            child: None,
            stderr: PathBuf::from("/nonexistent"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL (a crash of the stream: nothing is flushed or removed on the way out).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit code (panics after 60 s).
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("walship stream ignored SIGTERM for 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for StreamProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A `pg_lsn` text as a byte position (walship's own `Lsn` parser).
pub fn lsn(text: &str) -> u64 {
    text.trim().parse::<walship_common::Lsn>().unwrap().0
}

/// The name of the 1 MiB segment holding `lsn` on `tli`.
pub fn seg_name(tli: u32, lsn: u64) -> String {
    let segno = lsn / SEG;
    let per_id = 0x1_0000_0000 / SEG;
    format!("{tli:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// A plain HTTP GET: the status line and the body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect to --metrics-addr");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    socket.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of one sample line of a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The segment number of a 1 MiB segment's name.
pub fn segno_of(name: &str) -> u64 {
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    log * (0x1_0000_0000 / SEG) + seg
}

pub fn wait_streaming(cluster: &Cluster, stream: &StreamProc, app: &str) {
    wait_until(Duration::from_secs(60), "walship stream to stream", || {
        let state = cluster.query_string(&format!(
            "select coalesce(max(state), '') from pg_stat_replication where application_name = '{app}'"
        ));
        if state != "streaming" {
            let log = stream.log();
            assert!(!log.contains("error:"), "walship stream failed:\n{log}");
        }
        state == "streaming"
    });
}

/// Waits until the stream (application name `walship`) is `cluster`'s synchronous standby.
pub fn wait_sync_standby(cluster: &Cluster) {
    wait_until(
        Duration::from_secs(30),
        "the stream to be the sync standby",
        || {
            cluster.query_string(
                "select coalesce(max(sync_state), '') from pg_stat_replication where application_name = 'walship'",
            ) == "sync"
        },
    );
}

pub fn pgbench(cluster: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(pg_test_harness::client_tool("pgbench"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.port().to_string(),
        "-U",
        "postgres",
    ])
    .args(args)
    .arg("postgres");
    cmd
}

/// The WAL files of a stopped cluster, by name (recycled future segments excluded by caller).
pub fn pg_wal_files(cluster: &Cluster) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(cluster.data_dir().join("pg_wal"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            support::is_segment_name(&name).then(|| (name, std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

/// Names of the objects under `wal/` of a local repository.
pub fn repo_wal_names(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let wal = root.join("wal");
    for entry in std::fs::read_dir(&wal).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            for inner in std::fs::read_dir(entry.path()).unwrap() {
                names.push(inner.unwrap().file_name().into_string().unwrap());
            }
        } else {
            names.push(entry.file_name().into_string().unwrap());
        }
    }
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    names
}

/// The timeline-1 WAL objects of `repo` around segment `around`: listed in a local repository,
/// probed with `walship fetch` (down and up from `around` to the first absent segment) on S3.
pub fn streamed_names(repo: &TestRepo, around: &str) -> Vec<String> {
    if repo.s3.is_none() {
        return repo_wal_names(repo.local_root());
    }
    let fetched = |name: &str, partial: bool| {
        let dest = repo.dir.path().join("probe");
        let mut args = vec!["fetch", name, dest.to_str().unwrap()];
        if partial {
            args.insert(1, "--allow-partial");
        }
        let out = repo.walship(&args);
        let _ = std::fs::remove_file(&dest);
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("fetch {name}: {}", describe(&out)),
        }
    };
    let mid = segno_of(around);
    let mut names = Vec::new();
    let mut segno = mid;
    loop {
        let name = seg_name(1, segno * SEG);
        if fetched(&name, false) {
            names.push(name);
        } else if segno < mid {
            break;
        } else if fetched(&name, true) {
            names.push(format!("{name}.partial"));
        }
        if segno == 0 {
            break;
        }
        segno -= 1;
    }
    for segno in mid + 1.. {
        let name = seg_name(1, segno * SEG);
        if fetched(&name, false) {
            names.push(name);
        } else {
            if fetched(&name, true) {
                names.push(format!("{name}.partial"));
            }
            break;
        }
    }
    names.sort();
    names
}

/// `walship fetch [--allow-partial] name` into a temporary file; the bytes.
pub fn fetch(repo: &TestRepo, name: &str, allow_partial: bool) -> Vec<u8> {
    let dest = repo.dir.path().join(format!("fetched-{name}"));
    let mut args = vec!["fetch", name, dest.to_str().unwrap()];
    if allow_partial {
        args.insert(1, "--allow-partial");
    }
    let out = repo.walship(&args);
    assert!(out.status.success(), "fetch {name}: {}", describe(&out));
    let bytes = std::fs::read(&dest).unwrap();
    std::fs::remove_file(&dest).unwrap();
    bytes
}

/// Waits until the stream reports `flush` at or past `target` (the server's view).
pub fn wait_flushed(cluster: &Cluster, stream: &StreamProc, app: &str, target: u64) {
    wait_until(Duration::from_secs(120), "the stream to flush", || {
        let flush = cluster.query_string(&format!(
            "select coalesce(max(flush_lsn)::text, '0/0') from pg_stat_replication where application_name = '{app}'"
        ));
        let log = stream.log();
        assert!(!log.contains("error:"), "walship stream failed:\n{log}");
        lsn(&flush) >= target
    });
}

/// Every complete segment in the repository, contiguous from the first, byte-identical to
/// the stopped cluster's pg_wal where pg_wal still has it. Returns how many.
pub fn assert_segments_match(
    repo: &TestRepo,
    wal: &BTreeMap<String, Vec<u8>>,
    upto: &str,
) -> usize {
    let names = repo_wal_names(repo.local_root());
    let complete: Vec<&String> = names
        .iter()
        .filter(|n| support::is_segment_name(n))
        .collect();
    let first = segno_of(complete[0]);
    let mut compared = 0;
    for (i, name) in complete.iter().enumerate() {
        assert_eq!(
            **name,
            seg_name(1, (first + i as u64) * SEG),
            "gap: {names:?}"
        );
        if name.as_str() <= upto
            && let Some(original) = wal.get(name.as_str())
        {
            assert!(
                fetch(repo, name, false) == *original,
                "{name} differs from pg_wal"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "only {compared} segments to compare: {names:?}"
    );
    assert!(
        complete.last().unwrap().as_str() >= upto,
        "segments end at {:?}, expected up to {upto}",
        complete.last()
    );
    complete.len()
}

/// Starts `n` writers that insert `(writer, 1..)` into the table `acked(writer int, n int)` of
/// `cluster` until a commit fails; each returns how many commits the server acknowledged to
/// it, which a restore must then hold.
pub fn spawn_ack_writers(cluster: &Cluster, n: i32) -> Vec<std::thread::JoinHandle<i32>> {
    (0..n)
        .map(|writer| {
            let mut client = cluster.client();
            std::thread::spawn(move || {
                let mut acked = 0;
                loop {
                    let next = acked + 1;
                    match client.execute("insert into acked values ($1, $2)", &[&writer, &next]) {
                        Ok(_) => acked = next,
                        Err(_) => return acked,
                    }
                }
            })
        })
        .collect()
}

/// Asserts that `restored` holds every commit the writers of [`spawn_ack_writers`] saw
/// acknowledged (`acked[writer]` rows `1..=n`), naming the writer and the counts otherwise.
pub fn assert_acked_rows(restored: &Cluster, acked: &[i32], what: &str) {
    for (writer, &n) in acked.iter().enumerate() {
        let present: i64 = restored
            .query_string(&format!(
                "select count(distinct n) from acked where writer = {writer} and n <= {n}"
            ))
            .parse()
            .unwrap();
        assert_eq!(
            present,
            i64::from(n),
            "{what}: writer {writer} saw {n} commits acknowledged, the restored cluster has {present}"
        );
    }
}
