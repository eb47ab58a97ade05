//! `check`, `status` and `audit` through the binary on every installed major 13-18 (issue 21,
//! tests 4 and 5 ask for real Postgres 13-18), kept cheap: one cluster per major archiving into
//! a file:// repository. `check` passes every check and its switched segment arrives; after a
//! `walship backup` and more archived WAL, `status --json` is healthy with the backup, a PITR
//! window ending at the last commit and no gap; `audit --verify` passes with the `check` and
//! `backup` records, chained. The misconfigurations, stale and gapped repositories are tested
//! on 15 alone (check.rs, status.rs): their logic does not depend on the major.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall};
use restore_support::{archiving_cluster, walship_backup};
use support::{TestRepo, archive_everything, describe, switch_wal};

/// Runs `walship ARGS` and parses its stdout as JSON; returns the exit code too.
fn json(repo: &TestRepo, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = repo.walship(args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("walship {args:?} ({e}): {}", describe(&out)));
    (out.status.code(), json)
}

fn check_passes(major: u32, repo: &TestRepo, cluster: &Cluster) {
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let (code, json) = json(repo, &["check", "-d", &conn, "--json", "--timeout", "60s"]);
    assert_eq!(code, Some(0), "PG{major}: {json:#}");
    assert_eq!(json["ok"], true, "PG{major}: {json:#}");
    let checks = json["checks"].as_array().unwrap();
    for name in [
        "archive_mode",
        "archive_command",
        "wal_level",
        "max_wal_senders",
        "repository reachable",
        "repository of this cluster",
        "repository writable",
        "WAL switch archived",
    ] {
        let check = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("PG{major}: no check {name}: {json:#}"));
        assert_eq!(check["ok"], true, "PG{major}: {check:#}");
    }
}

fn status_healthy(major: u32, repo: &TestRepo, last_commit: &str) {
    let (code, json) = json(
        repo,
        &[
            "status",
            "--json",
            "--max-wal-age",
            "10m",
            "--max-backup-age",
            "1h",
        ],
    );
    assert_eq!(code, Some(0), "PG{major}: {json:#}");
    assert_eq!(json["healthy"], true, "PG{major}: {json:#}");
    assert_eq!(json["backups"], 1, "PG{major}: {json:#}");
    assert_eq!(
        json["pg_major"].as_u64().map(|m| m as u32),
        Some(major),
        "PG{major}: {json:#}"
    );
    let window = &json["pitr_window"];
    // The window ends at the last commit record's time, which comes a little after the
    // row's own timestamp (`at` is taken during the insert, the commit follows).
    let latest = window["latest"]
        .as_str()
        .and_then(|l| chrono::DateTime::parse_from_rfc3339(l).ok())
        .map(|l| l.with_timezone(&chrono::Utc));
    let row = chrono::NaiveDateTime::parse_from_str(last_commit, "%Y-%m-%dT%H:%M:%S%.f")
        .expect("the row's timestamp")
        .and_utc();
    assert!(
        latest.is_some_and(|l| l >= row && l - row < chrono::Duration::seconds(1)),
        "PG{major}: window {window:#} does not end at the last commit {last_commit}"
    );
    assert!(
        window["seconds"].as_f64().unwrap() > 0.0,
        "PG{major}: {json:#}"
    );
    assert_eq!(json["gaps"], serde_json::json!([]), "PG{major}: {json:#}");
}

fn audit_verifies(major: u32, repo: &TestRepo) {
    let (code, json) = json(repo, &["audit", "--verify", "--json"]);
    assert_eq!(code, Some(0), "PG{major}: {json:#}");
    assert_eq!(json["verified"], true, "PG{major}: {json:#}");
    let ops: Vec<&str> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["operation"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ops, ["check", "backup"], "PG{major}: {json:#}");
}

fn one_major(install: &PgInstall) {
    let major = install.major;
    let repo = TestRepo::local();
    let cluster = archiving_cluster(install, &repo);
    cluster.execute("create table t (id int, at timestamptz default clock_timestamp())");
    check_passes(major, &repo, &cluster);

    walship_backup(&cluster, &repo);
    cluster.execute("insert into t (id) values (1)");
    switch_wal(&cluster);
    archive_everything(&cluster, Duration::from_secs(60));
    let last_commit = cluster.query_string(
        "select to_char(max(at) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') from t",
    );
    status_healthy(major, &repo, &last_commit);
    audit_verifies(major, &repo);
}

#[test]
fn check_status_and_audit_on_every_major() {
    let installs = pg_test_harness::installs_under_test();
    assert!(!installs.is_empty(), "no PostgreSQL 13-18 installed");
    for install in &installs {
        eprintln!("PG{}: check, backup, status, audit", install.major);
        one_major(install);
    }
}
