//! S3 Object Lock on a real SeaweedFS (issue 23, test 1): every object walship creates is
//! locked; the server refuses to delete a locked version; `expire` inside the lock skips and
//! reports, and removes every version once the lock has passed; the backup that becomes a
//! monthly one, or is pinned, has its lock (and its WAL's) moved forward; `pin` is a legal
//! hold; `check`,
//! `backup` and the configuration refuse what cannot be locked.
//!
//! The raw requests below are unsigned: SeaweedFS without identities accepts them with the
//! same (full) rights as walship's own credentials.

mod lifecycle_support;
mod restore_support;
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use lifecycle_support::*;
use pg_test_harness::S3Server;
use support::{TestRepo, describe};

/// Lock margin: long enough for archive, two backups and the refusal checks on this busy
/// machine, short enough to wait out.
const MARGIN_SECS: u64 = 75;

fn config_text(url: &str, s3: &S3Server, lock: &str) -> String {
    format!(
        "repo = \"{url}\"\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\nconnect_timeout = \"1s\"\n\
         operation_timeout = \"10s\"\nmax_attempts = 3\nobject_lock = \"{lock}\"\n\
         object_lock_margin = \"{MARGIN_SECS}s\"\n[retention]\npitr_window = \"1s\"\n",
        s3.endpoint, s3.region
    )
}

/// `(mode, retain-until)` of a key's current version, from GetObjectRetention.
fn retention(s3: &S3Server, bucket: &str, key: &str) -> Option<(String, DateTime<Utc>)> {
    let r = s3
        .http("GET", &format!("/{bucket}/cluster-a/{key}?retention"), b"")
        .unwrap();
    if r.status != 200 {
        return None;
    }
    let body = r.body_text();
    let mode = between(&body, "<Mode>", "</Mode>")?;
    let until = between(&body, "<RetainUntilDate>", "</RetainUntilDate>")?;
    Some((mode, until.parse().unwrap()))
}

fn legal_hold(s3: &S3Server, bucket: &str, key: &str) -> String {
    let r = s3
        .http("GET", &format!("/{bucket}/cluster-a/{key}?legal-hold"), b"")
        .unwrap();
    between(&r.body_text(), "<Status>", "</Status>").unwrap_or_default()
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(text[start..end].to_string())
}

/// Version ids of `key` (its versions, not its delete markers), from ListObjectVersions.
fn versions(s3: &S3Server, bucket: &str, key: &str) -> Vec<String> {
    let full = format!("cluster-a/{key}");
    let r = s3
        .http("GET", &format!("/{bucket}?versions&prefix={full}"), b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    r.body_text()
        .split("<Version>")
        .skip(1)
        .filter(|v| between(v, "<Key>", "</Key>").as_deref() == Some(full.as_str()))
        .filter_map(|v| between(v, "<VersionId>", "</VersionId>"))
        .collect()
}

fn keys_of(repo: &TestRepo, prefix: &str) -> Vec<String> {
    let rt = restore_support::runtime();
    let r = restore_support::open_repo(&rt, repo);
    rt.block_on(async {
        use walship_common::storage::Storage;
        r.storage()
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect()
    })
}

#[test]
fn object_lock_locks_every_object_refuses_deletes_expires_after_the_lock_and_extends_monthly() {
    let Some(install) = pg15() else { return };
    let Some(mut repo) = TestRepo::s3() else {
        return;
    };
    let s3 = repo.s3.take().unwrap();
    let plain_bucket = s3.bucket.clone();
    let bucket = s3.create_object_lock_bucket().unwrap();
    repo.url = format!("s3://{bucket}/cluster-a");
    std::fs::write(&repo.config, config_text(&repo.url, &s3, "compliance")).unwrap();
    repo.s3 = Some(s3);

    // A local repository with object_lock on: refused up front.
    let local = TestRepo::local();
    std::fs::write(
        &local.config,
        format!(
            "repo = \"{}\"\n[s3]\nobject_lock = \"governance\"\n[retention]\npitr_window = \"1d\"\n",
            local.url
        ),
    )
    .unwrap();
    let out = local.walship(&["list"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3.object_lock") && err.contains("not on S3"),
        "{err}"
    );

    let (cluster, taken) = history(&install, &repo, 2, 2);
    let s3 = repo.s3.as_ref().unwrap();
    let (a, b) = (&taken[0], &taken[1]);
    let started = Utc::now();

    // Every kind of object is locked in COMPLIANCE mode.
    let wal = keys_of(&repo, "wal/");
    let a_objects = keys_of(&repo, &format!("backups/{}/", a.id));
    let a_manifest = format!("backups/{}/manifest.json", a.id);
    let a_bundle = a_objects
        .iter()
        .find(|k| k.contains("/bundles/"))
        .expect("a bundle of backup A")
        .clone();
    // A WAL segment only A needs (before B's start): expire will remove it.
    let a_wal = wal
        .iter()
        .find(|k| k.rsplit('/').next().unwrap().len() == 24 && segno(k) < b.start_lsn >> 20)
        .expect("WAL before backup B")
        .clone();
    for key in [&a_wal, &a_bundle, &a_manifest, &"walship.json".to_string()] {
        let (mode, until) = retention(s3, &bucket, key).unwrap_or_else(|| panic!("{key} unlocked"));
        assert_eq!(mode, "COMPLIANCE", "{key}");
        assert!(until > started, "{key}: {until}");
    }
    let audit = keys_of(&repo, "audit/");
    assert!(!audit.is_empty());
    assert!(
        retention(s3, &bucket, &audit[0]).is_some(),
        "{} unlocked",
        audit[0]
    );

    // Deleting or overwriting a locked WAL or bundle version: the server refuses to delete
    // the version; an overwrite only adds a version, and the original stays readable.
    for key in [&a_wal, &a_bundle] {
        let original = s3
            .http("GET", &format!("/{bucket}/cluster-a/{key}"), b"")
            .unwrap()
            .body;
        let version = versions(s3, &bucket, key)[0].clone();
        let del = s3
            .http(
                "DELETE",
                &format!("/{bucket}/cluster-a/{key}?versionId={version}"),
                b"",
            )
            .unwrap();
        assert_eq!(del.status, 403, "{key}: {}", del.body_text());
        let put = s3
            .http("PUT", &format!("/{bucket}/cluster-a/{key}"), b"ransomware")
            .unwrap();
        assert_eq!(put.status, 200, "{}", put.body_text());
        let kept = s3
            .http(
                "GET",
                &format!("/{bucket}/cluster-a/{key}?versionId={version}"),
                b"",
            )
            .unwrap();
        assert_eq!(kept.status, 200);
        assert!(kept.body == original, "{key}: the locked version changed");
        let del = s3
            .http(
                "DELETE",
                &format!("/{bucket}/cluster-a/{key}?versionId={version}"),
                b"",
            )
            .unwrap();
        assert_eq!(del.status, 403, "{key}: {}", del.body_text());
    }

    // expire inside the lock: A's manifest is refused, reported and skipped; the run succeeds.
    // B must have stopped more than the 1 s PITR window ago, or A is still the window's
    // anchor and nothing of A is due (seen on a fast run).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let now = now_arg(Utc::now());
    let out = expire(&repo, &["--now", &now, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let report = json(&out)["report"].clone();
    assert_eq!(
        ids(&report["backups_kept_after_all"]),
        std::slice::from_ref(&a.id),
        "{report:#}"
    );
    assert_eq!(
        report["refused"][0]["key"],
        a_manifest.as_str(),
        "{report:#}"
    );
    assert_eq!(list(&repo).len(), 2);

    // Once the lock has passed, expire removes A and the WAL before B, every version.
    let (_, a_until) = retention(s3, &bucket, &a_manifest).unwrap();
    let wait = (a_until - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    eprintln!("waiting {wait:?} for the lock of backup A to pass");
    std::thread::sleep(wait);
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let now = now_arg(Utc::now());
        let out = expire(&repo, &["--now", &now, "--json"]);
        assert!(out.status.success(), "{}", describe(&out));
        let report = json(&out)["report"].clone();
        let refused = report["refused"].as_array().unwrap();
        if refused.is_empty()
            && report["backups_kept_after_all"]
                .as_array()
                .unwrap()
                .is_empty()
        {
            break report;
        }
        assert!(Instant::now() < deadline, "still refused: {report:#}");
        std::thread::sleep(Duration::from_secs(3));
    };
    eprintln!("{report:#}");
    let listed: Vec<String> = list(&repo)
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&b.id));
    for key in [&a_wal, &a_bundle, &a_manifest] {
        assert!(
            versions(s3, &bucket, key).is_empty(),
            "{key}: versions left behind"
        );
    }
    assert_sound(&repo, "after expire under object lock");

    // The backup that becomes the monthly one (evaluated in the next month, when its month
    // is closed) is locked until two months after its own began, and so is its WAL.
    let b_manifest = format!("backups/{}/manifest.json", b.id);
    let b_bundle = keys_of(&repo, &format!("backups/{}/bundles/", b.id))[0].clone();
    let b_wal = keys_of(&repo, "wal/")
        .into_iter()
        .find(|k| k.rsplit('/').next().unwrap().len() == 24 && segno(k) == b.start_lsn >> 20)
        .expect("B's first segment");
    // pin is a legal hold on the backup's objects, and expire keeps the pinned backup and
    // its WAL locked (rolling: now + a new backup's lock), though its own lock has passed.
    let out = repo.walship(&["pin", &b.id, "--reason", "audit"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(legal_hold(s3, &bucket, &b_manifest), "ON");
    assert_eq!(legal_hold(s3, &bucket, &b_bundle), "ON");
    // A rolling lock is renewed only once less than a new backup's lock minus the margin is
    // left; evaluated 90 s ahead, B's own lock (75 s margin) is surely that short, however
    // long the steps above took.
    let expired_at = Utc::now() + chrono::Duration::seconds(90);
    let out = expire(&repo, &["--now", &now_arg(expired_at), "--force", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let value = json(&out);
    assert_eq!(
        value["locks"]["extensions"][0]["id"],
        b.id.as_str(),
        "{value:#}"
    );
    let rolling = expired_at + chrono::Duration::seconds(MARGIN_SECS as i64);
    for key in [&b_manifest, &b_bundle, &b_wal] {
        let (_, until) = retention(s3, &bucket, key).unwrap();
        assert!(until >= rolling, "{key}: {until} < {rolling}");
    }
    let (_, before) = retention(s3, &bucket, &b_manifest).unwrap();
    let today = Utc::now().date_naive();
    let next_month = today
        .with_day(1)
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap();
    let in_two_months = next_month
        .checked_add_months(chrono::Months::new(1))
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let now = now_arg(next_month.and_hms_opt(0, 30, 0).unwrap().and_utc());
    let out = expire(
        &repo,
        &["--now", &now, "--force", "--monthly", "2", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let value = json(&out);
    assert_eq!(
        ids(&value["report"]["backups_removed"]),
        Vec::<String>::new()
    );
    let exts = value["locks"]["extensions"].as_array().unwrap().clone();
    assert_eq!(exts.len(), 1, "{value:#}");
    assert_eq!(exts[0]["id"], b.id.as_str());
    let expected = in_two_months + chrono::Duration::seconds(MARGIN_SECS as i64);
    for key in [&b_manifest, &b_bundle, &b_wal] {
        let (mode, until) = retention(s3, &bucket, key).unwrap();
        assert_eq!(mode, "COMPLIANCE");
        assert!(until >= expected, "{key}: {until} < {expected}");
        assert!(until > before, "{key}: not moved forward");
    }

    // unpin releases the legal hold.
    let out = repo.walship(&["unpin", &b.id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(legal_hold(s3, &bucket, &b_manifest), "OFF");

    // GOVERNANCE mode: a new object (here the next pin record) is locked in that mode, and
    // without bypass rights its version cannot be deleted either.
    std::fs::write(&repo.config, config_text(&repo.url, s3, "governance")).unwrap();
    let out = repo.walship(&["pin", &b.id]);
    assert!(out.status.success(), "{}", describe(&out));
    let record = keys_of(&repo, &format!("backups/{}/pins/", b.id))
        .into_iter()
        .max()
        .unwrap();
    let (mode, _) = retention(s3, &bucket, &record).expect("pin record locked");
    assert_eq!(mode, "GOVERNANCE", "{record}");
    let version = versions(s3, &bucket, &record)[0].clone();
    let del = s3
        .http(
            "DELETE",
            &format!("/{bucket}/cluster-a/{record}?versionId={version}"),
            b"",
        )
        .unwrap();
    assert_eq!(del.status, 403, "{record}: {}", del.body_text());
    std::fs::write(&repo.config, config_text(&repo.url, s3, "compliance")).unwrap();

    // check: ok on this bucket; refused on a bucket without Object Lock, naming it; backup
    // and archive refuse that bucket too.
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let out = repo.walship(&["check", "-d", &conn, "--timeout", "20s", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let checks = json(&out)["checks"].as_array().unwrap().clone();
    let lock_item = checks
        .iter()
        .find(|c| c["name"] == "s3.object_lock")
        .unwrap();
    assert_eq!(lock_item["ok"], true, "{text}");
    let plain_url = format!("s3://{plain_bucket}/cluster-a");
    std::fs::write(&repo.config, config_text(&plain_url, s3, "compliance")).unwrap();
    let out = repo.walship(&["check", "-d", &conn, "--timeout", "3s", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let checks = json(&out)["checks"].as_array().unwrap().clone();
    let lock_item = checks
        .iter()
        .find(|c| c["name"] == "s3.object_lock")
        .unwrap();
    assert_eq!(lock_item["ok"], false);
    let detail = lock_item["detail"].as_str().unwrap();
    assert!(
        detail.contains(&plain_bucket) && detail.contains("does not have S3 Object Lock enabled"),
        "{detail}"
    );
    let out = repo.walship(&["backup", "-d", &conn, "--checkpoint", "fast"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&plain_bucket) && err.contains("s3.object_lock"),
        "{err}"
    );
    let out = repo.walship(&["archive", "/nonexistent/000000010000000000000042"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&plain_bucket) && err.contains("does not have S3 Object Lock enabled"),
        "{err}"
    );
    drop(cluster);
}
