//! `walship restore` of backups taken by `walship backup` (the real manifest and bundles,
//! not the tests' low-level copies), on every major: restore to a recorded time after the
//! backup; the restored directory verifies against Postgres's own `backup_manifest`
//! (`pg_verifybackup` before the server starts); start Postgres, compare rows;
//! `pg_checksums --check` on 15.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::Cluster;
use restore_support::verify::verify_restored;
use restore_support::{
    archiving_cluster, restore, start_restored, stop_and_check_checksums, utc_now, walship_backup,
};
use support::{TestRepo, archive_everything, describe};

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || v from real_backup order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

#[test]
fn restores_walship_backups_to_a_time_on_every_major() {
    let Some(probe) = TestRepo::s3() else {
        return;
    };
    drop(probe);
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
        let cluster = archiving_cluster(&install, &repo);
        cluster.execute("create table real_backup (id int primary key, v text)");
        cluster.execute(
            "insert into real_backup select g, md5(g::text) from generate_series(1, 2000) g",
        );
        walship_backup(&cluster, &repo);
        cluster.execute(
            "insert into real_backup select g, 'after' from generate_series(2001, 2500) g",
        );
        std::thread::sleep(Duration::from_millis(30));
        let time = utc_now(&cluster);
        let want = rows(&cluster);
        std::thread::sleep(Duration::from_millis(30));
        cluster.execute("delete from real_backup");
        archive_everything(&cluster, Duration::from_secs(120));

        let dir = pg_test_harness::test_dir("real-restored");
        let to = dir.path().join("data");
        let out = restore(&repo, &to, &["--target-time", &time]);
        assert!(
            out.status.success(),
            "PG{} restore: {}",
            install.major,
            describe(&out)
        );
        verify_restored(&install, &to, false);
        let mut restored = start_restored(&install, &to);
        assert_eq!(rows(&restored), want, "PG{}", install.major);
        stop_and_check_checksums(&mut restored);
        eprintln!("PG{}: walship backup restored to a time", install.major);
    }
}
