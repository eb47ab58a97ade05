//! `walship expire`, `pin`/`unpin` and `verify` through the binary, on a real Postgres 15
//! archiving into a local repository: a series of backups with WAL between them; `expire --now`
//! later keeps the PITR window's anchor and what follows, removes the rest (backups and WAL),
//! honours pins, leaves a backup in progress alone; a kept backup restores to the window's
//! first moment with the recorded rows, and the promoted copy's timeline keeps its own window;
//! `verify` calls the result sound, then names each kind of damage (flipped byte in WAL,
//! bundle, manifest; deleted segment; deleted bundle; missing `.history`; truncated object;
//! unreadable pin record); the gap expire leaves after a pinned backup is sound under the
//! configured policy; a healthy repository is sound on every major.
//! Crashes, S3 and speed: `expire_crash_s3.rs`.

mod lifecycle_support;
mod restore_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifecycle_support::*;
use restore_support::{archiving_cluster, restore, start_restored_with, walship_backup};
use support::{TestRepo, archive_everything, describe, switch_wal, walship_bin};

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

    // The other kept backup restores to its consistency point with its rows.
    drop(cluster);
    let dir4 = pg_test_harness::test_dir("expired-restore-4");
    let to4 = dir4.path().join("data");
    let out = restore(
        &repo,
        &to4,
        &["--backup", &taken[3].id, "--target", "immediate"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let restored4 = start_restored_with(&install, &to4, false);
    let rows: i64 = restored4
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(rows, taken[3].rows, "rows of the fourth backup");
    drop(restored4);

    // The window's first moment (the anchor's consistency point) restores with its rows, and
    // the restored server archives a timeline 2 into the same repository.
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

/// A backup kept only by a pin (or a calendar rule) keeps just its own WAL, so `expire`
/// leaves a gap between it and the window's anchor. With the policy in the config, `verify`
/// judges continuity from the floor the policy keeps and calls the result sound; without a
/// policy it cannot tell that gap from a loss, and names it.
#[test]
fn the_gap_expire_leaves_after_a_pinned_backup_is_sound_under_the_policy() {
    let Some(install) = pg15() else { return };
    let repo = TestRepo::local();
    let root = repo.local_root().to_path_buf();
    let (cluster, taken) = history(&install, &repo, 3, 3);
    // WAL well past the newest backup, so a segment can go missing inside the window.
    for _ in 0..3 {
        cluster.execute("insert into t values (0)");
        switch_wal(&cluster);
    }
    archive_everything(&cluster, Duration::from_secs(120));
    let out = repo.walship(&["pin", &taken[0].id, "--reason", "kept for audit"]);
    assert!(out.status.success(), "{}", describe(&out));
    let with_policy = repo.config.with_file_name("with-policy.toml");
    let base = std::fs::read_to_string(&repo.config).unwrap();
    std::fs::write(
        &with_policy,
        format!("{base}\n[retention]\npitr_window = \"1s\"\n"),
    )
    .unwrap();
    // The newest backup ended over a second ago (history waits after each): it anchors
    // the window; the first stays pinned; the second goes, with the WAL around it.
    let out = walship_at(&with_policy, &["expire", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        ids(&json(&out)["report"]["backups_removed"]),
        std::slice::from_ref(&taken[1].id)
    );
    let gap = taken[1].start_lsn >> 20;
    assert!(
        segment_objects(&root).iter().all(|k| segno(k) != gap),
        "expire kept the segment where the removed backup started"
    );

    let out = walship_at(&with_policy, &["verify", "--json", "--max-wal-age", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["sound"], true);
    assert_problem(&repo, &[], "wal_gap", "");

    // Under the policy, a segment lost inside the window is still a problem.
    let inside = segment_objects(&root)
        .into_iter()
        .filter(|k| segno(k) > (taken[2].start_lsn >> 20) + 1)
        .min_by_key(|k| segno(k))
        .expect("WAL after the anchor's stop");
    std::fs::remove_file(root.join(&inside)).unwrap();
    let out = walship_at(&with_policy, &["verify", "--json", "--max-wal-age", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    assert!(
        json(&out)["problems"].to_string().contains("wal_gap"),
        "{}",
        describe(&out)
    );
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

#[test]
fn verify_exits_above_125_when_the_repository_cannot_be_read() {
    // A stopped S3 server: nothing can be said of the repository, and the code says so.
    let out = Command::new(walship_bin())
        .args(["--repo", "s3://walship-test/x", "verify", "--json"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("WALSHIP_S3_ENDPOINT", "http://127.0.0.1:1")
        .env("WALSHIP_S3_REGION", "us-east-1")
        .env("WALSHIP_S3_MAX_ATTEMPTS", "1")
        .env("WALSHIP_S3_CONNECT_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
    assert!(
        out.stdout.is_empty(),
        "no verdict is printed: {}",
        describe(&out)
    );
    // A directory that is not a repository (no walship.json): the same.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let out = Command::new(walship_bin())
        .args(["--repo", &url, "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(200), "{}", describe(&out));
}
