//! A silent S3 endpoint (accepts TCP, never answers) through the binary (issue 18, item 15):
//! `fetch` exits above 125 within `fetch.timeout` (default 30 s, well inside the time Postgres
//! waits on a `restore_command`), `archive` fails within `s3.timeout`, and both limits are
//! set through their `WALSHIP_*` variables. Before, each call waited about 150 s (5 attempts
//! of 30 s).

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{describe, walship_bin};

/// A loopback listener that accepts every connection and never sends a byte.
fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for socket in listener.incoming().flatten() {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// Runs walship against `endpoint` with `env`; kills it after `limit` (then panics).
fn run(endpoint: &str, env: &[(&str, &str)], args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(walship_bin())
        .args(["--repo", "s3://silent-bucket/p"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("WALSHIP_S3_ENDPOINT", endpoint)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = started.elapsed();
            return (child.wait_with_output().unwrap(), took);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "walship {args:?} still waiting on a silent endpoint after {limit:?}: {}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fetch_args(dir: &Path) -> Vec<String> {
    vec![
        "fetch".into(),
        "000000010000000000000001".into(),
        dir.join("dest").to_string_lossy().into_owned(),
    ]
}

#[test]
fn fetch_gives_up_on_a_silent_endpoint_within_its_timeout() {
    let endpoint = silent_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let args = fetch_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // The default: 30 s, never the old 150 s.
    let (out, took) = run(&endpoint, &[], &args, Duration::from_secs(45));
    let code = out.status.code().unwrap_or(0);
    assert!(
        code > 125,
        "fetch must stop recovery, not say absent: {}",
        describe(&out)
    );
    assert!(
        took < Duration::from_secs(40),
        "fetch took {took:?} with the default fetch.timeout (30 s)"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no answer within 30s"),
        "{}",
        describe(&out)
    );
    assert!(!dir.path().join("dest").exists());

    // Configured shorter.
    let (out, took) = run(
        &endpoint,
        &[("WALSHIP_FETCH_TIMEOUT", "3s")],
        &args,
        Duration::from_secs(20),
    );
    assert!(out.status.code().unwrap_or(0) > 125, "{}", describe(&out));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "WALSHIP_FETCH_TIMEOUT=3s: fetch took {took:?}"
    );
}

#[test]
fn archive_gives_up_on_a_silent_endpoint_within_s3_timeout() {
    let endpoint = silent_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000000\tno recovery target specified\n").unwrap();
    let (out, took) = run(
        &endpoint,
        &[("WALSHIP_S3_TIMEOUT", "3s")],
        &["archive", history.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "WALSHIP_S3_TIMEOUT=3s: archive took {took:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3.timeout"),
        "{}",
        describe(&out)
    );
    // A limit below a second would fail every request: refused, naming the variable.
    let (out, _) = run(
        &endpoint,
        &[("WALSHIP_S3_TIMEOUT", "10ms")],
        &["archive", history.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WALSHIP_S3_TIMEOUT"),
        "{}",
        describe(&out)
    );
}
