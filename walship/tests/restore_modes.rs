//! What the restored server does, checked on Postgres itself, every major the harness finds:
//! `--target-exclusive` stops just before the target transaction; `--target-action pause`
//! leaves the server in recovery, paused at the target (`pg_get_wal_replay_pause_state` on
//! 14+, `pg_is_wal_replay_paused` on 13) until resumed, when it promotes; `--target-action
//! shutdown` shuts the server down at the target (and it recovers to the same rows once told
//! to promote); `--standby` brings up a hot standby that keeps replaying from the archive
//! through `walship fetch`, so a row written to the primary later shows up on it.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall};
use restore_support::{archiving_cluster, restore, start_restored, take_backup};
use support::{TestRepo, archive_everything, describe, wait_until};

const WAIT: Duration = Duration::from_secs(120);

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || batch::text from modes order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Inserts batch `batch` (ten rows) in one transaction; returns its xid.
fn write_batch(cluster: &Cluster, batch: i32) -> String {
    let mut client = cluster.client();
    let mut tx = client.transaction().unwrap();
    let xid: i64 = tx.query_one("select txid_current()", &[]).unwrap().get(0);
    tx.execute(
        "insert into modes select $1::int * 100 + g, $1::int from generate_series(1, 10) g",
        &[&batch],
    )
    .unwrap();
    tx.commit().unwrap();
    xid.to_string()
}

/// Restores into a fresh directory; panics unless it succeeds. Returns the directory's
/// guard and the data directory.
fn restored(repo: &TestRepo, args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = pg_test_harness::test_dir("modes");
    let to = dir.path().join("data");
    let out = restore(repo, &to, args);
    assert!(out.status.success(), "restore {args:?}: {}", describe(&out));
    (dir, to)
}

/// A server on a restored directory, not archiving, started (pg_ctl waits until it accepts
/// connections: a hot standby does once consistent).
fn start_in_recovery(install: &PgInstall, data: &std::path::Path) -> Cluster {
    let mut cluster = Cluster::from_data_dir(install, data);
    cluster.append_conf("archive_mode = off");
    cluster.start();
    cluster
}

fn in_recovery(cluster: &Cluster) -> bool {
    cluster.query_string("select pg_is_in_recovery()::text") == "true"
}

/// Postgres's own word on whether replay is paused.
fn replay_paused(cluster: &Cluster) -> bool {
    if cluster.install().major >= 14 {
        cluster.query_string("select pg_get_wal_replay_pause_state()") == "paused"
    } else {
        cluster.query_string("select pg_is_wal_replay_paused()::text") == "true"
    }
}

#[test]
fn target_exclusive_actions_and_standby_on_every_major() {
    for install in pg_test_harness::installs_under_test() {
        modes(&install);
        eprintln!(
            "PG{}: exclusive, pause, shutdown, promote and standby as asked",
            install.major
        );
    }
}

fn modes(install: &PgInstall) {
    let repo = TestRepo::local();
    let primary = archiving_cluster(install, &repo);
    primary.execute("create table modes (id int primary key, batch int)");
    write_batch(&primary, 1);
    take_backup(&primary, &repo);
    let before = rows(&primary);
    let xid = write_batch(&primary, 2);
    let at_target = rows(&primary);
    write_batch(&primary, 3);
    let at_end = rows(&primary);
    archive_everything(&primary, WAIT);
    let major = install.major;

    // --target-exclusive: the target transaction is not replayed.
    let (_guard, to) = restored(&repo, &["--target-xid", &xid, "--target-exclusive"]);
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("recovery_target_inclusive = off"), "{auto}");
    let exclusive = start_restored(install, &to);
    assert_eq!(rows(&exclusive), before, "PG{major} --target-exclusive");
    drop(exclusive);

    // pause: in recovery, paused at the target, readable; resumed, it promotes.
    let (_guard, to) = restored(&repo, &["--target-xid", &xid, "--target-action", "pause"]);
    let paused = start_in_recovery(install, &to);
    wait_until(WAIT, "replay paused at the target", || {
        replay_paused(&paused)
    });
    assert!(in_recovery(&paused), "PG{major} pause: not in recovery");
    assert_eq!(rows(&paused), at_target, "PG{major} paused at the target");
    paused.execute("select pg_wal_replay_resume()");
    wait_until(WAIT, "promotion after resume", || !in_recovery(&paused));
    assert_eq!(rows(&paused), at_target, "PG{major} promoted after pause");
    drop(paused);

    // shutdown: the server stops at the target, still a recovery directory.
    let (_guard, to) = restored(
        &repo,
        &["--target-xid", &xid, "--target-action", "shutdown"],
    );
    let mut stopped = Cluster::from_data_dir(install, &to);
    stopped.append_conf("archive_mode = off");
    // pg_ctl may or may not see it accept connections before it shuts down.
    let _ = stopped.try_start();
    wait_until(WAIT, "shutdown at the recovery target", || {
        !stopped.is_running()
    });
    assert!(
        stopped.log().contains("shutdown at recovery target"),
        "PG{major} shutdown: {}",
        stopped.log()
    );
    assert!(to.join("recovery.signal").exists());
    // Told to promote instead, it recovers to exactly the target.
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("recovery_target_action = 'shutdown'"),
        "{auto}"
    );
    std::fs::write(
        to.join("postgresql.auto.conf"),
        auto.replace(
            "recovery_target_action = 'shutdown'",
            "recovery_target_action = 'promote'",
        ),
    )
    .unwrap();
    drop(stopped);
    let promoted = start_restored(install, &to);
    assert_eq!(rows(&promoted), at_target, "PG{major} after shutdown");
    drop(promoted);

    // --standby: a hot standby replaying from the archive, and it keeps following it.
    let (_guard, to) = restored(&repo, &["--target", "latest", "--standby"]);
    assert!(to.join("standby.signal").exists() && !to.join("recovery.signal").exists());
    let standby = start_in_recovery(install, &to);
    wait_until(WAIT, "the standby replays the archive", || {
        rows(&standby) == at_end
    });
    assert!(in_recovery(&standby), "PG{major} standby promoted itself");
    primary.execute("insert into modes values (999, 9)");
    archive_everything(&primary, WAIT);
    wait_until(WAIT, "the late row reaches the standby", || {
        rows(&standby).last().map(String::as_str) == Some("999:9")
    });
    assert!(in_recovery(&standby), "PG{major} standby left recovery");
}
