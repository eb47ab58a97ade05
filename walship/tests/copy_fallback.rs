//! Fallback repositories (issue 23, test 4): `fetch` and the `restore_command` that
//! `restore --fallback-repo` writes read the next repository when the primary is
//! unreachable. With the primary (SeaweedFS) stopped and a `walship copy` of it as fallback,
//! `restore` reads the fallback and recovery completes with the rows equal; with the primary stopped and the fallback missing
//! a segment, `fetch` exits above 125 and Postgres stops rather than promote.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::Cluster;
use restore_support::{archiving_cluster, restore, start_restored, utc_now, walship_backup};
use support::{TestRepo, archive_everything, describe, wait_until};

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || v from fell_back order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

#[test]
fn recovery_reads_the_fallback_when_the_primary_is_down_and_stops_when_both_fail() {
    let Some(install) = support::pg15_or_first() else {
        return;
    };
    let Some(mut primary) = TestRepo::s3() else {
        return;
    };
    let fallback = TestRepo::local();
    let cluster = archiving_cluster(&install, &primary);
    cluster.execute("create table fell_back (id int primary key, v text)");
    cluster.execute("insert into fell_back select g, md5(g::text) from generate_series(1, 2000) g");
    walship_backup(&cluster, &primary);
    cluster.execute("insert into fell_back select g, 'after' from generate_series(2001, 2600) g");
    let needed = cluster.query_string("select pg_walfile_name(pg_current_wal_lsn())");
    std::thread::sleep(Duration::from_millis(30));
    let time = utc_now(&cluster);
    let want = rows(&cluster);
    std::thread::sleep(Duration::from_millis(30));
    cluster.execute("delete from fell_back");
    // Several segments of WAL past the target (no switches: Postgres 15 reads ahead of
    // replay, and a switch record sends it straight to the next segment), so that replay
    // stops at the target without asking for a segment that exists nowhere (which, with
    // the primary down, is not "absent").
    cluster.execute(
        "insert into fell_back select g, repeat('x', 200) from generate_series(10000, 30000) g",
    );
    archive_everything(&cluster, Duration::from_secs(120));
    drop(cluster);
    let out = primary.walship(&["copy", "--to", &fallback.url]);
    assert!(out.status.success(), "copy: {}", describe(&out));
    // The copy ran as this test's user; fetch runs as the cluster's.
    support::chown_tree_like(fallback.local_root(), fallback.dir.path());

    let restore_to = |primary: &TestRepo, what: &str| {
        let dir = pg_test_harness::test_dir("fallback-restored");
        let to = dir.path().join("data");
        let out = restore(
            primary,
            &to,
            &["--target-time", &time, "--fallback-repo", &fallback.url],
        );
        assert!(out.status.success(), "restore ({what}): {}", describe(&out));
        let conf = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
        assert!(
            conf.contains(&format!("--fallback-repo {}", fallback.url))
                || conf.contains(&format!("--fallback-repo '{}'", fallback.url)),
            "{conf}"
        );
        (dir, to)
    };
    // One directory restored while the primary is up; then it goes away, and the other is
    // restored from the fallback.
    let broken_dir = restore_to(&primary, "primary up");
    primary.s3.as_mut().unwrap().stop();
    let good_dir = restore_to(&primary, "primary down");
    let dirs = [good_dir, broken_dir];

    // fetch itself: primary unreachable, the fallback delivers.
    let dest = primary.dir.path().join("fetched");
    let out = primary.walship(&[
        "--fallback-repo",
        &fallback.url,
        "fetch",
        &needed,
        dest.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "fetch from the fallback: {}",
        describe(&out)
    );

    // Recovery completes from the fallback alone.
    let restored = start_restored(&install, &dirs[0].1);
    assert_eq!(rows(&restored), want);
    drop(restored);

    // The fallback loses the segment the target needs: unreachable + absent is not "absent".
    let segment = fallback
        .local_root()
        .join("wal")
        .join(&needed[..16])
        .join(&needed);
    std::fs::remove_file(&segment).unwrap();
    let out = primary.walship(&[
        "--fallback-repo",
        &fallback.url,
        "fetch",
        &needed,
        dest.to_str().unwrap(),
    ]);
    let code = out.status.code().unwrap();
    assert!(code > 125, "fetch must not say absent: {}", describe(&out));
    // Without the primary at all, the fallback's answer is the only one: absent.
    let out = fallback.walship(&["fetch", &needed, dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let mut broken = Cluster::from_data_dir(&install, &dirs[1].1);
    broken.append_conf("archive_mode = off");
    let started = broken.try_start();
    wait_until(
        Duration::from_secs(120),
        "Postgres to stop recovery",
        || !broken.is_running(),
    );
    let log = broken.log();
    assert!(started.is_err() || log.contains("FATAL"), "{log}");
    assert!(
        !log.contains("selected new timeline ID"),
        "promoted:\n{log}"
    );
    assert!(
        dirs[1].1.join("recovery.signal").exists(),
        "recovery must not have ended"
    );
}
