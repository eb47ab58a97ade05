//! `walship backup --incremental` right after a standby promotion, on real PostgreSQL 17 and
//! 18 with a local repository. A primary takes a full backup; a hot standby restored from it
//! (`walship restore --standby`, replaying the archive, `summarize_wal = on`) follows the
//! primary; the primary stops and the standby is promoted (timeline 2). The first
//! `--incremental` against the promoted server takes a full backup and says why: its parent
//! ended on timeline 1, and PostgreSQL's WAL summaries of the old timeline may cover WAL the
//! standby never replayed (the open pgsql-hackers report, see README "Incremental backups"),
//! so an incremental across the switch could silently miss blocks. The next `--incremental`
//! builds on that full (same timeline), and the chain restores to the promoted server's rows.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use restore_support::restore;
use restore_support::{start_restored, verify::verify_restored};
use support::incremental::{backup, backup_ok, cluster, install};
use support::{TestRepo, archive_everything, describe, wait_until};

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn incremental_after_promotion_is_a_full_on_17_and_18() {
    for major in [17, 18] {
        if let Some(install) = install(major) {
            after_promotion(&install);
        }
    }
}

fn after_promotion(install: &PgInstall) {
    let major = install.major;
    let repo = TestRepo::local();
    let mut primary = cluster(install, &repo, true);
    primary.execute("create table t (id int primary key, batch int)");
    insert(&primary, 1);
    primary.execute("checkpoint");
    let full = backup_ok(&primary, &repo, &[]);

    // A hot standby of the primary, replaying the archive, summarizing its WAL, archiving
    // once promoted.
    let dir = pg_test_harness::test_dir("incr-standby");
    let data = dir.path().join("data");
    let out = restore(&repo, &data, &["--target", "latest", "--standby"]);
    assert!(
        out.status.success(),
        "PG{major}: restore --standby: {}",
        describe(&out)
    );
    let mut standby = Cluster::from_data_dir(install, &data);
    standby.start();
    insert(&primary, 2);
    archive_everything(&primary, WAIT);
    let on_primary = rows(&primary);
    wait_until(WAIT, "the standby replays batch 2", || {
        rows(&standby) == on_primary
    });
    primary.stop(StopMode::Fast);
    drop(primary);

    standby.execute("select pg_promote(true, 60)");
    wait_until(WAIT, "the standby is promoted", || {
        standby.query_string("select pg_is_in_recovery()::text") == "false"
    });
    let wal = standby.query_string("select pg_walfile_name(pg_current_wal_lsn())");
    assert!(
        wal.starts_with("00000002"),
        "PG{major}: promoted to timeline 2: {wal}"
    );
    insert(&standby, 3);

    // Across the switch: a full, and it says why.
    let out = backup(&standby, &repo, &["--incremental"]);
    assert!(
        out.status.success(),
        "PG{major}: backup --incremental after promotion: {}",
        describe(&out)
    );
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(after.get("parent").is_none(), "PG{major}: a full: {after}");
    let reason = after["full_instead_of_incremental"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!(
            "parent backup {} ended on timeline 1",
            full["id"].as_str().unwrap()
        )) && reason.contains("incrementals across a timeline switch are not trusted"),
        "PG{major}: {after}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("taking a full backup instead of an incremental"),
        "PG{major}: said on stderr: {}",
        describe(&out)
    );

    // On the new timeline, incrementals build on that full again.
    insert(&standby, 4);
    let incr = backup_ok(&standby, &repo, &["--incremental"]);
    assert_eq!(incr["parent"], after["id"], "PG{major}: {incr}");
    assert_eq!(incr["chain_depth"], 1, "PG{major}: {incr}");
    insert(&standby, 5);
    let want = rows(&standby);
    archive_everything(&standby, WAIT);
    standby.stop(StopMode::Fast);
    drop(standby);

    let dir = pg_test_harness::test_dir("incr-promoted-restored");
    let to = dir.path().join("data");
    let out = restore(&repo, &to, &["--target", "latest", "--dry-run", "--json"]);
    assert!(out.status.success(), "PG{major}: {}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let chain: Vec<&str> = plan["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        chain,
        [after["id"].as_str().unwrap(), incr["id"].as_str().unwrap()],
        "PG{major}: {plan}"
    );
    let out = restore(&repo, &to, &["--target", "latest"]);
    assert!(
        out.status.success(),
        "PG{major}: restore: {}",
        describe(&out)
    );
    verify_restored(install, &to, false);
    let mut restored = start_restored(install, &to);
    assert_eq!(rows(&restored), want, "PG{major}: rows after the restore");
    restored.stop(StopMode::Fast);
    eprintln!("PG{major}: incremental after promotion was a full; the next chain restores");
}

/// Inserts batch `batch` (100 rows).
fn insert(pg: &Cluster, batch: i32) {
    pg.execute(&format!(
        "insert into t select g, {batch} from generate_series({} , {}) g",
        batch * 1000,
        batch * 1000 + 99
    ));
}

fn rows(pg: &Cluster) -> Vec<String> {
    pg.query_rows("select id::text || ':' || batch::text from t order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}
