//! Helpers of the `expire`/`verify` tests: a series of backups of a real cluster with WAL
//! between them, running `verify`/`expire` and reading their JSON, and looking at a local
//! repository's files.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pg_test_harness::{Cluster, PgInstall};
use serde_json::Value;

use crate::restore_support::{archiving_cluster, walship_backup};
use crate::support::{TestRepo, archive_everything, describe, switch_wal, walship_bin};

pub fn pg15() -> Option<PgInstall> {
    let found = pg_test_harness::installs_under_test()
        .into_iter()
        .find(|i| i.major == 15);
    if found.is_none() {
        eprintln!("SKIP: no PostgreSQL 15");
    }
    found
}

/// A backup as `list --json` shows it.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: String,
    pub start_lsn: u64,
    pub stop_time: DateTime<Utc>,
    /// Rows in `t` when it was taken.
    pub rows: i64,
}

pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

pub fn list(repo: &TestRepo) -> Vec<Value> {
    let out = repo.walship(&["list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    json(&out).as_array().unwrap().clone()
}

/// `n` backups of a cluster archiving into `repo`, with rows and `switches` WAL segments
/// between them, and more after the last; everything archived.
pub fn history(
    install: &PgInstall,
    repo: &TestRepo,
    n: usize,
    switches: usize,
) -> (Cluster, Vec<Taken>) {
    let cluster = archiving_cluster(install, repo);
    cluster.execute("create table t (i int)");
    let mut rows = Vec::new();
    for k in 0..n {
        cluster.execute(&format!(
            "insert into t select g from generate_series(1, {}) g",
            100 * (k + 1)
        ));
        for _ in 0..switches {
            cluster.execute("insert into t values (0)");
            switch_wal(&cluster);
        }
        rows.push(
            cluster
                .query_string("select count(*) from t")
                .parse::<i64>()
                .unwrap(),
        );
        walship_backup(&cluster, repo);
        // Backup ids are whole seconds.
        std::thread::sleep(Duration::from_millis(1100));
    }
    cluster.execute("insert into t select g from generate_series(1, 50) g");
    archive_everything(&cluster, Duration::from_secs(120));
    let listed = list(repo);
    assert_eq!(listed.len(), n);
    let taken = listed
        .iter()
        .zip(rows)
        .map(|(b, rows)| Taken {
            id: b["id"].as_str().unwrap().to_string(),
            start_lsn: lsn(b["start_lsn"].as_str().unwrap()),
            stop_time: b["stop_time"].as_str().unwrap().parse().unwrap(),
            rows,
        })
        .collect();
    (cluster, taken)
}

pub fn verify(repo: &TestRepo, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["verify", "--json", "--max-wal-age", "1h"];
    args.extend_from_slice(extra);
    let out = repo.walship(&args);
    let report = json(&out);
    (out.status.code(), report)
}

pub fn assert_sound(repo: &TestRepo, what: &str) {
    let (code, report) = verify(repo, &[]);
    assert_eq!(code, Some(0), "{what}: {report:#}");
    assert_eq!(report["sound"], true, "{what}: {report:#}");
}

/// Runs verify on a damaged repository: exit 5 and a problem of `kind` whose text holds
/// `needle`.
pub fn assert_problem(repo: &TestRepo, extra: &[&str], kind: &str, needle: &str) {
    let (code, report) = verify(repo, extra);
    assert_eq!(code, Some(5), "{kind}: {report:#}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == kind && p.to_string().contains(needle)),
        "no {kind} naming {needle}: {report:#}"
    );
}

pub fn expire(repo: &TestRepo, args: &[&str]) -> Output {
    let mut all = vec!["expire"];
    all.extend_from_slice(args);
    repo.walship(&all)
}

pub fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().or(x.as_str()).unwrap().to_string())
        .collect()
}

/// Every stored object under `dir` (files only), relative keys.
pub fn objects(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

pub fn segment_objects(root: &Path) -> Vec<String> {
    objects(root)
        .into_iter()
        .filter(|k| {
            k.starts_with("wal/")
                && k.len() == "wal/0000000100000000/000000010000000000000001".len()
        })
        .collect()
}

pub fn segno(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap();
    // 1 MiB segments: 4096 per xlogid.
    u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
        + u64::from_str_radix(&name[16..24], 16).unwrap()
}

pub fn now_arg(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A copy of the repository directory `from` as a new file:// repository with its config.
pub fn copy_repo(from: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = pg_test_harness::test_dir(name);
    let to = dir.path().join("repo");
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.path().join("walship.toml");
    std::fs::write(&config, format!("repo = \"file://{}\"\n", to.display())).unwrap();
    (dir, config)
}

pub fn walship_at(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(walship_bin());
    cmd.arg("--config").arg(config).args(args);
    cmd
}
