//! Helpers of the incremental-backup tests (PostgreSQL 17+): an archiving cluster with
//! `summarize_wal` as asked, and `walship backup --json` against it.

use pg_test_harness::{Cluster, PgInstall};

use super::{TestRepo, describe};

/// The installed major `major`, or `None` after the harness's loud skip (a failure on CI).
pub fn install(major: u32) -> Option<PgInstall> {
    let found = pg_test_harness::installs()
        .into_iter()
        .find(|i| i.major == major);
    if found.is_none() {
        pg_test_harness::ci::skip_or_fail(&format!("PostgreSQL {major} is not installed"));
    }
    found
}

/// A running cluster archiving into `repo` (1 MiB WAL segments, no autovacuum, no timed
/// checkpoints), with `summarize_wal` on or off.
pub fn cluster(install: &PgInstall, repo: &TestRepo, summarize: bool) -> Cluster {
    Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .setting("checkpoint_timeout", "'1h'")
        .setting("autovacuum", "off")
        .setting("summarize_wal", if summarize { "on" } else { "off" })
        .start()
}

/// `walship backup --json --checkpoint fast <extra>` against `cluster`; the output.
pub fn backup(cluster: &Cluster, repo: &TestRepo, extra: &[&str]) -> std::process::Output {
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let mut args = vec![
        "backup",
        "-d",
        &conn,
        "--checkpoint",
        "fast",
        "--json",
        "--wal-timeout",
        "60s",
    ];
    args.extend_from_slice(extra);
    repo.walship(&args)
}

/// [`backup`], which must succeed; its `--json` summary.
pub fn backup_ok(cluster: &Cluster, repo: &TestRepo, extra: &[&str]) -> serde_json::Value {
    let out = backup(cluster, repo, extra);
    assert!(
        out.status.success(),
        "walship backup {extra:?}: {}",
        describe(&out)
    );
    serde_json::from_slice(&out.stdout).expect("backup --json")
}
