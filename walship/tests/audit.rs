//! The audit trail through the binary, on real Postgres 15 and a file:// repository: a
//! backup, a restore, a drill, a pin, an unpin and an expire (not its --dry-run) each append
//! one record, chained; no secret from the command
//! line reaches a record; `audit --verify` passes, then names the record after it is edited,
//! and after it is deleted.

mod restore_support;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use restore_support::archiving_cluster;
use support::{TestRepo, archive_everything, describe};

const SECRET: &str = "hunter2-not-for-audit";

fn records(repo: &TestRepo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = repo.local_root().join("audit");
    for year in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(year.unwrap().path()).unwrap() {
            out.push(file.unwrap().path());
        }
    }
    out.sort();
    out
}

fn verify(repo: &TestRepo) -> (std::process::Output, serde_json::Value) {
    let out = repo.walship(&["audit", "--verify", "--json"]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json ({e}): {}", describe(&out)));
    (out, json)
}

#[test]
fn each_operation_is_audited_and_tampering_is_named() {
    let install = pg_test_harness::installs()
        .into_iter()
        .find(|i| i.major == 15)
        .expect("PostgreSQL 15");
    let repo = TestRepo::local();
    let cluster = archiving_cluster(&install, &repo);
    cluster.execute("create table t as select g from generate_series(1, 100) g");
    // The password is ignored by trust authentication, and must not reach the trail.
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres password={SECRET}",
        cluster.port()
    );
    let out = repo.walship(&[
        "backup",
        "-d",
        &conn,
        "--checkpoint",
        "fast",
        "--wal-timeout",
        "60s",
    ]);
    assert!(out.status.success(), "backup: {}", describe(&out));
    cluster.execute("insert into t values (101)");
    archive_everything(&cluster, Duration::from_secs(60));
    let dir = pg_test_harness::test_dir("audit-restore");
    let to = dir.path().join("data");
    let out = repo.walship(&[
        "restore",
        "--target",
        "latest",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "restore: {}", describe(&out));
    let out = repo.walship(&["drill"]);
    assert!(out.status.success(), "drill: {}", describe(&out));
    // pin, unpin and expire (not --dry-run) are recorded too.
    let list = repo.walship(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = list.as_array().map_or(&list["backups"][0], |a| &a[0])["id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["pin", &id, "--reason", "audit test"],
        vec!["unpin", &id],
        vec!["expire", "--daily", "7", "--dry-run"],
        vec!["expire", "--daily", "7"],
    ] {
        let out = repo.walship(&args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }

    let (out, json) = verify(&repo);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json["verified"], true, "{json:#}");
    let list = json["records"].as_array().unwrap();
    let ops: Vec<&str> = list
        .iter()
        .map(|r| r["record"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        ["backup", "restore", "drill", "pin", "unpin", "expire"]
    );
    for r in list {
        let rec = &r["record"];
        assert_eq!(rec["result"], "ok", "{rec:#}");
        assert!(rec["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(rec["os_user"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(rec["walship_version"].is_string());
    }
    assert!(
        list[0]["record"]["figures"]["backup"].is_string(),
        "{:#}",
        list[0]
    );
    assert!(list[0]["record"]["previous_key"].is_null());
    assert_eq!(list[1]["record"]["previous_key"], list[0]["key"]);
    assert_eq!(list[1]["record"]["previous_sha256"], list[0]["sha256"]);
    assert_eq!(list[2]["record"]["previous_key"], list[1]["key"]);
    assert_eq!(list[5]["record"]["previous_key"], list[4]["key"]);
    let files = records(&repo);
    assert_eq!(files.len(), 6);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains(SECRET),
            "{} holds the password:\n{text}",
            file.display()
        );
    }
    let backup_args = list[0]["record"]["arguments"].to_string();
    assert!(backup_args.contains("password=<redacted>"), "{backup_args}");

    // Edit the restore's record: the drill's record names it as altered.
    let middle = &files[1];
    let original = std::fs::read_to_string(middle).unwrap();
    std::fs::write(middle, original.replace("\"ok\"", "\"failed\"")).unwrap();
    let key = format!(
        "audit/{}/{}",
        middle
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        middle.file_name().unwrap().to_string_lossy()
    );
    let (out, json) = verify(&repo);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_eq!(json["problems"][0]["key"], key.as_str(), "{json:#}");
    assert!(
        json["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("altered")
    );
    let text = repo.walship(&["audit", "--verify"]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains(&format!("BROKEN: record {key} was altered"))
    );

    // Delete it: named as removed.
    std::fs::remove_file(middle).unwrap();
    let (out, json) = verify(&repo);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_eq!(json["problems"][0]["key"], key.as_str(), "{json:#}");
    assert!(
        json["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("removed")
    );
}
