//! Repository metrics through the binary on real Postgres 15 and a file:// repository:
//! `--metrics-textfile` on backup and drill, and `walship exporter`, each parsed by
//! `promtool check metrics`, with values equal to what `list --json` says; a real Prometheus
//! scrapes the exporter and answers queries with those values.

mod restore_support;
mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use restore_support::archiving_cluster;
use support::{TestRepo, archive_everything, describe, walship_bin};

/// `promtool check metrics` on `text`; panics with its complaint.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup-test-deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{text}",
        describe(&out)
    );
}

/// The value of the sample of `name` in `text`.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn textfiles_and_exporter_pass_promtool_and_match_list() {
    let install = pg_test_harness::installs()
        .into_iter()
        .find(|i| i.major == 15)
        .expect("PostgreSQL 15");
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t as select g from generate_series(1, 1000) g");
    let files = pg_test_harness::test_dir("metrics");
    let backup_prom = files.path().join("backup.prom");
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let out = repo.walship(&[
        "backup",
        "-d",
        &conn,
        "--checkpoint",
        "fast",
        "--wal-timeout",
        "60s",
        "--metrics-textfile",
        backup_prom.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "backup: {}", describe(&out));
    cluster.execute("insert into t values (0)");
    archive_everything(&cluster, Duration::from_secs(60));

    let text = std::fs::read_to_string(&backup_prom).unwrap();
    promtool_accepts(&text);
    let list = repo.walship(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let backup = list.as_array().map_or(&list["backups"][0], |a| &a[0]);
    assert_eq!(
        value(&text, "walship_backup_size_bytes") as u64,
        backup["bytes_stored"].as_u64().unwrap(),
        "{backup:#}"
    );
    let stop = chrono::DateTime::parse_from_rfc3339(backup["stop_time"].as_str().unwrap()).unwrap();
    assert!(
        (value(&text, "walship_backup_last_success_timestamp_seconds")
            - stop.timestamp_micros() as f64 / 1e6)
            .abs()
            < 0.001
    );
    assert!(value(&text, "walship_wal_segments_archived_total") >= 1.0);
    assert!(
        !text.contains("walship_restore_drill_success"),
        "no drill yet:\n{text}"
    );

    let drill_prom = files.path().join("drill.prom");
    let out = repo.walship(&["drill", "--metrics-textfile", drill_prom.to_str().unwrap()]);
    assert!(out.status.success(), "drill: {}", describe(&out));
    let text = std::fs::read_to_string(&drill_prom).unwrap();
    promtool_accepts(&text);
    assert_eq!(value(&text, "walship_restore_drill_success"), 1.0);
    assert!(value(&text, "walship_restore_drill_duration_seconds") > 0.0);
    assert!(value(&text, "walship_pitr_window_seconds") > 0.0);

    // The exporter serves the same names; SIGTERM stops it with 0.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut exporter = Command::new(walship_bin())
        .args([
            "--config",
            repo.config.to_str().unwrap(),
            "exporter",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1s",
        ])
        .envs(repo.env())
        .spawn()
        .unwrap();
    support::wait_until(
        Duration::from_secs(30),
        "the exporter answers healthy",
        || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get(port, "/health").starts_with("HTTP/1.1 200")
        },
    );
    let response = get(port, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    promtool_accepts(body);
    assert_eq!(value(body, "walship_restore_drill_success"), 1.0);
    assert_eq!(
        value(body, "walship_backup_size_bytes"),
        value(&text, "walship_backup_size_bytes")
    );
    // A request larger than the bound is refused, and the endpoint still answers.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(
        format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes(),
    );
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(get(port, "/metrics").starts_with("HTTP/1.1 200"));

    // A real Prometheus scrapes the exporter and answers queries with the values `list --json`
    // reports (issue 21, test 2).
    if let Some(prometheus) =
        support::prometheus::Prometheus::start(&[("walship", format!("127.0.0.1:{port}"))])
    {
        let wait = Duration::from_secs(60);
        assert_eq!(
            prometheus.value("walship_backup_size_bytes{job=\"walship\"}", wait) as u64,
            backup["bytes_stored"].as_u64().unwrap(),
            "{backup:#}"
        );
        let last = prometheus.value("walship_backup_last_success_timestamp_seconds", wait);
        assert!(
            (last - stop.timestamp_micros() as f64 / 1e6).abs() < 0.001,
            "Prometheus says {last}, list --json says the backup stopped at {stop}"
        );
        assert_eq!(prometheus.value("walship_restore_drill_success", wait), 1.0);
        assert_eq!(prometheus.value("up{job=\"walship\"}", wait), 1.0);
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exporter.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = exporter.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    // The stream sidecar's endpoint serves the repository's metrics beside its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sidecar = Command::new(walship_bin())
        .args([
            "--config",
            repo.config.to_str().unwrap(),
            "stream",
            "-d",
            &conn,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .envs(repo.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut body = String::new();
    support::wait_until(
        Duration::from_secs(30),
        "the sidecar serves the repository metrics",
        || {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                return false;
            }
            body = get(port, "/metrics");
            body.contains("walship_backup_size_bytes{")
        },
    );
    assert!(body.contains("walship_stream_up"), "{body}");
    assert_eq!(
        value(&body, "walship_backup_size_bytes"),
        value(&text, "walship_backup_size_bytes")
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sidecar.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = sidecar.wait();
    cluster.execute("select pg_drop_replication_slot('walship') from pg_replication_slots where slot_name = 'walship'");
}
