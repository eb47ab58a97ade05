//! `walship restore` against real Postgres (every major the harness finds) and real
//! SeaweedFS: the story (batches recorded by time, LSN and XID, a restore point, a dropped
//! table) restored to each recorded point, started, and compared row by row.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall};
use restore_support::{
    archiving_cluster, restore, start_restored, stop_and_check_checksums, take_backup,
};
use support::{TestRepo, archive_everything, describe};

/// What the table held right after one batch committed.
#[derive(Debug, Clone)]
struct Point {
    batch: i32,
    time: String,
    lsn: String,
    xid: String,
    rows: Vec<String>,
}

fn contents(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows(
            "select id::text || ':' || batch::text || ':' || payload from story order by id",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn write_batch(cluster: &Cluster, batch: i32) -> Point {
    let mut client = cluster.client();
    let mut tx = client.transaction().unwrap();
    let xid: i64 = tx.query_one("select txid_current()", &[]).unwrap().get(0);
    tx.execute(
        "insert into story (batch, payload) select $1::int, md5(g::text || $1::int::text) from generate_series(1, 500) g",
        &[&batch],
    )
    .unwrap();
    tx.commit().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let time = restore_support::utc_now(cluster);
    let lsn = cluster.query_string("select pg_current_wal_lsn()::text");
    let rows = contents(cluster);
    std::thread::sleep(Duration::from_millis(30));
    Point {
        batch,
        time,
        lsn,
        xid: xid.to_string(),
        rows,
    }
}

/// Restores to `args`, starts Postgres, and checks the rows are `want`.
fn restore_and_compare(install: &PgInstall, repo: &TestRepo, args: &[&str], want: &[String]) {
    let dir = pg_test_harness::test_dir("restored");
    let to = dir.path().join("data");
    let out = restore(repo, &to, args);
    assert!(out.status.success(), "restore {args:?}: {}", describe(&out));
    let mut restored = start_restored(install, &to);
    let got = contents(&restored);
    assert!(
        got == want,
        "PG{} restore {args:?}: {} rows restored, {} expected (first differing: {:?})\n{}",
        install.major,
        got.len(),
        want.len(),
        got.iter().zip(want).find(|(a, b)| a != b),
        String::from_utf8_lossy(&out.stdout)
    );
    stop_and_check_checksums(&mut restored);
}

#[test]
fn story_restores_every_recorded_point_on_every_major() {
    let Some(probe) = TestRepo::s3() else {
        return;
    };
    drop(probe);
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
        let cluster = archiving_cluster(&install, &repo);
        cluster.execute("create table story (id serial primary key, batch int, payload text)");
        write_batch(&cluster, 0);
        take_backup(&cluster, &repo);
        let mut points = Vec::new();
        for batch in 1..=4 {
            if batch == 3 {
                take_backup(&cluster, &repo);
            }
            points.push(write_batch(&cluster, batch));
        }
        cluster.execute("select pg_create_restore_point('before-drop')");
        let at_name = contents(&cluster);
        std::thread::sleep(Duration::from_millis(30));
        cluster.execute("drop table story");
        cluster.execute("create table after_drop as select 1 as x");
        archive_everything(&cluster, Duration::from_secs(120));

        for p in points.iter().filter(|p| p.batch == 1 || p.batch == 4) {
            restore_and_compare(&install, &repo, &["--target-time", &p.time], &p.rows);
            restore_and_compare(&install, &repo, &["--target-lsn", &p.lsn], &p.rows);
            restore_and_compare(&install, &repo, &["--target-xid", &p.xid], &p.rows);
        }
        let p2 = &points[1];
        restore_and_compare(
            &install,
            &repo,
            &["--target-time", &p2.time, "--resolve-lsn"],
            &p2.rows,
        );
        restore_and_compare(&install, &repo, &["--target-name", "before-drop"], &at_name);
        // The newest backup (taken right after batch 2) at its consistency point.
        restore_and_compare(&install, &repo, &["--target", "immediate"], &points[1].rows);
        // The end of the archive: the table is gone, what came after the drop is there.
        let dir = pg_test_harness::test_dir("restored");
        let to = dir.path().join("data");
        let out = restore(&repo, &to, &["--target", "latest"]);
        assert!(out.status.success(), "restore latest: {}", describe(&out));
        let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
        assert!(auto.contains("fetch --allow-partial %f %p"), "{auto}");
        let mut latest = start_restored(&install, &to);
        assert_eq!(
            latest.query_string("select count(*)::text from pg_class where relname = 'story'"),
            "0"
        );
        assert_eq!(latest.query_string("select x::text from after_drop"), "1");
        stop_and_check_checksums(&mut latest);
        eprintln!(
            "PG{}: story restored to every recorded point",
            install.major
        );
    }
}
