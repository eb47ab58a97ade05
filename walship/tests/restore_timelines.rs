//! `walship restore` across timelines, on every major: a restored cluster is promoted
//! (timeline 2), writes more and archives into the same repository; restores to a point on
//! timeline 2 (crossing the switch from a timeline-1 backup), to a point on timeline 1
//! before the switch, and (`--target-timeline 1`) to a point on timeline 1 after it are
//! each exact.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall};
use restore_support::{
    archiving_cluster, restore, start_restored, start_restored_with, take_backup,
};
use support::{TestRepo, archive_everything, describe};

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || note from tl order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Inserts a batch and returns (UTC time just after its commit, rows then).
fn batch(cluster: &Cluster, from: i32, note: &str) -> (String, Vec<String>) {
    cluster.execute(&format!(
        "insert into tl select g, '{note}' from generate_series({from}, {}) g",
        from + 99
    ));
    std::thread::sleep(Duration::from_millis(30));
    let time = restore_support::utc_now(cluster);
    let now = rows(cluster);
    std::thread::sleep(Duration::from_millis(30));
    (time, now)
}

fn restore_ok(repo: &TestRepo, to: &std::path::Path, args: &[&str]) -> String {
    let out = restore(repo, to, args);
    assert!(out.status.success(), "restore {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restore_and_compare(install: &PgInstall, repo: &TestRepo, args: &[&str], want: &[String]) {
    let dir = pg_test_harness::test_dir("tl-restored");
    let to = dir.path().join("data");
    let plan = restore_ok(repo, &to, args);
    let restored = start_restored(install, &to);
    let got = rows(&restored);
    assert!(
        got == want,
        "PG{} {args:?}: {} rows, {} expected\n{plan}",
        install.major,
        got.len(),
        want.len()
    );
}

#[test]
fn restores_along_and_across_timelines_on_every_major() {
    let Some(probe) = TestRepo::s3() else {
        return;
    };
    drop(probe);
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
        let primary = archiving_cluster(&install, &repo);
        primary.execute("create table tl (id int primary key, note text)");
        batch(&primary, 0, "tl1-before-backup");
        take_backup(&primary, &repo);
        let (t_early, rows_early) = batch(&primary, 100, "tl1-early");
        let (t_switch, _) = batch(&primary, 200, "tl1-at-switch");
        let (t_late, rows_late) = batch(&primary, 300, "tl1-after-switch");
        primary.execute("create table tl1_tail as select 1 as x");
        archive_everything(&primary, Duration::from_secs(120));

        // Promote a restored copy at t_switch: timeline 2, archiving into the same repository.
        let branch_dir = pg_test_harness::test_dir("tl-branch");
        let branch_data = branch_dir.path().join("data");
        restore_ok(&repo, &branch_data, &["--target-time", &t_switch]);
        let branch = start_restored_with(&install, &branch_data, true);
        assert_eq!(
            branch.query_string("select timeline_id::text from pg_control_checkpoint()"),
            "2"
        );
        let (t_tl2, rows_tl2) = batch(&branch, 400, "tl2");
        branch.execute("create table tl2_tail as select 1 as x");
        archive_everything(&branch, Duration::from_secs(120));

        // Latest timeline (2): crossing the switch from the timeline-1 backup.
        restore_and_compare(&install, &repo, &["--target-time", &t_tl2], &rows_tl2);
        // Timeline 1 before the switch, along the path to timeline 2.
        restore_and_compare(&install, &repo, &["--target-time", &t_early], &rows_early);
        // Timeline 1 after the switch: only along timeline 1.
        restore_and_compare(
            &install,
            &repo,
            &["--target-time", &t_late, "--target-timeline", "1"],
            &rows_late,
        );
        // Along timeline 2, timeline 1's later rows are not reachable.
        let dir = pg_test_harness::test_dir("tl-refused");
        let out = restore(
            &repo,
            &dir.path().join("data"),
            &["--target-time", &t_late, "--dry-run"],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("WAL timeline 2:") && stdout.contains("WAL timeline 1:"),
            "{}",
            describe(&out)
        );
        eprintln!("PG{}: timeline restores exact", install.major);
    }
}
