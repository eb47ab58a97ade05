//! `walship check` through the binary on real Postgres 15 and a file:// repository: a
//! cluster archiving into the repository passes every check and its switched segment
//! arrives; a misconfigured cluster (archiving off, wal_level minimal, no WAL senders) has
//! each problem named; an archive_command naming another repository is named, and its
//! segment never arrives.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::Cluster;
use restore_support::archiving_cluster;
use support::{TestRepo, describe};

fn check(repo: &TestRepo, cluster: &Cluster, timeout: &str) -> (Option<i32>, serde_json::Value) {
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let out = repo.walship(&["check", "-d", &conn, "--json", "--timeout", timeout]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json ({e}): {}", describe(&out)));
    (out.status.code(), json)
}

fn failed(json: &serde_json::Value) -> Vec<String> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn check_passes_on_a_configured_cluster_and_names_each_misconfiguration() {
    let install = pg_test_harness::installs()
        .into_iter()
        .find(|i| i.major == 15)
        .expect("PostgreSQL 15");
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t as select 1 as x");
    let (code, json) = check(&repo, &cluster, "60s");
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["ok"], true, "{json:#}");
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
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
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }

    // archive_command pointed at another repository: named, and the segment never arrives.
    let other = TestRepo::local();
    cluster.execute(&format!(
        "alter system set archive_command = '{}'",
        other.archive_command("").replace('\'', "''")
    ));
    cluster.reload();
    std::thread::sleep(Duration::from_millis(300));
    let (code, json) = check(&repo, &cluster, "3s");
    assert_eq!(code, Some(4), "{json:#}");
    assert_eq!(
        failed(&json),
        ["archive_command", "WAL switch archived"],
        "{json:#}"
    );
    drop(cluster);

    // Archiving off, wal_level minimal, no WAL senders: each named, with its fix.
    let plain = Cluster::builder(&install)
        .setting("wal_level", "minimal")
        .setting("max_wal_senders", "0")
        .setting("archive_mode", "off")
        .start();
    let (code, json) = check(&repo, &plain, "2s");
    assert_eq!(code, Some(4), "{json:#}");
    let bad = failed(&json);
    for name in [
        "archive_mode",
        "archive_command",
        "wal_level",
        "max_wal_senders",
    ] {
        assert!(
            bad.contains(&name.to_string()),
            "{name} not named: {json:#}"
        );
    }
    assert!(
        bad.contains(&"repository of this cluster".to_string()),
        "another cluster's repository not named: {json:#}"
    );
    let text = {
        let conn = format!("host=127.0.0.1 port={} user=postgres", plain.port());
        repo.walship(&["check", "-d", &conn, "--timeout", "1s"])
    };
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("FAIL  wal_level: wal_level = minimal\n      fix: set wal_level = replica"),
        "{stdout}"
    );
}
