//! A real S3 server for tests: SeaweedFS (`weed mini`) on 127.0.0.1 with a fresh bucket.
//!
//! [`S3Server::start`] picks free ports for every SeaweedFS service, starts `weed mini` in a
//! private temp directory, waits until the S3 API answers, creates a uniquely named bucket and
//! proves a write works. With no identities configured SeaweedFS accepts any credentials and
//! unsigned requests, which is what lets the harness use the raw [`http`] client.
//! [`S3Server::stop`] simulates an outage (SIGTERM, SIGKILL after a grace period);
//! [`S3Server::restart`] brings the same server back on the same ports and data. Drop stops it
//! and removes its directory.

pub mod http;
mod pki;
mod weed;

pub use pki::TestPki;

pub use weed::{WeedPorts, weed_binary};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long `start`/`restart` wait for the S3 API to accept a write.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `stop` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Timeout of one HTTP request to the server.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many port sets `start` tries when a port was taken meanwhile.
const PORT_ATTEMPTS: usize = 4;
/// Key written and deleted to prove the write path works.
const PROBE_KEY: &str = ".pg-test-harness-probe";

/// A running SeaweedFS S3 server owned by one test.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bucket created for this server (3-63 characters, unique per server).
    pub bucket: String,
    /// Region to configure clients with (SeaweedFS ignores it).
    pub region: String,
    /// Access key to configure clients with (SeaweedFS accepts any).
    pub access_key: String,
    /// Secret key to configure clients with (SeaweedFS accepts any).
    pub secret_key: String,
    weed: PathBuf,
    ports: WeedPorts,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Certificate and key of the HTTPS listener, when one is opened.
    tls: Option<(PathBuf, PathBuf)>,
    /// The PKI made by [`S3Server::start_https`] (kept while the server runs).
    pki: Option<TestPki>,
}

impl S3Server {
    /// Starts SeaweedFS `weed mini` on loopback with free ports and telemetry off, waits until it
    /// answers, and creates the bucket. Fails when `weed` is missing or does not come up.
    pub fn start() -> anyhow::Result<S3Server> {
        S3Server::start_inner(None)
    }

    /// [`S3Server::start`], also serving S3 over HTTPS on [`S3Server::https_endpoint`] with the
    /// PEM certificate `cert` (for 127.0.0.1) and its private key `key` (`-s3.cert.file`,
    /// `-s3.key.file`); the plain HTTP endpoint stays open.
    pub fn start_with_tls(cert: &Path, key: &Path) -> anyhow::Result<S3Server> {
        S3Server::start_inner(Some((cert.to_path_buf(), key.to_path_buf())))
    }

    /// [`S3Server::start_with_tls`] with a PKI of its own ([`TestPki`]), waiting until the
    /// HTTPS listener accepts connections: clients then use [`S3Server::https_endpoint`] and
    /// trust [`S3Server::ca_file`], as they would a real S3 (every request over TLS).
    pub fn start_https() -> anyhow::Result<S3Server> {
        let pki = TestPki::create()?;
        let mut server = S3Server::start_with_tls(&pki.cert(), &pki.key())?;
        server.pki = Some(pki);
        let deadline = Instant::now() + READY_TIMEOUT;
        while port_refuses(server.ports.s3_https) {
            if Instant::now() > deadline {
                bail!(
                    "SeaweedFS opened no HTTPS listener\n{}",
                    server.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The CA certificate that signed the HTTPS listener's, after [`S3Server::start_https`].
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(TestPki::ca)
    }

    /// `https://127.0.0.1:PORT`: the HTTPS listener (serving only after
    /// [`S3Server::start_with_tls`]).
    pub fn https_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.s3_https)
    }

    fn start_inner(tls: Option<(PathBuf, PathBuf)>) -> anyhow::Result<S3Server> {
        let weed = weed_binary().context(
            "SeaweedFS `weed` not found ($WEED_BIN, <test deps>/seaweedfs/bin/weed, PATH); \
             run scripts/setup-test-deps",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("walship-s3-")
            .tempdir_in("/tmp")
            .context("creating SeaweedFS directory under /tmp")?;
        std::fs::create_dir(dir.path().join("data"))
            .with_context(|| format!("creating {}/data", dir.path().display()))?;
        let mut server = S3Server {
            endpoint: String::new(),
            bucket: unique_bucket_name(),
            region: "us-east-1".to_owned(),
            access_key: "walship-test".to_owned(),
            secret_key: "walship-test-secret".to_owned(),
            weed,
            ports: WeedPorts::allocate(),
            dir,
            child: None,
            tls,
            pki: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.endpoint = format!("http://127.0.0.1:{}", server.ports.s3);
            match server.launch(true) {
                Ok(()) => return Ok(server),
                Err(e)
                    if attempt < PORT_ATTEMPTS
                        && server.log().contains("address already in use") =>
                {
                    eprintln!("pg-test-harness: SeaweedFS port collision, retrying: {e:#}");
                    server.stop();
                    server.truncate_log();
                    server.ports = WeedPorts::allocate();
                }
                Err(e) => {
                    server.stop();
                    return Err(e.context(server.log_excerpt()));
                }
            }
        }
        bail!("SeaweedFS did not start after {PORT_ATTEMPTS} port sets")
    }

    /// Stops the server to simulate an outage: SIGTERM, SIGKILL after ~2 s, then waits for it.
    /// The data directory is kept for [`restart`](Self::restart). No-op when already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.ports.remove_stray_sockets();
    }

    /// Starts the server again on the same ports with the same data; waits until it accepts
    /// writes. Panics with the server log when it does not come back.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch(false) {
            self.stop();
            panic!("restarting SeaweedFS: {e:#}\n{}", self.log_excerpt());
        }
    }

    /// Environment for AWS clients: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", &self.access_key),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_key),
            ("AWS_REGION", &self.region),
            ("AWS_ENDPOINT_URL", &self.endpoint),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    /// The S3 API's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.s3))
    }

    /// Every port this server listens on.
    pub fn ports(&self) -> WeedPorts {
        self.ports
    }

    /// Process id of the running `weed`, None when stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// CPU time (user + system) the running `weed` has used so far, from
    /// `/proc/<pid>/stat`; None when stopped or unreadable. Benches take the difference
    /// around a client's run to see what serving it cost on the same cores.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // Fields after the command name (which may hold spaces) start at field 3 (state);
        // utime and stime are fields 14 and 15, in clock ticks of USER_HZ (100 on Linux).
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// True while the `weed` process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SeaweedFS's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One raw, unsigned HTTP request to the S3 API (`path` like `/bucket/key`).
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<http::Response> {
        http::request(self.addr(), method, path, body, HTTP_TIMEOUT)
    }

    /// One raw, unsigned HTTP request with extra headers.
    pub fn http_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<http::Response> {
        http::request_with_headers(self.addr(), method, path, headers, body, HTTP_TIMEOUT)
    }

    /// Creates another bucket on this server with S3 Object Lock enabled (which also turns
    /// versioning on) and returns its name. Object Lock can only be enabled when a bucket is
    /// created, so tests of WORM repositories use this bucket instead of [`S3Server::bucket`].
    pub fn create_object_lock_bucket(&self) -> anyhow::Result<String> {
        let bucket = unique_bucket_name();
        let response = self.http_with_headers(
            "PUT",
            &format!("/{bucket}"),
            &[("x-amz-bucket-object-lock-enabled", "true")],
            b"",
        )?;
        if response.status != 200 {
            bail!(
                "creating object-lock bucket {bucket}: {} {}",
                response.status,
                response.body_text()
            );
        }
        Ok(bucket)
    }

    /// Everything `weed` printed so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn truncate_log(&self) {
        let _ = std::fs::write(self.log_path(), b"");
    }

    fn log_excerpt(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        format!(
            "--- weed log {} ---\n{}\n--- end of weed log ---",
            self.log_path().display(),
            tail.join("\n")
        )
    }

    /// Spawns weed and waits for it; `create_bucket` on first start only.
    fn launch(&mut self, create_bucket: bool) -> anyhow::Result<()> {
        let mut args = self.ports.mini_args(&self.data_dir(), self.dir.path());
        if let Some((cert, key)) = &self.tls {
            args.push(format!("-s3.cert.file={}", cert.display()));
            args.push(format!("-s3.key.file={}", key.display()));
        }
        let child = weed::spawn(&self.weed, &args, &self.log_path())
            .with_context(|| format!("spawning {} {}", self.weed.display(), args.join(" ")))?;
        self.child = Some(child);
        self.wait_ready(create_bucket)
    }

    /// Polls until the bucket exists (creating it if asked) and a probe object can be written
    /// and deleted, or the process dies, or the timeout passes.
    fn wait_ready(&mut self, create_bucket: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let bucket_path = format!("/{}", self.bucket);
        let probe_path = format!("/{}/{PROBE_KEY}", self.bucket);
        let mut bucket_ready = !create_bucket;
        let mut last = String::from("no answer yet");
        loop {
            if !self.is_running() {
                bail!("weed exited during startup ({last})");
            }
            if Instant::now() > deadline {
                bail!(
                    "SeaweedFS S3 on {} not ready after {READY_TIMEOUT:?}: {last}",
                    self.endpoint
                );
            }
            if !bucket_ready {
                match self.http("PUT", &bucket_path, b"") {
                    Ok(r) if r.status == 200 => bucket_ready = true,
                    Ok(r) => last = format!("PUT {bucket_path}: {} {}", r.status, r.body_text()),
                    Err(e) => last = format!("PUT {bucket_path}: {e}"),
                }
            }
            if bucket_ready {
                let put = self.http("PUT", &probe_path, b"probe");
                match put {
                    Ok(r) if r.status == 200 => {
                        let del = self.http("DELETE", &probe_path, b"")?;
                        if del.status == 204 || del.status == 200 {
                            return Ok(());
                        }
                        last = format!("DELETE {probe_path}: {} {}", del.status, del.body_text());
                    }
                    Ok(r) => last = format!("PUT {probe_path}: {} {}", r.status, r.body_text()),
                    Err(e) => last = format!("PUT {probe_path}: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for S3Server {
    /// Stops the server; when a test panicked, prints the end of the server's log first, so
    /// that an answer the server gave (an HTTP 500, say) can be traced to its cause.
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_excerpt());
        }
    }
}

/// SeaweedFS for a test: None (after a loud `SKIP:` line) when `weed` is not installed; with
/// `CI=true`, panics. Panics when `weed` is installed but does not start.
pub fn s3_under_test() -> Option<S3Server> {
    s3_started_by(S3Server::start)
}

/// [`s3_under_test`] serving HTTPS with a private CA ([`S3Server::start_https`]).
pub fn s3_https_under_test() -> Option<S3Server> {
    s3_started_by(S3Server::start_https)
}

fn s3_started_by(start: fn() -> anyhow::Result<S3Server>) -> Option<S3Server> {
    if weed_binary().is_none() {
        crate::ci::skip_or_fail(
            "SeaweedFS `weed` not found ($WEED_BIN, <test deps>/seaweedfs/bin/weed, PATH)",
        );
        return None;
    }
    match start() {
        Ok(server) => Some(server),
        Err(e) => panic!("starting SeaweedFS: {e:#}"),
    }
}

/// `walship-<pid>-<n>-<random>`: lower-case, at most 63 characters, unique per server.
fn unique_bucket_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt: u32 = rand::random();
    format!("walship-{}-{n}-{salt:08x}", std::process::id())
}

/// True when nothing accepts TCP connections on 127.0.0.1:`port`.
pub fn port_refuses(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_err()
}
