//! `walship copy` (issue 23, test 3): a second repository that restores on its own.
//!
//! A cluster archives into SeaweedFS server A and takes a `walship backup`; `walship copy`
//! (the config's `[[copy]]` entries) copies to SeaweedFS server B and to a local directory.
//! One copy to the local directory is killed with SIGKILL midway and rerun: afterwards both
//! targets hold exactly the source's objects, byte for byte, and a further run copies
//! nothing. Server A is then stopped, and each target restores to a recorded time on its own
//! with the rows equal. Last, the directory runs its own retention (`expire`), and a further
//! copy does not bring back what it removed.

mod restore_support;
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_test_harness::Cluster;
use restore_support::{
    archiving_cluster, open_repo, restore, runtime, start_restored, utc_now, walship_backup,
};
use support::{TestRepo, archive_everything, describe, walship_bin};
use walship_common::storage::Storage;

fn rows(cluster: &Cluster) -> Vec<String> {
    cluster
        .query_rows("select id::text || ':' || v from copied order by id")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Every object of a repository (audit records aside: each repository has its own trail)
/// with the crc32c of its stored bytes.
fn contents(rt: &tokio::runtime::Runtime, repo: &TestRepo) -> BTreeMap<String, (u64, u32)> {
    let repository = open_repo(rt, repo);
    let storage = repository.storage();
    rt.block_on(async {
        let mut out = BTreeMap::new();
        for meta in storage.list("").await.unwrap() {
            if meta.key.as_str().starts_with("audit/") {
                continue;
            }
            let bytes = storage.get_bytes(&meta.key, 1 << 30).await.unwrap();
            out.insert(
                meta.key.to_string(),
                (bytes.len() as u64, crc32c::crc32c(&bytes)),
            );
        }
        out
    })
}

/// The JSON reports `copy --json` printed, one per target.
fn reports(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn copies_to_a_second_server_and_a_directory_that_restore_alone_after_a_kill() {
    let Some(install) = support::pg15_or_first() else {
        return;
    };
    let Some(mut source) = TestRepo::s3() else {
        return;
    };
    let second = TestRepo::s3().expect("SeaweedFS ran a moment ago");
    let local = TestRepo::local();
    let second_s3 = second.s3.as_ref().unwrap();
    // The source's config names both targets; the second server has its own endpoint.
    let mut config = std::fs::read_to_string(&source.config).unwrap();
    config.push_str(&format!(
        "\n[[copy]]\nrepo = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\n[[copy]]\nrepo = \"{}\"\n",
        second.url, second_s3.endpoint, second_s3.region, local.url
    ));
    std::fs::write(&source.config, config).unwrap();

    let cluster = archiving_cluster(&install, &source);
    cluster.execute("create table copied (id int primary key, v text)");
    cluster.execute("insert into copied select g, md5(g::text) from generate_series(1, 3000) g");
    walship_backup(&cluster, &source);
    cluster.execute("insert into copied select g, 'after' from generate_series(3001, 3500) g");
    std::thread::sleep(Duration::from_millis(30));
    let time = utc_now(&cluster);
    let want = rows(&cluster);
    std::thread::sleep(Duration::from_millis(30));
    cluster.execute("delete from copied");
    // Enough WAL objects that a copy runs long enough to be killed midway.
    for i in 0..150 {
        cluster.execute(&format!(
            "insert into copied values ({}, 'filler')",
            10_000 + i
        ));
        cluster.query_string("select pg_switch_wal()::text");
    }
    archive_everything(&cluster, Duration::from_secs(300));

    // kill -9 during a copy to the directory.
    let local_wal = local.local_root().join("wal");
    let mut child = Command::new(walship_bin())
        .arg("--config")
        .arg(&source.config)
        .args(["copy", "--to", &local.url])
        .envs(source.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let count = || {
        walkdir(&local_wal)
            .iter()
            .filter(|p| !p.contains(".walship-tmp"))
            .count()
    };
    while count() < 20 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed, "the copy ended before it could be killed");
    assert!(
        !local.local_root().join("backups").exists()
            || walkdir(&local.local_root().join("backups"))
                .iter()
                .all(|p| !p.ends_with("manifest.json")),
        "the killed copy had reached the backups: kill it earlier"
    );

    // The rerun (every [[copy]] entry) finishes both targets.
    let out = source.walship(&["copy", "--json"]);
    assert!(out.status.success(), "copy: {}", describe(&out));
    let first = reports(&out);
    assert_eq!(first.len(), 2, "{}", describe(&out));
    for report in &first {
        assert!(report["copied_objects"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["backups"].as_array().unwrap().len(), 1, "{report}");
        assert_eq!(report["lag"]["bytes"], 0, "{report}");
    }

    let rt = runtime();
    let want_objects = contents(&rt, &source);
    assert!(want_objects.keys().any(|k| k.ends_with("manifest.json")));
    assert_eq!(contents(&rt, &second), want_objects, "second server");
    assert_eq!(contents(&rt, &local), want_objects, "local directory");

    // Resumable and idempotent: nothing left to copy.
    let textfile = source.dir.path().join("copy.prom");
    let out = source.walship(&[
        "copy",
        "--json",
        "--metrics-textfile",
        textfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "copy again: {}", describe(&out));
    for report in reports(&out) {
        assert_eq!(report["copied_objects"], 0, "{report}");
    }
    // The copy lag, per target, for node_exporter's textfile collector.
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    for target in [&second, &local] {
        let line = format!("target=\"{}\"}} 0.0", target.url);
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("walship_copy_lag_bytes{") && l.ends_with(&line)),
            "{metrics}"
        );
    }
    // Audited in the source's trail.
    let out = source.walship(&["audit", "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"copy\""),
        "{}",
        describe(&out)
    );

    // The first server is gone; each target restores to the time on its own. (The copy ran
    // as this test's user; the restored server's fetch runs as the cluster's.)
    support::chown_tree_like(local.local_root(), local.dir.path());
    source.s3.as_mut().unwrap().stop();
    for target in [&second, &local] {
        let dir = pg_test_harness::test_dir("copy-restored");
        let to = dir.path().join("data");
        let out = restore(target, &to, &["--target-time", &time]);
        assert!(
            out.status.success(),
            "restore from {}: {}",
            target.url,
            describe(&out)
        );
        let restored = start_restored(&install, &to);
        assert_eq!(rows(&restored), want, "restored from {}", target.url);
    }

    // The target keeps its own retention, and a copy does not bring back what it removed.
    source.s3.as_mut().unwrap().restart();
    let first_backup = first[0]["backups"][0].as_str().unwrap().to_string();
    walship_backup(&cluster, &source);
    archive_everything(&cluster, Duration::from_secs(120));
    let out = source.walship(&["copy", "--json"]);
    assert!(out.status.success(), "copy: {}", describe(&out));
    let out = local.walship(&["expire", "--daily", "1", "--json"]);
    assert!(
        out.status.success(),
        "expire on the target: {}",
        describe(&out)
    );
    let manifest = |id: &str| {
        local
            .local_root()
            .join("backups")
            .join(id)
            .join("manifest.json")
    };
    assert!(
        !manifest(&first_backup).exists(),
        "expire kept {first_backup}: {}",
        describe(&out)
    );
    let out = source.walship(&["copy", "--to", &local.url, "--json"]);
    assert!(
        out.status.success(),
        "copy after expire: {}",
        describe(&out)
    );
    let report = &reports(&out)[0];
    assert_eq!(report["copied_objects"], 0, "{report}");
    assert!(
        report["skipped_by_target_retention"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        !manifest(&first_backup).exists(),
        "the copy brought {first_backup} back"
    );
}

/// Every file under `dir` (relative paths), empty when it does not exist.
fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
