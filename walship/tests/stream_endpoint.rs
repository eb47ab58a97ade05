//! `walship stream --metrics-addr` against hostile clients (issue 18, item 13), through the
//! binary: a huge request line, hundreds of idle connections and an exhausted file-descriptor
//! table must neither grow the process nor spin it, and the endpoint answers again afterwards.
//! No Postgres is needed: the stream keeps retrying its connection while the endpoint serves.

mod stream_support;
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stream_support::http_get;
use support::wait_until;

/// A `walship stream` whose Postgres never answers, serving `--metrics-addr`; killed on drop.
struct Sidecar {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts it with at most `max_files` open file descriptors (`ulimit -n`).
    fn start(max_files: u32) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", pg_test_harness::ports::free_port());
        let dead_pg = pg_test_harness::ports::free_port();
        let script = format!(
            "ulimit -n {max_files} && exec '{}' --repo file://{}/repo stream -d 'host=127.0.0.1 port={dead_pg} user=x' --metrics-addr {addr}",
            support::walship_bin().display(),
            dir.path().display(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sidecar = Sidecar {
            child,
            addr,
            _dir: dir,
        };
        wait_until(Duration::from_secs(20), "the metrics endpoint", || {
            TcpStream::connect(&sidecar.addr).is_ok()
        });
        assert!(sidecar.health().starts_with("HTTP/1.1 503"));
        sidecar
    }

    fn health(&self) -> String {
        http_get(&self.addr, "/health").0
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib << 10
    }

    /// CPU time used so far (user + system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses: utime and stime are the
        // 12th and 13th of them, in clock ticks (100 per second on Linux).
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = after
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        Duration::from_millis((fields[0] + fields[1]) * 10)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the server has closed `socket` (EOF or reset), without waiting.
fn closed_by_server(socket: &TcpStream) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let mut reader = socket;
    match reader.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[test]
fn a_huge_request_line_is_cut_off_without_memory_growth() {
    let sidecar = Sidecar::start(1024);
    let before = sidecar.rss();
    let mut socket = TcpStream::connect(&sidecar.addr).unwrap();
    socket
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = vec![b'A'; 64 << 10];
    let total = 256usize << 20;
    let mut sent = 0;
    while sent < total {
        match socket.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        sent < 64 << 20,
        "the endpoint kept reading a request line without newline: {} MiB taken",
        sent >> 20
    );
    let grown = sidecar.rss().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "the stream grew by {} MiB for one request",
        grown >> 20
    );
    assert!(sidecar.health().starts_with("HTTP/1.1 503"));
    // A request just over the limit gets an answer saying why.
    let mut socket = TcpStream::connect(&sidecar.addr).unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
    request.extend(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(300));
    let _ = socket.write_all(&request);
    let mut answer = vec![0u8; 64];
    let n = socket.read(&mut answer).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
}

#[test]
fn idle_connections_are_capped_and_closed() {
    let sidecar = Sidecar::start(1024);
    let before = sidecar.rss();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&sidecar.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let closed = idle.iter().filter(|s| closed_by_server(s)).count();
    assert!(
        closed >= 300 - 64,
        "only {closed} of 300 idle connections were closed at once: the endpoint holds every one"
    );
    assert!(sidecar.rss().saturating_sub(before) < 16 << 20);
    // The ones it kept are closed when they send nothing for 5 s; then it answers again.
    let started = Instant::now();
    wait_until(
        Duration::from_secs(8),
        "the idle connections to be closed",
        || idle.iter().all(closed_by_server),
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(sidecar.health().starts_with("HTTP/1.1 503"));
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    // 32 descriptors: about 12 for the process itself, so idle clients exhaust the table
    // and accept fails with EMFILE while they stay connected.
    let sidecar = Sidecar::start(32);
    let _idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&sidecar.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = sidecar.cpu();
    std::thread::sleep(Duration::from_secs(3));
    let used = sidecar.cpu() - cpu;
    assert!(
        used < Duration::from_millis(600),
        "the stream used {used:?} of CPU in 3 s with accept failing: it spins"
    );
    drop(_idle);
    wait_until(
        Duration::from_secs(15),
        "the endpoint to answer again",
        || {
            let mut socket = match TcpStream::connect(&sidecar.addr) {
                Ok(socket) => socket,
                Err(_) => return false,
            };
            let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = socket.write_all(b"GET /health HTTP/1.1\r\n\r\n");
            let mut text = String::new();
            let _ = socket.read_to_string(&mut text);
            text.starts_with("HTTP/1.1 503")
        },
    );
}
