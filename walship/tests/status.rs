//! `walship status` through the binary on real Postgres 15 and a file:// repository: a
//! healthy repository (backups, PITR window, newest WAL, last drill; exit 0), a stale one
//! (--max-wal-age, --max-backup-age; exit 4 naming each), a gapped one (exit 4 naming the
//! missing segment).

mod restore_support;
mod support;

use std::time::Duration;

use restore_support::{archiving_cluster, walship_backup};
use support::{TestRepo, archive_everything, describe, switch_wal};

fn status(repo: &TestRepo, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(extra);
    let out = repo.walship(&args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e}): {}", describe(&out)));
    (out.status.code(), json)
}

#[test]
fn status_on_healthy_stale_and_gapped_repositories() {
    let install = pg_test_harness::installs()
        .into_iter()
        .find(|i| i.major == 15)
        .expect("PostgreSQL 15");
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t (id int, at timestamptz default clock_timestamp())");
    walship_backup(&cluster, &repo);
    for i in 0..3 {
        cluster.execute(&format!("insert into t (id) values ({i})"));
        switch_wal(&cluster);
    }
    archive_everything(&cluster, Duration::from_secs(60));
    // When the last row's statement ran: its commit follows within moments.
    let last_insert = cluster.query_string(
        "select to_char(max(at) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from t",
    );
    let out = repo.walship(&["drill"]);
    assert!(out.status.success(), "drill: {}", describe(&out));

    let (code, json) = status(&repo, &["--max-wal-age", "10m", "--max-backup-age", "1h"]);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["healthy"], true);
    assert_eq!(json["backups"], 1);
    assert_eq!(json["oldest_backup"]["id"], json["newest_backup"]["id"]);
    let window = &json["pitr_window"];
    // The window ends at the last commit: after its row's statement ran (any earlier commit
    // is before it), and within a second of it (no later transaction exists).
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
    let latest = time(window["latest"].as_str().unwrap());
    let after_insert = latest - time(&last_insert);
    assert!(
        after_insert >= chrono::Duration::zero() && after_insert < chrono::Duration::seconds(1),
        "window {window:#} does not end at the last commit (its row was inserted at {last_insert})"
    );
    assert!(window["seconds"].as_f64().unwrap() > 0.0);
    assert!(json["wal_age_seconds"].as_f64().unwrap() < 600.0);
    assert!(
        json["timelines"][0]["segments"].as_u64().unwrap() >= 4,
        "{json:#}"
    );
    assert!(json["repository_bytes"].as_u64().unwrap() > json["wal_bytes"].as_u64().unwrap());
    assert_eq!(json["last_drill"]["passed"], true);
    assert_eq!(json["gaps"], serde_json::json!([]));

    // Stale: both ages exceeded, each named.
    std::thread::sleep(Duration::from_millis(2100));
    let (code, json) = status(&repo, &["--max-wal-age", "1s", "--max-backup-age", "2s"]);
    assert_eq!(code, Some(4), "{json:#}");
    let why = json["unhealthy_because"].to_string();
    assert!(
        why.contains("--max-wal-age") && why.contains("--max-backup-age"),
        "{why}"
    );
    let text = repo.walship(&["status", "--max-wal-age", "1s"]);
    assert_eq!(text.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&text.stdout).contains("UNHEALTHY:     newest WAL is"));

    // Gapped: the second-newest segment removed.
    let newest = json["timelines"][0]["last"].as_str().unwrap().to_string();
    let segno = u64::from_str_radix(&newest[16..], 16).unwrap() - 1;
    let gone = format!("{}{:08X}", &newest[..16], segno);
    std::fs::remove_file(repo.local_root().join("wal").join(&gone[..16]).join(&gone)).unwrap();
    let (code, json) = status(&repo, &[]);
    assert_eq!(code, Some(4), "{json:#}");
    assert_eq!(json["gaps"], serde_json::json!([gone]), "{json:#}");
    assert!(json["unhealthy_because"].to_string().contains(&gone));
}
