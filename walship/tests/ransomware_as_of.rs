//! Issue 23, test 2, the ransomware drill: a repository in an S3 bucket with Object Lock
//! (governance mode, by the bucket's default retention) on real SeaweedFS, a real
//! Postgres 15 archiving into it and backed up; then an attacker with the same credentials
//! deletes every current object and overwrites `walship.json` and the backup's manifest.
//! The repository as it is fails clearly; read `--as-of` a time before the attack, `list`,
//! `info` and `verify` find it sound and `restore` brings back the rows recorded.

mod restore_support;
mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use pg_test_harness::{Cluster, StopMode};
use restore_support::{
    archiving_cluster, open_repo, restore, runtime, start_restored, stop_and_check_checksums,
    utc_now, walship_backup,
};
use serde_json::Value;
use support::{TestRepo, archive_everything, describe, pg15_or_first, switch_wal};
use walship_common::storage::{ObjectKey, PutOptions, Storage};

/// Every object stored from now on is locked in GOVERNANCE mode for a day.
const DEFAULT_RETENTION: &str = r#"<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>"#;

/// A repository in a new bucket with Object Lock and a governance default retention.
fn locked_repo() -> Option<TestRepo> {
    let mut repo = TestRepo::s3()?;
    let s3 = repo.s3.as_ref().unwrap();
    let bucket = s3.create_object_lock_bucket().unwrap();
    let set = s3
        .http(
            "PUT",
            &format!("/{bucket}?object-lock"),
            DEFAULT_RETENTION.as_bytes(),
        )
        .unwrap();
    assert_eq!(
        set.status,
        200,
        "PutObjectLockConfiguration: {}",
        set.body_text()
    );
    let url = format!("s3://{bucket}/cluster-a");
    let config = std::fs::read_to_string(&repo.config)
        .unwrap()
        .replace(&repo.url, &url);
    std::fs::write(&repo.config, config).unwrap();
    repo.url = url;
    Some(repo)
}

fn contents(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || payload from drill order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

/// A time between what was stored before the call and what is stored after it, in the
/// whole seconds S3 records, as `--as-of` takes it.
fn a_second_apart() -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let t: DateTime<Utc> = Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The restored directory's prefetch spool origin, if a worker ran.
fn spool_origin(data: &Path) -> Option<String> {
    fn find(dir: &Path) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".origin") {
                return Some(path);
            }
            if path.is_dir()
                && let Some(found) = find(&path)
            {
                return Some(found);
            }
        }
        None
    }
    std::fs::read_to_string(find(&data.join("pg_wal"))?).ok()
}

#[test]
fn restore_as_of_a_time_before_the_attack_brings_the_rows_back() {
    let Some(install) = pg15_or_first() else {
        return;
    };
    let Some(repo) = locked_repo() else {
        return;
    };

    // Production: a backup, a workload, a recorded target, WAL past it, all archived.
    let mut cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table drill (id serial primary key, payload text)");
    cluster
        .execute("insert into drill (payload) select md5(g::text) from generate_series(1, 500) g");
    archive_everything(&cluster, Duration::from_secs(120));
    let before_backup = a_second_apart();
    walship_backup(&cluster, &repo);
    for batch in 0..3 {
        cluster.execute(&format!(
            "insert into drill (payload) select 'after the backup {batch} ' || g from generate_series(1, 300) g"
        ));
        switch_wal(&cluster);
    }
    let want = contents(&cluster);
    std::thread::sleep(Duration::from_millis(30));
    let target = utc_now(&cluster);
    std::thread::sleep(Duration::from_millis(30));
    cluster.execute("insert into drill (payload) values ('after the target')");
    switch_wal(&cluster);
    archive_everything(&cluster, Duration::from_secs(120));
    cluster.stop(StopMode::Fast);
    let listed = json(&repo.walship(&["list", "--json"]));
    let backup_id = listed[0]["id"].as_str().unwrap().to_string();

    // T: after the backup and every WAL segment of interest, before the attack.
    let as_of = a_second_apart();

    // The attack, with the repository's own credentials: every current object deleted
    // (delete markers: the locked versions stay), walship.json and the manifest overwritten.
    let rt = runtime();
    let storage = open_repo(&rt, &repo).storage().clone();
    let everything: Vec<ObjectKey> = rt
        .block_on(storage.list(""))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(everything.len() > 5, "{everything:?}");
    let refused = rt.block_on(storage.delete_many(&everything)).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let ransom = Bytes::from_static(b"{\"note\": \"your backups are encrypted, pay 10 BTC\"}");
    for key in [
        "walship.json".to_string(),
        format!("backups/{backup_id}/manifest.json"),
    ] {
        let key = ObjectKey::new(key).unwrap();
        rt.block_on(storage.put(&key, ransom.clone(), PutOptions::default()))
            .unwrap();
    }
    assert_eq!(rt.block_on(storage.list("")).unwrap().len(), 2);
    // Nor can the attacker remove the version that was walship.json before: it is locked.
    let s3 = repo.s3.as_ref().unwrap();
    let bucket = repo.url["s3://".len()..].split('/').next().unwrap();
    let versions = s3
        .http(
            "GET",
            &format!("/{bucket}?versions&prefix=cluster-a/walship.json"),
            b"",
        )
        .unwrap()
        .body_text();
    let original = versions
        .split("<Version>")
        .filter(|v| v.contains("<IsLatest>false</IsLatest>"))
        .find_map(|v| v.split("<VersionId>").nth(1)?.split("</VersionId>").next())
        .unwrap_or_else(|| panic!("no earlier version of walship.json: {versions}"))
        .to_string();
    let removal = s3
        .http(
            "DELETE",
            &format!("/{bucket}/cluster-a/walship.json?versionId={original}"),
            b"",
        )
        .unwrap();
    assert_eq!(removal.status, 403, "{}", removal.body_text());

    // The repository as it is: a clear failure, nothing restored.
    let dir = pg_test_harness::test_dir("restored");
    let plain_to = dir.path().join("plain");
    let out = restore(&repo, &plain_to, &["--target-time", &target]);
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("walship.json"), "{}", describe(&out));
    assert!(!plain_to.join("global/pg_control").exists());
    eprintln!("restore without --as-of: {}", stderr.trim());

    // As of T: the repository as it was.
    let out = repo.walship(&["list", "--json", "--as-of", &as_of]);
    assert!(out.status.success(), "list --as-of: {}", describe(&out));
    let listed = json(&out);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, [backup_id.as_str()]);
    let out = repo.walship(&["info", "latest", "--as-of", &as_of]);
    assert!(out.status.success(), "info --as-of: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&backup_id));
    let out = repo.walship(&["verify", "--json", "--as-of", &as_of]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "verify --as-of: {report:#}");
    assert_eq!(report["sound"], true, "{report:#}");
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report:#}"
    );

    // As of a time before the backup, there is no backup to restore.
    let early = dir.path().join("early");
    let out = restore(
        &repo,
        &early,
        &[
            "--target-time",
            &target,
            "--as-of",
            &before_backup,
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("none usable"),
        "{}",
        describe(&out)
    );

    let to = dir.path().join("as-of");
    let out = restore(&repo, &to, &["--target-time", &target, "--as-of", &as_of]);
    assert!(out.status.success(), "restore --as-of: {}", describe(&out));
    let auto = std::fs::read_to_string(to.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!("fetch --as-of {as_of} %f %p")),
        "the restored server must read the same view: {auto}"
    );
    let mut restored = start_restored(&install, &to);
    let got = contents(&restored);
    assert!(
        got == want,
        "{} rows restored, {} expected (first differing: {:?})",
        got.len(),
        want.len(),
        got.iter().zip(&want).find(|(a, b)| a != b)
    );
    stop_and_check_checksums(&mut restored);
    // The prefetch worker read the same view (a worker reading the repository as it is
    // would have found the ransom note for walship.json and prefetched nothing).
    let origin = spool_origin(&to).expect("the prefetch worker ran");
    assert!(origin.contains(" as of "), "{origin}");
}

/// A local repository keeps no older versions: `--as-of` is refused, and `fetch` never takes
/// the refusal for "absent" (exit 1 would end recovery early): it stops recovery (200).
#[test]
fn as_of_on_a_local_repository_is_refused_and_fetch_stops_recovery() {
    let repo = TestRepo::local();
    let out = repo.walship(&["list", "--as-of", "2026-12-01 00:00:00"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--as-of") && stderr.contains("local directory"),
        "{stderr}"
    );
    let dest = repo.dir.path().join("RECOVERYXLOG");
    let out = repo.walship(&[
        "fetch",
        "--as-of",
        "2026-12-01T00:00:00Z",
        "000000010000000000000001",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    assert!(!dest.exists());
}
