//! `walship expire` and `verify` through the binary on a repository of incremental chains
//! (real PostgreSQL 17, local repository): full F1, its incrementals I1a and I1b, full F2 and
//! its incremental I2a, with WAL between them. A PITR window whose anchor is I1b would remove
//! F1 and I1a; they are kept (rule `chain_parent`) and the chain still restores to I1b's rows.
//! A window anchored at F2 removes the whole first chain (F1, I1a, I1b together) and the WAL
//! before F2; `verify` calls both results sound and the second chain restores to the latest
//! rows.

mod lifecycle_support;
mod restore_support;
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifecycle_support::{
    assert_sound, expire, ids, json, list, now_arg, objects, segment_objects, segno,
};
use pg_test_harness::{Cluster, StopMode};
use restore_support::{restore, start_restored};
use support::incremental::{backup_ok, cluster, install};
use support::{TestRepo, archive_everything, describe, switch_wal};

/// One backup taken by the test: its `--json` summary and the rows when it was taken.
struct Member {
    id: String,
    stop_time: DateTime<Utc>,
    start_lsn: String,
    rows: String,
}

#[test]
fn expire_keeps_or_removes_whole_chains() {
    let Some(install) = install(17) else {
        return;
    };
    let repo = TestRepo::local();
    let root = repo.local_root().to_path_buf();
    let pg = cluster(&install, &repo, true);
    pg.execute("create table t (i int)");
    pg.execute("checkpoint");
    let mut taken = Vec::new();
    for (n, incremental) in [false, true, true, false, true].into_iter().enumerate() {
        pg.execute(&format!(
            "insert into t select g from generate_series(1, {}) g",
            100 * (n + 1)
        ));
        switch_wal(&pg);
        switch_wal(&pg);
        let extra: &[&str] = if incremental { &["--incremental"] } else { &[] };
        let rows = rows(&pg);
        let b = backup_ok(&pg, &repo, extra);
        assert_eq!(b.get("parent").is_some(), incremental, "{b}");
        taken.push(Member {
            id: b["id"].as_str().unwrap().to_string(),
            stop_time: b["stop_time"].as_str().unwrap().parse().unwrap(),
            start_lsn: b["start_lsn"].as_str().unwrap().to_string(),
            rows,
        });
        // Backup ids are whole seconds; the windows below need 2 s between stop times.
        std::thread::sleep(Duration::from_millis(2100));
    }
    pg.execute("insert into t values (-1)");
    let latest = rows(&pg);
    archive_everything(&pg, Duration::from_secs(120));
    drop(pg);
    let [f1, i1a, i1b, f2, i2a] = &taken[..] else {
        unreachable!()
    };
    assert_sound(&repo, "five backups in two chains");

    // A window anchored at I1b: its parents are kept for the chain, nothing is removed.
    let now = now_arg(i1b.stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(2));
    let policy = ["--pitr-window", "1h", "--now", &now, "--force", "--json"];
    let mut dry = policy.to_vec();
    dry.push("--dry-run");
    let out = expire(&repo, &dry);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = json(&out)["plan"].clone();
    assert_eq!(plan["pitr"]["anchor"], i1b.id.as_str(), "{plan:#}");
    assert!(ids(&plan["removed"]).is_empty(), "{plan:#}");
    for parent in [f1, i1a] {
        let kept = plan["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == parent.id.as_str())
            .unwrap_or_else(|| panic!("{} kept: {plan:#}", parent.id));
        assert_eq!(
            kept["rules"],
            serde_json::json!(["chain_parent"]),
            "{plan:#}"
        );
    }
    let out = expire(&repo, &policy);
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert!(ids(&report["backups_removed"]).is_empty(), "{report:#}");
    assert_eq!(list(&repo).len(), 5);
    // The WAL of F1 itself stays (a kept backup keeps its own range).
    let f1_first = lsn_segno(&f1.start_lsn);
    assert!(
        segment_objects(&root).iter().any(|k| segno(k) == f1_first),
        "F1's first WAL segment is kept"
    );
    assert_sound(&repo, "after expire kept the chain");
    restored_rows(
        &install,
        &repo,
        &["--backup", &i1b.id, "--target", "immediate"],
        &i1b.rows,
    );

    // A window anchored at F2: the first chain goes, all of it, with its WAL.
    let now = now_arg(f2.stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(2));
    let policy = ["--pitr-window", "1h", "--now", &now, "--force", "--json"];
    let out = expire(&repo, &policy);
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert_eq!(
        ids(&report["backups_removed"]),
        [f1.id.clone(), i1a.id.clone(), i1b.id.clone()],
        "{report:#}"
    );
    let listed: Vec<String> = list(&repo)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [f2.id.clone(), i2a.id.clone()]);
    let left = objects(&root);
    for gone in [f1, i1a, i1b] {
        let prefix = format!("backups/{}/", gone.id);
        assert!(
            !left.iter().any(|k| k.starts_with(&prefix)),
            "{} removed whole: {left:?}",
            gone.id
        );
    }
    let floor = lsn_segno(&f2.start_lsn);
    assert!(
        segment_objects(&root).iter().all(|k| segno(k) >= floor),
        "no WAL below F2's start is left"
    );
    assert_sound(&repo, "after expire removed the first chain");
    restored_rows(&install, &repo, &["--target", "latest"], &latest);
}

fn rows(pg: &Cluster) -> String {
    pg.query_string("select count(*) || ':' || sum(i) from t")
}

/// The segment number (1 MiB segments) holding `lsn` ("X/X").
fn lsn_segno(lsn: &str) -> u64 {
    lifecycle_support::lsn(lsn) >> 20
}

/// Restores with `args`, starts Postgres on it and compares its rows to `want`.
fn restored_rows(install: &pg_test_harness::PgInstall, repo: &TestRepo, args: &[&str], want: &str) {
    let dir = pg_test_harness::test_dir("expire-incr-restored");
    let to = dir.path().join("data");
    let out = restore(repo, &to, args);
    assert!(out.status.success(), "restore {args:?}: {}", describe(&out));
    let mut restored = start_restored(install, &to);
    assert_eq!(rows(&restored), want, "rows after restore {args:?}");
    restored.stop(StopMode::Fast);
}
