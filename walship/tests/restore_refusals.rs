//! `walship restore` refuses before any data moves, naming the problem: a non-empty
//! directory, a target before the oldest backup or after the end of the archive, a backup of
//! another cluster, a segment deleted from the repository; `--dry-run` prints the plan (text
//! and JSON); a corrupted bundle fails naming the file and leaves a directory Postgres
//! refuses to start. Every major the harness finds, real Postgres, real SeaweedFS; one
//! cluster, one repository and one backup per major serve every assertion.

mod restore_support;
mod support;

use std::time::Duration;

use bytes::Bytes;
use pg_test_harness::{Cluster, PgInstall};
use restore_support::{
    archiving_cluster, open_repo, restore, runtime, start_restored, take_backup, utc_now,
};
use support::{TestRepo, archive_everything, describe};
use walship_common::pg::{ArchiveFileName, WalFileName, WalSegSize};
use walship_common::repo::layout;
use walship_common::storage::{PutOptions, Storage};

fn write(cluster: &Cluster, n: i32) {
    cluster.execute(&format!(
        "insert into t select g, md5(g::text) from generate_series(1, {n}) g"
    ));
}

/// Runs a restore that must be refused (exit 4) with `needle` in its message and nothing
/// written.
fn refused(repo: &TestRepo, args: &[&str], needle: &str) -> String {
    let dir = pg_test_harness::test_dir("refused");
    let to = dir.path().join("data");
    let out = restore(repo, &to, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{args:?}: {}", describe(&out));
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?}: {}",
        describe(&out)
    );
    assert!(
        !to.exists(),
        "{args:?}: refused, yet {} was created",
        to.display()
    );
    stderr
}

#[test]
fn restore_refuses_before_any_data_moves_and_reports_the_plan_on_every_major() {
    let Some(probe) = TestRepo::s3() else {
        return;
    };
    drop(probe);
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
        refusals(&install, repo);
        eprintln!("PG{}: every refusal before any data moved", install.major);
    }
}

/// Every refusal, the dry run and the corrupt bundle against one cluster of `install`.
fn refusals(install: &PgInstall, repo: TestRepo) {
    let cluster = archiving_cluster(install, &repo);
    cluster.execute("create table t (id int, payload text)");
    write(&cluster, 100);
    let before_backup = utc_now(&cluster);
    std::thread::sleep(Duration::from_millis(50));
    let backup = take_backup(&cluster, &repo);
    for _ in 0..3 {
        write(&cluster, 2000);
        cluster.execute("select pg_switch_wal()");
    }
    let last_time = utc_now(&cluster);
    write(&cluster, 10);
    archive_everything(&cluster, Duration::from_secs(120));

    // --dry-run: the plan, text and JSON, and nothing written.
    let dir = pg_test_harness::test_dir("dry");
    let to = dir.path().join("data");
    let out = restore(&repo, &to, &["--target-time", &last_time, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe(&out));
    for needle in [
        "reachable:      yes",
        &backup.id.to_string(),
        "WAL timeline 1:",
        "missing:        none",
        "recovery point: last commit at",
        "stops at:       record at LSN",
    ] {
        assert!(text.contains(needle), "dry run lacks {needle:?}:\n{text}");
    }
    assert!(!to.exists());
    let out = restore(&repo, &to, &["--target", "latest", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["reachable"], true, "{plan}");
    assert_eq!(plan["backup"]["id"], backup.id.to_string(), "{plan}");
    assert!(plan["fetch_objects"].as_u64().unwrap() > 3, "{plan}");
    assert!(plan["last_commit"]["lsn"].is_string(), "{plan}");
    assert_eq!(plan["missing_segments"], serde_json::json!([]), "{plan}");

    // A non-empty directory is refused, and left as it was.
    let busy = pg_test_harness::test_dir("busy");
    std::fs::write(busy.path().join("keep-me"), b"x").unwrap();
    let out = restore(&repo, busy.path(), &["--target", "latest"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        describe(&out)
    );
    let left: Vec<_> = std::fs::read_dir(busy.path()).unwrap().collect();
    assert_eq!(left.len(), 1);

    // Targets the archive cannot reach.
    refused(&repo, &["--target-time", &before_backup], "before backup");
    refused(
        &repo,
        &["--target-time", "2999-01-01 00:00:00+00"],
        "does not reach the target",
    );
    refused(
        &repo,
        &["--target-lsn", "FF/0"],
        "does not reach the target",
    );
    refused(
        &repo,
        &["--target-name", "never-made"],
        "does not reach the target",
    );

    // A backup of another cluster stored in this repository.
    let other_repo = TestRepo::local();
    let other = archiving_cluster(install, &other_repo);
    let foreign = take_backup(&other, &repo);
    drop(other);
    let id = foreign.id.to_string();
    assert_ne!(
        foreign.system_identifier, backup.system_identifier,
        "two initdb runs gave one system identifier"
    );
    refused(
        &repo,
        &["--target", "latest", "--backup", &id],
        "another cluster",
    );

    // A segment deleted from the repository is named.
    let rt = runtime();
    let repository = open_repo(&rt, &repo);
    let seg_size = WalSegSize::new(u64::from(backup.wal_segment_size)).unwrap();
    let victim = WalFileName::containing(
        backup.start_timeline,
        walship_common::Lsn(backup.stop_lsn.0 + seg_size.as_u64()),
        seg_size,
    )
    .unwrap();
    let key = layout::wal_key(&ArchiveFileName::Segment(victim));
    let saved = rt
        .block_on(repository.storage().get_bytes(&key, u64::MAX))
        .unwrap();
    rt.block_on(repository.storage().delete(&key)).unwrap();
    let victim_name = victim.to_string();
    let message = refused(
        &repo,
        &["--target", "latest", "--backup", &backup.id.to_string()],
        &victim_name,
    );
    assert!(message.contains("missing"), "{message}");
    let out = restore(
        &repo,
        &to,
        &[
            "--target",
            "latest",
            "--backup",
            &backup.id.to_string(),
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["missing_segments"],
        serde_json::json!([victim_name]),
        "{plan}"
    );
    rt.block_on(repository.storage().put(&key, saved, PutOptions::default()))
        .unwrap();

    // A corrupted bundle: the restore fails naming the file; the directory does not start.
    let bundle = layout::bundle_key(backup.id, &backup.bundles[0].name).unwrap();
    let mut bytes = rt
        .block_on(repository.storage().get_bytes(&bundle, u64::MAX))
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    rt.block_on(
        repository
            .storage()
            .put(&bundle, Bytes::from(bytes), PutOptions::default()),
    )
    .unwrap();
    let dir = pg_test_harness::test_dir("corrupt");
    let to = dir.path().join("data");
    let out = restore(
        &repo,
        &to,
        &["--target", "latest", "--backup", &backup.id.to_string()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stderr.contains("corrupt at file") && stderr.contains(&backup.bundles[0].name),
        "{}",
        describe(&out)
    );
    assert!(!to.join("global/pg_control").exists());
    // Whatever the failure left, Postgres must refuse it (even given a config file).
    std::fs::create_dir_all(&to).unwrap();
    if !to.join("postgresql.conf").exists() {
        std::fs::write(to.join("postgresql.conf"), "").unwrap();
    }
    let mut broken = Cluster::from_data_dir(install, &to);
    broken.append_conf("archive_mode = off");
    assert!(
        broken.try_start().is_err(),
        "Postgres started a half-restored directory"
    );
    drop(broken);
    let _ = start_restored; // (used by the other restore tests)
}
