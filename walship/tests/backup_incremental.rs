//! `walship backup --incremental` (PostgreSQL 17+) and the restore of a chain, on real
//! servers of 17 and 18: full, workload, incremental, workload, incremental; restore to a
//! time after the second incremental (the chain is chosen by itself); the restored directory
//! checks against its rewritten `backup_manifest` (sizes and CRC-32C of every file, the
//! manifest's own SHA-256); Postgres recovers it and the rows are the recorded ones. The
//! relation files rebuilt from the chain are byte-equal to those of a full backup taken
//! right after the second incremental. And the refusals: a server older than 17, a server
//! with `summarize_wal` off, a `--from` that does not exist: exit 4, nothing stored.

mod restore_support;
mod support;

use std::path::Path;
use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall};
use restore_support::verify::verify_restored;
use restore_support::{restore, start_restored, utc_now};
use support::incremental::{backup, backup_ok, cluster, install};
use support::{TestRepo, archive_everything, describe};

fn rows(cluster: &Cluster) -> Vec<String> {
    let mut out: Vec<String> = cluster
        .query_rows("select 'db:' || datname from pg_database order by datname")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    for table in ["t", "trunc_me", "newt", "marker"] {
        for r in cluster.query_rows(&format!(
            "select '{table}:' || id::text || ':' || v from {table} order by id"
        )) {
            out.push(r[0].clone().unwrap_or_default());
        }
    }
    out
}

fn backups_stored(repo: &TestRepo) -> usize {
    let dir = repo.local_root().join("backups");
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn incremental_chain_restores_on_17_and_18() {
    for major in [17, 18] {
        let Some(install) = install(major) else {
            continue;
        };
        let repo = TestRepo::local();
        chain_on(&install, &repo);
        if major == 17 {
            broken_chain_is_named(&repo);
        }
    }
}

#[test]
fn incremental_chain_restores_from_s3() {
    let Some(install) = install(17) else {
        return;
    };
    let Some(repo) = TestRepo::s3() else {
        return;
    };
    chain_on(&install, &repo);
}

/// Full, workload, incremental, workload, incremental on `install` into `repo`; restores
/// and compares (see the file's doc).
fn chain_on(install: &PgInstall, repo: &TestRepo) {
    let major = install.major;
    let pg = cluster(install, repo, true);
    pg.execute("create database d_drop");
    pg.execute("create table t (id int primary key, v text)");
    pg.execute("insert into t select g, md5(g::text) from generate_series(1, 5000) g");
    pg.execute("create table trunc_me (id int, v text)");
    pg.execute("insert into trunc_me select g, repeat('x', 200) from generate_series(1, 3000) g");
    pg.execute("create table gone (id int, v text)");
    pg.execute("insert into gone select g, 'g' from generate_series(1, 1000) g");
    pg.execute("create table marker (id int, v text)");
    // WAL summaries exist only from the checkpoint after summarize_wal came on.
    pg.execute("checkpoint");
    let full = backup_ok(&pg, repo, &[]);
    assert!(full.get("parent").is_none(), "PG{major}: {full}");

    // Workload 1: updates, inserts, a truncation, a table created and one dropped.
    pg.execute("update t set v = 'one' where id % 10 = 0");
    pg.execute("insert into t select g, 'w1' from generate_series(5001, 6000) g");
    pg.execute("truncate trunc_me");
    pg.execute("insert into trunc_me select g, 'small' from generate_series(1, 10) g");
    pg.execute("create table newt (id int, v text)");
    pg.execute("insert into newt select g, md5(g::text) from generate_series(1, 2000) g");
    pg.execute("drop table gone");
    pg.execute("drop database d_drop");
    pg.execute("create database d_new");
    let i1 = backup_ok(&pg, repo, &["--incremental"]);
    assert_eq!(i1["parent"], full["id"], "PG{major}: {i1}");
    assert_eq!(i1["chain_depth"], 1, "PG{major}: {i1}");
    assert!(
        i1["bytes_raw"].as_u64().unwrap() < full["bytes_raw"].as_u64().unwrap(),
        "PG{major}: the incremental is smaller than the full: {i1}"
    );

    // Workload 2: more changes, a table extended.
    pg.execute("update t set v = 'two' where id % 7 = 0");
    pg.execute("delete from t where id % 13 = 0");
    pg.execute("insert into newt select g, 'w2' from generate_series(2001, 30000) g");
    // Set hint bits and freeze now, so that no page changes between the second
    // incremental and the full taken after it (the byte comparison below).
    pg.execute("vacuum freeze");
    pg.execute("checkpoint");
    let i2 = backup_ok(&pg, repo, &["--incremental"]);
    assert_eq!(i2["parent"], i1["id"], "PG{major}: {i2}");
    assert_eq!(i2["chain_depth"], 2, "PG{major}: {i2}");
    let paths: Vec<String> = ["t", "trunc_me", "newt"]
        .iter()
        .map(|t| pg.query_string(&format!("select pg_relation_filepath('{t}')")))
        .collect();

    pg.execute("insert into marker values (1, 'after the second incremental')");
    std::thread::sleep(Duration::from_millis(30));
    let time = utc_now(&pg);
    let want = rows(&pg);
    std::thread::sleep(Duration::from_millis(30));
    // A full backup after the target (so that the target needs the chain), then damage.
    let f1 = backup_ok(&pg, repo, &[]);
    pg.execute("delete from t");
    pg.execute("delete from marker");
    archive_everything(&pg, Duration::from_secs(120));

    // list and info show the chain.
    let list = repo.walship(&["list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(&format!(
            "incremental of {}, depth 2",
            i1["id"].as_str().unwrap()
        )),
        "PG{major}: list: {text}"
    );

    // --dry-run shows the chain and what each member costs.
    let dir = pg_test_harness::test_dir("incr-restored");
    let to = dir.path().join("data");
    let dry = restore(repo, &to, &["--target-time", &time, "--dry-run", "--json"]);
    assert!(
        dry.status.success(),
        "PG{major}: dry run: {}",
        describe(&dry)
    );
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("plan JSON");
    let chain: Vec<&str> = plan["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        chain,
        [
            full["id"].as_str().unwrap(),
            i1["id"].as_str().unwrap(),
            i2["id"].as_str().unwrap()
        ],
        "PG{major}: {plan}"
    );

    let out = restore(repo, &to, &["--target-time", &time]);
    assert!(
        out.status.success(),
        "PG{major}: restore: {}",
        describe(&out)
    );
    assert_no_incremental_files(&to);
    let manifest = std::fs::read_to_string(to.join("backup_manifest")).unwrap();
    assert!(
        walship_common::pg::backup_manifest::checksum_matches(&manifest),
        "PG{major}: the rewritten backup_manifest's checksum"
    );
    let label = std::fs::read_to_string(to.join("backup_label")).unwrap();
    assert!(!label.contains("INCREMENTAL"), "PG{major}: {label}");
    verify_restored(install, &to, false);
    let chain_files: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(to.join(p)).unwrap())
        .collect();
    let mut restored = start_restored(install, &to);
    assert_eq!(
        rows(&restored),
        want,
        "PG{major}: rows after the chain restore"
    );
    restored.stop(pg_test_harness::StopMode::Fast);
    drop(restored);

    // The rebuilt relation files equal the full backup's taken right after (no page of
    // these tables changed in between).
    let dir_full = pg_test_harness::test_dir("incr-full-restored");
    let to_full = dir_full.path().join("data");
    let f1_id = f1["id"].as_str().unwrap();
    let out = restore(
        repo,
        &to_full,
        &["--backup", f1_id, "--target", "immediate"],
    );
    assert!(
        out.status.success(),
        "PG{major}: restore full: {}",
        describe(&out)
    );
    for (path, chain_bytes) in paths.iter().zip(&chain_files) {
        let full_bytes = std::fs::read(to_full.join(path)).unwrap();
        assert!(
            full_bytes.len() == chain_bytes.len() && full_bytes == *chain_bytes,
            "PG{major}: {path} rebuilt from the chain ({} bytes) differs from the full backup's ({} bytes)",
            chain_bytes.len(),
            full_bytes.len()
        );
    }
    eprintln!("PG{major}: incremental chain restored, rows and relation files equal");
}

/// A parent bundle deleted: `verify` names the incremental that can no longer be restored;
/// the parent's manifest gone: restore refuses the incremental, naming the parent.
fn broken_chain_is_named(repo: &TestRepo) {
    let list = repo.walship(&["list", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list --json");
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["chain_depth"] == 2)
        .map(|b| b["id"].as_str().unwrap())
        .chain(
            all.as_array()
                .unwrap()
                .iter()
                .filter(|b| b["chain_depth"] == 1)
                .map(|b| b["id"].as_str().unwrap()),
        )
        .collect();
    let (child, parent) = (ids[0], ids[1]);
    // --delta does not restore chains yet: the plan says so.
    let dir = pg_test_harness::test_dir("incr-delta");
    let out = restore(
        repo,
        &dir.path().join("data"),
        &[
            "--backup",
            child,
            "--target",
            "immediate",
            "--delta",
            "--dry-run",
        ],
    );
    assert!(
        describe(&out).contains("--delta cannot restore a chain"),
        "restore --delta: {}",
        describe(&out)
    );
    let bundles = repo
        .local_root()
        .join("backups")
        .join(parent)
        .join("bundles");
    let first = std::fs::read_dir(&bundles)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    let out = repo.walship(&["verify", "--quick"]);
    assert!(!out.status.success(), "verify: {}", describe(&out));
    let text = describe(&out);
    assert!(
        text.contains(&format!(
            "backup {child} cannot be restored: its chain member {parent}"
        )),
        "verify names the broken chain: {text}"
    );
    std::fs::remove_file(
        repo.local_root()
            .join("backups")
            .join(parent)
            .join("manifest.json"),
    )
    .unwrap();
    let dir = pg_test_harness::test_dir("incr-broken");
    let to = dir.path().join("data");
    let out = restore(repo, &to, &["--backup", child, "--target", "immediate"]);
    assert_eq!(out.status.code(), Some(4), "restore: {}", describe(&out));
    assert!(
        describe(&out).contains(&format!("needs its parent {parent}")),
        "restore names the missing parent: {}",
        describe(&out)
    );
    let out = repo.walship(&["verify", "--quick"]);
    assert!(
        describe(&out).contains(&format!(
            "backup {child} cannot be restored: backup {child} needs its parent {parent}"
        )),
        "verify: {}",
        describe(&out)
    );
}

fn assert_no_incremental_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.starts_with("INCREMENTAL."),
            "{} left behind",
            path.display()
        );
        if path.is_dir() && !path.is_symlink() {
            assert_no_incremental_files(&path);
        }
    }
}

#[test]
fn incremental_refusals_store_nothing() {
    // A server older than 17.
    if let Some(pg16) = install(16) {
        let repo = TestRepo::local();
        let pg = cluster_16(&pg16, &repo);
        let out = backup(&pg, &repo, &["--incremental"]);
        assert_eq!(out.status.code(), Some(4), "PG16: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("incremental backups need PostgreSQL 17 or later; take a full backup"),
            "PG16: {err}"
        );
        assert_eq!(backups_stored(&repo), 0, "PG16: nothing stored");
    }
    let Some(pg17) = install(17) else {
        return;
    };
    // summarize_wal off.
    let repo = TestRepo::local();
    let pg = cluster(&pg17, &repo, false);
    backup_ok(&pg, &repo, &[]);
    let out = backup(&pg, &repo, &["--incremental"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "summarize_wal off: {}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("summarize_wal = on"),
        "the hint names the setting: {err}"
    );
    assert_eq!(backups_stored(&repo), 1, "only the full is stored");
    drop(pg);

    // A --from that does not exist, on a server that could take one.
    let repo = TestRepo::local();
    let pg = cluster(&pg17, &repo, true);
    pg.execute("checkpoint");
    let out = backup(&pg, &repo, &["--incremental", "--from", "20200101T000000Z"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "--from missing: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("20200101T000000Z is not in the repository"),
        "{}",
        describe(&out)
    );
    assert_eq!(backups_stored(&repo), 0);
    // No backup yet and no --from: a full, and it says so.
    let first = backup(&pg, &repo, &["--incremental"]);
    assert!(first.status.success(), "{}", describe(&first));
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("taking a full backup instead"),
        "{}",
        describe(&first)
    );
    // backup.max_chain 1: the second incremental becomes a full.
    let i1 = backup_ok(&pg, &repo, &["--incremental", "--max-chain", "1"]);
    assert_eq!(i1["chain_depth"], 1, "{i1}");
    let out = backup(&pg, &repo, &["--incremental", "--max-chain", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        again.get("parent").is_none(),
        "past max_chain: a full: {again}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("backup.max_chain is 1"),
        "{}",
        describe(&out)
    );
}

fn cluster_16(install: &PgInstall, repo: &TestRepo) -> Cluster {
    Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start()
}
