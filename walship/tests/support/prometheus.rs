//! A real Prometheus (Debian's package `prometheus`, which scripts/setup-test-deps installs)
//! on a free 127.0.0.1 port, scraping the given targets every second, and queries through its
//! HTTP API: what an operator's Prometheus does with walship's metrics endpoints.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus; stopped (SIGTERM, then waited for) and its directory removed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each `(job, "host:port")` of `targets` every second and
    /// waits until its API answers. `None` when the `prometheus` binary is not installed,
    /// after [`pg_test_harness::ci::skip_or_fail`] (which panics under `CI=true`).
    pub fn start(targets: &[(&str, String)]) -> Option<Prometheus> {
        let bin = find("prometheus")?;
        let dir = pg_test_harness::test_dir("prometheus");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("prometheus.log");
        let port = pg_test_harness::ports::free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            port,
            log,
            _dir: dir,
        };
        prometheus.wait("its API answers", Duration::from_secs(60), |p| {
            p.get("/-/ready")
                .is_some_and(|r| r.lines().next().is_some_and(|l| l.contains(" 200 ")))
        });
        Some(prometheus)
    }

    /// The `data.result` of an instant query for `promql`, or `None` when the API did not
    /// answer with success.
    pub fn query(&self, promql: &str) -> Option<Vec<serde_json::Value>> {
        let reply = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        let (_, body) = reply.split_once("\r\n\r\n")?;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        if json["status"] != "success" {
            return None;
        }
        json["data"]["result"].as_array().cloned()
    }

    /// Waits (at most `timeout`) until `promql` returns exactly one sample and returns its
    /// value; panics, naming Prometheus's log, when it does not.
    pub fn value(&self, promql: &str, timeout: Duration) -> f64 {
        let mut value = None;
        self.wait(&format!("one sample of {promql}"), timeout, |p| {
            value = p
                .query(promql)
                .filter(|r| r.len() == 1)
                .and_then(|r| r[0]["value"][1].as_str().and_then(|v| v.parse().ok()));
            value.is_some()
        });
        value.unwrap()
    }

    /// Polls `check` every 200 ms until it holds or `timeout` passes, then panics with `what`
    /// and the end of Prometheus's log.
    fn wait(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !check(self) {
            if start.elapsed() > timeout {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "Prometheus on 127.0.0.1:{}: timed out after {timeout:?} waiting for {what}; its log ends:\n{}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path` over HTTP/1.0 (the server closes the connection after the reply).
    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// `name` on PATH, or `None` after skip_or_fail.
fn find(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        pg_test_harness::ci::skip_or_fail(&format!(
            "{name} is not installed (Debian package prometheus)"
        ));
    }
    found
}

/// Percent-encodes everything but unreserved characters, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
