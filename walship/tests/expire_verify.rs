//! `walship expire`, `pin`/`unpin` and `verify` through the binary, on a real Postgres 15
//! archiving into a local repository (and on SeaweedFS): a series of backups with WAL between
//! them; `expire --now` later keeps the PITR window's anchor and what follows, removes the
//! rest (backups and WAL), honours pins; a kept backup restores to the window's first moment
//! with the recorded rows; `verify` calls the result sound, then names each kind of damage
//! (flipped byte in WAL, bundle, manifest; deleted segment; deleted bundle; missing
//! `.history`; truncated object); `expire` killed at random points leaves a sound repository
//! that the next run finishes; an object the storage refuses to delete is skipped and reported.

mod restore_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pg_test_harness::{Cluster, PgInstall};
use restore_support::{archiving_cluster, restore, start_restored_with, walship_backup};
use serde_json::Value;
use support::{TestRepo, archive_everything, describe, switch_wal, walship_bin};

fn pg15() -> Option<PgInstall> {
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
struct Taken {
    id: String,
    start_lsn: u64,
    stop_time: DateTime<Utc>,
    /// Rows in `t` when it was taken.
    rows: i64,
}

fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

fn list(repo: &TestRepo) -> Vec<Value> {
    let out = repo.walship(&["list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    json(&out).as_array().unwrap().clone()
}

/// `n` backups of a cluster archiving into `repo`, with rows and `switches` WAL segments
/// between them, and more after the last; everything archived.
fn history(
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

fn verify(repo: &TestRepo, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["verify", "--json", "--max-wal-age", "1h"];
    args.extend_from_slice(extra);
    let out = repo.walship(&args);
    let report = json(&out);
    (out.status.code(), report)
}

fn assert_sound(repo: &TestRepo, what: &str) {
    let (code, report) = verify(repo, &[]);
    assert_eq!(code, Some(0), "{what}: {report:#}");
    assert_eq!(report["sound"], true, "{what}: {report:#}");
}

/// Runs verify on a damaged repository: exit 5 and a problem of `kind` whose text holds
/// `needle`.
fn assert_problem(repo: &TestRepo, extra: &[&str], kind: &str, needle: &str) {
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

fn expire(repo: &TestRepo, args: &[&str]) -> Output {
    let mut all = vec!["expire"];
    all.extend_from_slice(args);
    repo.walship(&all)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().or(x.as_str()).unwrap().to_string())
        .collect()
}

/// Every stored object under `dir` (files only), relative keys.
fn objects(root: &Path) -> Vec<String> {
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

fn segment_objects(root: &Path) -> Vec<String> {
    objects(root)
        .into_iter()
        .filter(|k| {
            k.starts_with("wal/")
                && k.len() == "wal/0000000100000000/000000010000000000000001".len()
        })
        .collect()
}

fn segno(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap();
    // 1 MiB segments: 4096 per xlogid.
    u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
        + u64::from_str_radix(&name[16..24], 16).unwrap()
}

fn now_arg(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn expire_keeps_the_window_pins_hold_kept_backups_restore_and_verify_names_damage() {
    let Some(install) = pg15() else { return };
    let repo = TestRepo::local();
    let root = repo.local_root().to_path_buf();
    let (cluster, taken) = history(&install, &repo, 4, 3);
    assert_sound(&repo, "healthy repository");
    // Freshness: a newest backup or WAL older than the limits is a warning, not a problem.
    std::thread::sleep(Duration::from_millis(1100));
    let out = repo.walship(&[
        "verify",
        "--json",
        "--max-backup-age",
        "1s",
        "--max-wal-age",
        "1s",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let kinds: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"stale_backup") && kinds.contains(&"stale_wal"),
        "{report:#}"
    );

    // No policy: refusal naming the keys, nothing removed.
    let out = expire(&repo, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention.pitr_window"));

    // As of an hour after the third backup ended, a one-hour window restores from it.
    let now =
        now_arg(taken[2].stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    let policy = ["--pitr-window", "1h", "--now", &now];
    let out = expire(&repo, &policy);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a future --now needs --force: {}",
        describe(&out)
    );
    let mut dry = policy.to_vec();
    dry.extend(["--dry-run", "--json"]);
    let out = expire(&repo, &dry);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = json(&out)["plan"].clone();
    assert_eq!(
        ids(&plan["kept"]),
        [taken[2].id.clone(), taken[3].id.clone()]
    );
    assert_eq!(
        ids(&plan["removed"]),
        [taken[0].id.clone(), taken[1].id.clone()]
    );
    assert_eq!(plan["pitr"]["anchor"], taken[2].id.as_str());
    assert_eq!(list(&repo).len(), 4, "a dry run removes nothing");

    // A pin keeps the first backup (and shows in list); unpinned, it goes again.
    let out = repo.walship(&["pin", &taken[0].id, "--reason", "audit 2026"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = expire(&repo, &dry);
    let plan = json(&out)["plan"].clone();
    assert_eq!(ids(&plan["kept"])[0], taken[0].id);
    assert_eq!(plan["kept"][0]["rules"], serde_json::json!(["pinned"]));
    let listed = list(&repo);
    assert_eq!(listed[0]["pinned"]["reason"], "audit 2026", "{listed:#?}");
    let out = repo.walship(&["unpin", &taken[0].id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        repo.walship(&["pin", "20000101T000000Z"]).status.code(),
        Some(1),
        "pinning a backup that does not exist"
    );

    // Two backups without a manifest: a leftover older than the newest complete backup, and
    // one in progress (started after it). Expire removes the first and never touches the second.
    let id_at = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    // (A day before the first: an id between two backups could be one of theirs.)
    let leftover = id_at(taken[0].stop_time - chrono::Duration::days(1));
    let running = id_at(taken[3].stop_time + chrono::Duration::seconds(30));
    for id in [&leftover, &running] {
        let dir = root.join("backups").join(id).join("bundles");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00000000"), b"partial bundle").unwrap();
    }

    let mut run = policy.to_vec();
    run.extend(["--force", "--json"]);
    let out = expire(&repo, &run);
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert_eq!(
        ids(&report["backups_removed"]),
        [taken[0].id.clone(), taken[1].id.clone()]
    );
    assert!(
        report["wal_objects_removed"].as_u64().unwrap() >= 6,
        "{report:#}"
    );
    let listed: Vec<String> = list(&repo)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [taken[2].id.clone(), taken[3].id.clone()]);
    assert!(
        !root
            .join("backups")
            .join(&taken[0].id)
            .join("manifest.json")
            .exists()
    );
    let floor = taken[2].start_lsn >> 20;
    let segments = segment_objects(&root);
    assert!(
        segments.iter().all(|k| segno(k) >= floor),
        "WAL before the anchor's start remains: {segments:?}"
    );
    assert!(
        segments.iter().any(|k| segno(k) == floor),
        "the anchor's first segment is gone"
    );
    assert_eq!(
        ids(&report["leftovers_removed"]),
        std::slice::from_ref(&leftover),
        "{report:#}"
    );
    assert!(
        !root
            .join("backups")
            .join(&leftover)
            .join("bundles/00000000")
            .exists()
    );
    assert!(
        root.join("backups")
            .join(&running)
            .join("bundles/00000000")
            .exists(),
        "a backup in progress was touched"
    );
    assert_sound(&repo, "after expire");
    let (_, report) = verify(&repo, &[]);
    assert!(
        report["warnings"].to_string().contains(&running),
        "{report:#}"
    );
    std::fs::remove_file(root.join("backups").join(&running).join("bundles/00000000")).unwrap();

    // `list` names the rules keeping each backup under the configured policy (now: both were
    // taken today, so `daily = 1` keeps the newer and the older would go).
    let out = Command::new(walship_bin())
        .arg("--config")
        .arg(&repo.config)
        .args(["list", "--json"])
        .envs(repo.env())
        .env("WALSHIP_RETENTION_DAILY", "1")
        .output()
        .unwrap();
    let listed = json(&out);
    assert_eq!(listed[0]["kept_by"], serde_json::json!([]), "{listed:#}");
    assert_eq!(
        listed[1]["kept_by"],
        serde_json::json!(["daily"]),
        "{listed:#}"
    );
    let out = Command::new(walship_bin())
        .arg("--config")
        .arg(&repo.config)
        .arg("list")
        .envs(repo.env())
        .env("WALSHIP_RETENTION_DAILY", "1")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("KEPT BY") && table.contains("(expires)") && table.contains("daily"),
        "{table}"
    );
    let out = expire(&repo, &run);
    let again = json(&out)["plan"].clone();
    assert!(
        again["removed"].as_array().unwrap().is_empty()
            && again["wal_ranges"].as_array().unwrap().is_empty(),
        "{again:#}"
    );

    // Later times: an hour after the fourth backup only it is in the window; a day later a
    // daily rule keeps the newest of the day (all four were taken today, in UTC).
    let later =
        now_arg(taken[3].stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    let out = expire(
        &repo,
        &[
            "--pitr-window",
            "1h",
            "--now",
            &later,
            "--dry-run",
            "--json",
        ],
    );
    let plan = json(&out)["plan"].clone();
    assert_eq!(ids(&plan["kept"]), [taken[3].id.clone()], "{plan:#}");
    assert_eq!(ids(&plan["removed"]), [taken[2].id.clone()], "{plan:#}");
    let day = now_arg(taken[3].stop_time + chrono::Duration::days(1));
    let out = expire(
        &repo,
        &["--daily", "3", "--now", &day, "--dry-run", "--json"],
    );
    let plan = json(&out)["plan"].clone();
    assert_eq!(ids(&plan["kept"]), [taken[3].id.clone()], "{plan:#}");
    assert_eq!(plan["kept"][0]["rules"], serde_json::json!(["daily"]));

    // The window's first moment (the anchor's consistency point) restores with its rows, and
    // the restored server archives a timeline 2 into the same repository.
    drop(cluster);
    let dir = pg_test_harness::test_dir("expired-restore");
    let to = dir.path().join("data");
    // Microseconds, rounded up: the target must not fall before the consistency point.
    let target = (taken[2].stop_time + chrono::Duration::microseconds(1))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let out = restore(&repo, &to, &["--target-time", &target]);
    assert!(out.status.success(), "{}", describe(&out));
    let restored = start_restored_with(&install, &to, true);
    let rows: i64 = restored
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(rows, taken[2].rows, "rows at the window's first moment");
    restored.execute("insert into t values (1)");
    archive_everything(&restored, Duration::from_secs(120));
    assert!(root.join("wal/00000002.history").exists());
    assert_sound(&repo, "with a second timeline");
    // The human forms: verify's summary line, expire's plan.
    let out = repo.walship(&["verify", "--max-wal-age", "1h"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    assert!(
        text.contains("sound: checked")
            && text.contains("on timeline 2")
            && text.contains("2 backups"),
        "{text}"
    );
    // Timeline 2 forked from the third backup: as of an hour after the fourth, the window
    // on timeline 2 still restores from the third, which stays, with all WAL timeline 2 needs.
    let out = expire(
        &repo,
        &[
            "--pitr-window",
            "1h",
            "--now",
            &later,
            "--dry-run",
            "--json",
        ],
    );
    let plan = json(&out)["plan"].clone();
    assert_eq!(
        ids(&plan["kept"]),
        [taken[2].id.clone(), taken[3].id.clone()],
        "{plan:#}"
    );
    assert_eq!(
        plan["pitr_timelines"]["2"]["anchor"],
        taken[2].id.as_str(),
        "{plan:#}"
    );
    assert_eq!(
        plan["pitr_timelines"]["1"]["anchor"],
        taken[3].id.as_str(),
        "{plan:#}"
    );
    let out = expire(
        &repo,
        &["--pitr-window", "1h", "--now", &later, "--dry-run"],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    assert!(
        text.contains("PITR window on timeline 2") && text.contains("dry run: nothing was removed"),
        "{text}"
    );
    drop(restored);

    // Damage, one kind at a time, each repaired before the next.
    let segs = segment_objects(&root);
    let tl1: Vec<&String> = segs
        .iter()
        .filter(|k| k.starts_with("wal/00000001"))
        .collect();
    let mid = tl1[tl1.len() - 2].clone();
    let mid_name = mid.rsplit('/').next().unwrap().to_string();
    let b4 = root.join("backups").join(&taken[3].id);
    let bundle = std::fs::read_dir(b4.join("bundles"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let manifest = b4.join("manifest.json");
    let history2 = root.join("wal/00000002.history");
    let damage = |path: &Path,
                  how: &dyn Fn(&mut Vec<u8>) -> bool,
                  extra: &[&str],
                  kind: &str,
                  needle: &str| {
        let saved = std::fs::read(path).unwrap();
        let mut bytes = saved.clone();
        if how(&mut bytes) {
            std::fs::write(path, &bytes).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
        assert_problem(&repo, extra, kind, needle);
        std::fs::write(path, &saved).unwrap();
    };
    let flip = |b: &mut Vec<u8>| {
        let at = b.len() / 2;
        b[at] ^= 0x40;
        true
    };
    let delete = |_: &mut Vec<u8>| false;
    damage(&root.join(&mid), &flip, &[], "corrupt_object", &mid_name);
    damage(&bundle, &flip, &[], "corrupt_object", &taken[3].id);
    damage(&manifest, &flip, &[], "bad_manifest", &taken[3].id);
    damage(&root.join(&mid), &delete, &[], "wal_gap", &mid_name);
    damage(&bundle, &delete, &[], "missing_object", &taken[3].id);
    damage(&history2, &delete, &[], "missing_history", "2");
    damage(
        &root.join(&mid),
        &|b: &mut Vec<u8>| {
            b.truncate(b.len() - 100);
            true
        },
        &[],
        "corrupt_object",
        &mid_name,
    );
    // An unreadable pin record: verify names it, expire refuses rather than guess.
    let out = repo.walship(&["pin", &taken[3].id]);
    assert!(out.status.success(), "{}", describe(&out));
    let pin = b4.join("pins/00000001.json");
    let saved = std::fs::read(&pin).unwrap();
    std::fs::write(&pin, b"{ not json").unwrap();
    assert_problem(&repo, &[], "bad_pin_record", "pins/00000001.json");
    let out = expire(&repo, &["--daily", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    std::fs::write(&pin, saved).unwrap();
    let out = repo.walship(&["unpin", &taken[3].id]);
    assert!(out.status.success(), "{}", describe(&out));
    // --quick reads no content: a truncated bundle shows in its size; --backup checks one.
    damage(
        &bundle,
        &|b: &mut Vec<u8>| {
            b.truncate(b.len() - 1);
            true
        },
        &["--quick"],
        "bundle_size",
        &taken[3].id,
    );
    let (code, report) = verify(&repo, &["--quick"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["checked"]["quick"], true);
    let (code, report) = verify(&repo, &["--backup", &taken[2].id]);
    assert_eq!(
        (code, report["checked"]["backups"].as_u64()),
        (Some(0), Some(1)),
        "{report:#}"
    );
    let out = repo.walship(&["verify", "--backup", "20000101T000000Z"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_sound(&repo, "after every repair");
}

/// A copy of the repository directory `from` as a new file:// repository with its config.
fn copy_repo(from: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
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

fn walship_at(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(walship_bin());
    cmd.arg("--config").arg(config).args(args);
    cmd
}

#[test]
fn expire_killed_at_random_points_leaves_a_sound_repository_and_the_next_run_finishes() {
    let Some(install) = pg15() else { return };
    let repo = TestRepo::local();
    const KILLS: u64 = 16;
    let (cluster, taken) = history(&install, &repo, 3, 40);
    drop(cluster);
    let template = repo.local_root().to_path_buf();
    let now =
        now_arg(taken[1].stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    let args = [
        "expire",
        "--pitr-window",
        "1h",
        "--now",
        &now,
        "--force",
        "--json",
    ];
    // One whole run, timed, gives the range of kill points.
    let (_whole, config) = copy_repo(&template, "expire-whole");
    let started = Instant::now();
    let out = walship_at(&config, &args).output().unwrap();
    let whole = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    let expected = json(&out)["report"]["objects_removed"].as_u64().unwrap();
    assert!(expected > 40, "{expected}");
    let mut interrupted = 0;
    for i in 0..KILLS {
        let (_dir, config) = copy_repo(&template, "expire-kill");
        let root = std::fs::read_to_string(&config).unwrap();
        let root = PathBuf::from(
            root.trim()
                .trim_start_matches("repo = \"file://")
                .trim_end_matches('"'),
        );
        // Spread the kills over the run, with a little jitter.
        let jitter = f64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
                % 1000,
        ) / 1000.0;
        let delay = whole.mul_f64(0.9 * (i as f64 + jitter) / KILLS as f64);
        let mut child = walship_at(&config, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let killed = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok();
        let status = child.wait().unwrap();
        if killed && !status.success() {
            interrupted += 1;
        }
        let out = walship_at(&config, &["verify", "--json", "--max-wal-age", "1h"])
            .output()
            .unwrap();
        let report = json(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "kill {i} after {delay:?}: {report:#}"
        );
        let out = walship_at(&config, &args).output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let out = walship_at(&config, &["list", "--json"]).output().unwrap();
        let listed: Vec<String> = json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            listed,
            [taken[1].id.clone(), taken[2].id.clone()],
            "kill {i}"
        );
        let floor = taken[1].start_lsn >> 20;
        assert!(
            segment_objects(&root).iter().all(|k| segno(k) >= floor),
            "kill {i}: WAL left"
        );
        assert!(
            !objects(&root).iter().any(|k| k.contains(&taken[0].id)),
            "kill {i}: backup 1 left"
        );
        let out = walship_at(&config, &["verify", "--json", "--max-wal-age", "1h"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "kill {i}: {}", describe(&out));
    }
    eprintln!("{interrupted} of {KILLS} runs were killed mid-way (whole run {whole:?})");

    // An object the storage refuses to delete (here an immutable file, as an Object Lock
    // would be on S3) is reported and skipped; the run succeeds; the next one removes it.
    let (_dir, config) = copy_repo(&template, "expire-refused");
    let root = std::fs::read_to_string(&config).unwrap();
    let root = PathBuf::from(
        root.trim()
            .trim_start_matches("repo = \"file://")
            .trim_end_matches('"'),
    );
    let locked = segment_objects(&root)[0].clone();
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(root.join(&locked))
            .status()
            .is_ok_and(|s| s.success())
    };
    if chattr("+i") {
        let out = walship_at(&config, &args).output().unwrap();
        chattr("-i");
        assert!(out.status.success(), "{}", describe(&out));
        let refused = json(&out)["report"]["refused"].clone();
        assert_eq!(refused[0]["key"], locked.as_str(), "{refused:#}");
        assert!(root.join(&locked).exists());
        let out = walship_at(&config, &["verify", "--json", "--max-wal-age", "1h"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let out = walship_at(&config, &args).output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        assert!(!root.join(&locked).exists());
    } else {
        eprintln!("SKIP: chattr +i is not available here: refusal not tested");
    }
    assert!(interrupted >= 10, "only {interrupted} kills landed mid-run");
}

#[test]
fn expire_and_verify_on_seaweedfs() {
    let Some(install) = pg15() else { return };
    let Some(repo) = TestRepo::s3() else { return };
    let (cluster, taken) = history(&install, &repo, 3, 3);
    assert_sound(&repo, "healthy S3 repository");
    let now =
        now_arg(taken[1].stop_time + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    let out = expire(
        &repo,
        &["--pitr-window", "1h", "--now", &now, "--force", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert_eq!(ids(&report["backups_removed"]), [taken[0].id.clone()]);
    assert!(
        report["wal_objects_removed"].as_u64().unwrap() >= 3,
        "{report:#}"
    );
    let listed: Vec<String> = list(&repo)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [taken[1].id.clone(), taken[2].id.clone()]);
    assert_sound(&repo, "S3 after expire");

    // Delete one segment after the newest backup through the library: a named gap.
    let rt = restore_support::runtime();
    let r = restore_support::open_repo(&rt, &repo);
    let victim = rt.block_on(async {
        use walship_common::storage::Storage;
        let wal = r.storage().list("wal/0000000100000000/").await.unwrap();
        let segments: Vec<_> = wal
            .iter()
            .filter(|m| m.key.as_str().rsplit('/').next().unwrap().len() == 24)
            .collect();
        let key = segments[segments.len() - 2].key.clone();
        r.storage().delete(&key).await.unwrap();
        key
    });
    let name = victim.as_str().rsplit('/').next().unwrap().to_string();
    assert_problem(&repo, &[], "wal_gap", &name);

    // `backup --expire` (the sidecar's CronJob): refused up front without a policy; with
    // one, the backup is taken and then expired by it.
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let backup = ["backup", "-d", &conn, "--checkpoint", "fast", "--expire"];
    let out = repo.walship(&backup);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(list(&repo).len(), 2, "nothing was done");
    let out = Command::new(walship_bin())
        .arg("--config")
        .arg(&repo.config)
        .args(backup)
        .envs(repo.env())
        .env("WALSHIP_RETENTION_PITR_WINDOW", "1ms")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expire: removed 2 backups"),
        "{}",
        describe(&out)
    );
    let listed = list(&repo);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert!(listed[0]["id"].as_str().unwrap() > taken[2].id.as_str());
    drop(cluster);
    // The gap lay before the new backup: expired with the rest, the repository is sound.
    assert_sound(&repo, "S3 after backup --expire");
}

#[test]
fn verify_reports_a_healthy_repository_sound_on_every_major() {
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::local();
        let cluster = archiving_cluster(&install, &repo);
        cluster.execute("create table t as select g from generate_series(1, 1000) g");
        walship_backup(&cluster, &repo);
        cluster.execute("insert into t values (1)");
        archive_everything(&cluster, Duration::from_secs(120));
        let (code, report) = verify(&repo, &[]);
        assert_eq!(code, Some(0), "PG{}: {report:#}", install.major);
        assert!(
            report["checked"]["objects"].as_u64().unwrap() >= 3,
            "PG{}: {report:#}",
            install.major
        );
        eprintln!("PG{}: sound, {}", install.major, report["checked"]);
    }
}

/// The aim for `expire`'s speed: 100,000 expired segments removed from SeaweedFS in
/// under 60 s (one listing, DeleteObjects 1,000 keys a call). A crafted repository (one
/// manifest, 100,000 tiny WAL objects: `expire` reads neither), so it runs without Postgres.
/// Slow to set up (the uploads): run by hand with `--ignored`; figures in BENCHMARKS.md.
#[test]
#[ignore]
fn expire_removes_100k_segments_from_seaweedfs_within_a_minute() {
    use futures::StreamExt;
    use walship_common::pg::{SegNo, TimelineId, WalFileName, WalSegSize};
    use walship_common::repo::{RepoIdentity, layout};
    use walship_common::storage::{PutOptions, Storage};

    const SEGMENTS: u64 = 100_000;
    let Some(repo) = TestRepo::s3() else { return };
    let rt = restore_support::runtime();
    let r = restore_support::open_repo(&rt, &repo);
    let size = WalSegSize::from_mib(16).unwrap();
    let started = Instant::now();
    rt.block_on(async {
        r.ensure_identity(&RepoIdentity::new(7, 15, 16 << 20))
            .await
            .unwrap();
        futures::stream::iter(1..=SEGMENTS)
            .map(|segno| {
                let r = &r;
                async move {
                    let name = WalFileName::new(TimelineId(1), SegNo(segno), size).unwrap();
                    let key = layout::wal_key(&name.into());
                    r.storage()
                        .put(&key, bytes::Bytes::from_static(b"x"), PutOptions::default())
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        let start = (SEGMENTS + 1) << 24;
        let manifest = serde_json::json!({
            "format_version": 1, "id": "20261122T140300Z", "label": "crafted",
            "system_identifier": "7", "pg_major": 15, "pg_version_num": 150000,
            "wal_segment_size": 16777216, "start_timeline": 1, "stop_timeline": 1,
            "start_lsn": format!("{:X}/{:X}", start >> 32, start & 0xFFFF_FFFF),
            "stop_lsn": format!("{:X}/{:X}", start >> 32, (start & 0xFFFF_FFFF) + 100),
            "start_time": "2026-11-22T14:03:00Z", "stop_time": "2026-11-22T14:03:01Z",
            "duration_ms": 1000, "backup_label": "", "tablespace_map": null, "tablespaces": [],
            "pg_backup_manifest": null, "bytes_raw": 0, "bytes_stored": 0,
            "walship_version": "test", "bundles": [], "files": [],
        });
        let id = "20261122T140300Z".parse().unwrap();
        r.put_content(
            &layout::manifest_key(id),
            serde_json::to_vec(&manifest).unwrap().into(),
            true,
        )
        .await
        .unwrap();
    });
    eprintln!("set up {SEGMENTS} objects in {:?}", started.elapsed());
    let started = Instant::now();
    let out = expire(&repo, &["--daily", "1", "--json"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert_eq!(report["wal_objects_removed"], SEGMENTS, "{report:#}");
    eprintln!("expire removed {SEGMENTS} segments from SeaweedFS in {took:?}");
    assert!(took < Duration::from_secs(60), "{took:?}");
}
