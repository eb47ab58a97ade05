//! `walship restore --tablespace OID=DIR` relocates a tablespace (files, link, map), and
//! `--delta` reuses what already matches, replaces what does not, removes what the backup
//! lacks, and refuses a directory of another cluster, which `--force` replaces. The backup is
//! taken by `walship backup`, and each restored directory verifies against Postgres's own
//! `backup_manifest` (`pg_verifybackup`, with `-i tablespace_map` when relocated) before the
//! server starts. One major (15 when found), real Postgres, real SeaweedFS.

mod restore_support;
mod support;

use std::time::Duration;

use pg_test_harness::Cluster;
use restore_support::verify::verify_restored;
use restore_support::{archiving_cluster, restore, start_restored, walship_backup};
use support::{TestRepo, archive_everything, describe};

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || v from spaced order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

#[test]
fn tablespace_relocation_and_delta_s3() {
    if let Some(repo) = TestRepo::s3() {
        tablespace_relocation_and_delta(repo);
    }
}

#[test]
fn tablespace_relocation_and_delta_local_repository() {
    tablespace_relocation_and_delta(TestRepo::local());
}

fn tablespace_relocation_and_delta(repo: TestRepo) {
    let installs = pg_test_harness::installs_under_test();
    let Some(install) = installs.iter().find(|i| i.major == 15).or(installs.first()) else {
        return;
    };
    let cluster = archiving_cluster(install, &repo);
    let ts_dir = pg_test_harness::test_dir("tablespace");
    cluster.execute(&format!(
        "create tablespace spc location '{}'",
        ts_dir.path().display()
    ));
    let oid = cluster.query_string("select oid::text from pg_tablespace where spcname = 'spc'");
    cluster.execute("create table spaced (id int primary key, v text) tablespace spc");
    cluster.execute("insert into spaced select g, md5(g::text) from generate_series(1, 1000) g");
    walship_backup(&cluster, &repo);
    cluster.execute("insert into spaced select g, 'late' from generate_series(1001, 1500) g");
    let want = rows(&cluster);
    archive_everything(&cluster, Duration::from_secs(120));

    // Relocated tablespace.
    let dir = pg_test_harness::test_dir("ts-restored");
    let to = dir.path().join("data");
    let moved = dir.path().join("moved-spc");
    let relocate = format!("{oid}={}", moved.display());
    let out = restore(
        &repo,
        &to,
        &["--target", "latest", "--tablespace", &relocate],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let link = std::fs::read_link(to.join("pg_tblspc").join(&oid)).unwrap();
    assert_eq!(link, moved);
    let map = std::fs::read_to_string(to.join("tablespace_map")).unwrap();
    assert_eq!(map.trim(), format!("{oid} {}", moved.display()));
    assert!(
        std::fs::read_dir(&moved).unwrap().count() > 0,
        "no files in {}",
        moved.display()
    );
    verify_restored(install, &to, true);
    support::chown_tree_like(&moved, dir.path());
    let mut restored = start_restored(install, &to);
    assert_eq!(rows(&restored), want, "relocated tablespace rows");
    assert_eq!(
        restored.query_string(&format!("select pg_tablespace_location({oid})")),
        moved.display().to_string()
    );
    restored.stop(pg_test_harness::StopMode::Fast);
    drop(restored);

    // --delta over a restored-and-damaged directory: a file removed, one altered, one added.
    let dir = pg_test_harness::test_dir("delta");
    let to = dir.path().join("data");
    let moved = dir.path().join("spc");
    let relocate = format!("{oid}={}", moved.display());
    let out = restore(
        &repo,
        &to,
        &["--target", "latest", "--tablespace", &relocate],
    );
    assert!(out.status.success(), "{}", describe(&out));
    std::fs::remove_file(to.join("PG_VERSION")).unwrap();
    std::fs::write(to.join("postgresql.conf"), "# damaged\n").unwrap();
    std::fs::write(to.join("base/stray-file"), "not in the backup").unwrap();
    let out = restore(&repo, &to, &["--target", "latest"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "non-empty without --delta: {}",
        describe(&out)
    );
    let out = restore(
        &repo,
        &to,
        &[
            "--target",
            "latest",
            "--delta",
            "--tablespace",
            &relocate,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &report["summary"];
    assert!(summary["files_kept"].as_u64().unwrap() > 100, "{report}");
    assert!(
        summary["entries_removed"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(!to.join("base/stray-file").exists());
    assert!(to.join("PG_VERSION").exists());
    verify_restored(install, &to, true);
    support::chown_tree_like(&moved, dir.path());
    let restored = start_restored(install, &to);
    assert_eq!(rows(&restored), want, "rows after --delta");
    drop(restored);

    // --delta refuses a data directory of another cluster.
    let other_repo = TestRepo::local();
    let other = archiving_cluster(install, &other_repo);
    let foreign = pg_test_harness::test_dir("foreign");
    let data = foreign.path().join("data");
    support::low_level_copy(&other, &data);
    let out = restore(&repo, &data, &["--target", "latest", "--delta"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("system identifier"),
        "{}",
        describe(&out)
    );
    // --force replaces it.
    let moved = foreign.path().join("spc");
    let relocate = format!("{oid}={}", moved.display());
    let out = restore(
        &repo,
        &data,
        &["--target", "latest", "--force", "--tablespace", &relocate],
    );
    assert!(out.status.success(), "{}", describe(&out));
    verify_restored(install, &data, true);
    support::chown_tree_like(&moved, foreign.path());
    let restored = start_restored(install, &data);
    assert_eq!(rows(&restored), want, "rows after --force");
}
