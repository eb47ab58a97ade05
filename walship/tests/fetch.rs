//! `walship fetch` as Postgres's restore_command: real recovery of every major through the
//! archive, an S3 outage during recovery never ends it early, and the exit codes that
//! Postgres depends on.

mod support;

use std::path::Path;
use std::time::Duration;

use pg_test_harness::{Cluster, PgInstall, StopMode};
use support::{TestRepo, archive_everything, describe, low_level_copy, wait_until};

const RECOVERY_MUST_STOP: i32 = 200;

/// A primary archiving into `repo`, with a table `t` and rows written in batches across
/// several segments, plus a low-level copy taken after the first batch. Returns the primary,
/// the copy's directory, and the rows the archive holds at the end.
struct Scenario {
    primary: Cluster,
    copy: tempfile::TempDir,
    rows: i64,
    sum: i64,
}

fn scenario(install: &PgInstall, repo: &TestRepo) -> Scenario {
    let primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .start();
    primary.execute("create table t(i int, pad text)");
    primary.execute("insert into t select g, repeat('x', 100) from generate_series(1, 1000) g");
    let copy = pg_test_harness::test_dir("restored");
    let data = copy.path().join("data");
    low_level_copy(&primary, &data);
    for batch in 1..=10 {
        primary.execute(&format!(
            "insert into t select g, repeat('y', 100) from generate_series({}, {}) g",
            batch * 10_000,
            batch * 10_000 + 999
        ));
        primary.execute("select pg_switch_wal()");
    }
    archive_everything(&primary, Duration::from_secs(120));
    let rows: i64 = primary
        .query_string("select count(*) from t")
        .parse()
        .unwrap();
    let sum: i64 = primary
        .query_string("select sum(i) from t")
        .parse()
        .unwrap();
    Scenario {
        primary,
        copy,
        rows,
        sum,
    }
}

/// Turns the copy into a cluster that recovers from the archive through `walship fetch`.
fn recovering_copy(install: &PgInstall, copy: &Path, repo: &TestRepo) -> Cluster {
    let data = copy.join("data");
    std::fs::write(data.join("recovery.signal"), b"").unwrap();
    support::chown_tree_like(&data, copy);
    let cluster = Cluster::from_data_dir(install, &data);
    cluster.append_conf("archive_mode = off");
    cluster.append_conf(&format!("restore_command = '{}'", repo.restore_command()));
    cluster
}

/// [`scenario`] on PG15 (or the first major under test) with a local repository, and the
/// names of the segments the primary archived, oldest first.
fn local_scenario_on_15() -> (TestRepo, Scenario, Vec<String>) {
    let installs = pg_test_harness::installs_under_test();
    let install = installs
        .iter()
        .find(|i| i.major == 15)
        .unwrap_or(&installs[0])
        .clone();
    let repo = TestRepo::local();
    let s = scenario(&install, &repo);
    let segments: Vec<String> = support::done_files(&s.primary)
        .into_iter()
        .filter(|n| support::is_segment_name(n))
        .collect();
    (repo, s, segments)
}

fn assert_rows(cluster: &Cluster, rows: i64, sum: i64) {
    assert_eq!(
        cluster
            .query_string("select count(*) from t")
            .parse::<i64>()
            .unwrap(),
        rows
    );
    assert_eq!(
        cluster
            .query_string("select sum(i) from t")
            .parse::<i64>()
            .unwrap(),
        sum
    );
}

#[test]
fn postgres_recovers_through_fetch_every_major() {
    let Some(probe) = TestRepo::s3() else { return };
    drop(probe);
    for install in pg_test_harness::installs_under_test() {
        let repo = TestRepo::s3().expect("SeaweedFS ran a moment ago");
        let mut s = scenario(&install, &repo);
        s.primary.stop(StopMode::Fast);
        let mut restored = recovering_copy(&install, s.copy.path(), &repo);
        restored.start();
        wait_until(Duration::from_secs(120), "recovery to end", || {
            restored.query_string("select pg_is_in_recovery()") == "f"
        });
        assert_rows(&restored, s.rows, s.sum);
        eprintln!(
            "PG{}: recovered {} rows through walship fetch",
            install.major, s.rows
        );
        restored.stop(StopMode::Fast);
    }
}

#[test]
fn s3_outage_during_recovery_never_ends_it_early() {
    let Some(mut repo) = TestRepo::s3() else {
        return;
    };
    let installs = pg_test_harness::installs_under_test();
    let install = installs.last().unwrap().clone();
    let mut s = scenario(&install, &repo);
    s.primary.stop(StopMode::Fast);

    repo.s3.as_mut().unwrap().stop();
    let mut restored = recovering_copy(&install, s.copy.path(), &repo);
    let started = restored.try_start();
    // Postgres must stop (FATAL in the startup process), never promote on a network error.
    wait_until(
        Duration::from_secs(120),
        "Postgres to stop recovery",
        || !restored.is_running(),
    );
    let log = restored.log();
    assert!(started.is_err() || log.contains("FATAL"), "{log}");
    assert!(
        !log.contains("selected new timeline ID"),
        "recovery ended early:\n{log}"
    );
    assert!(
        restored.data_dir().join("recovery.signal").exists(),
        "recovery must not have ended"
    );
    assert!(
        !restored.data_dir().join("pg_wal/00000002.history").exists(),
        "no new timeline"
    );

    repo.s3.as_mut().unwrap().restart();
    restored.start();
    wait_until(Duration::from_secs(120), "recovery to end", || {
        restored.query_string("select pg_is_in_recovery()") == "f"
    });
    assert_rows(&restored, s.rows, s.sum);
}

#[test]
fn exit_codes_missing_unreachable_and_uninitialised() {
    let repo = TestRepo::local();
    let dest = repo.dir.path().join("RECOVERYXLOG");
    // A repository without walship.json is not "empty": it is the wrong place. Exit 1 there
    // would make Postgres promote at once.
    let out = repo.walship(&["fetch", "000000010000000000000001", dest.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(RECOVERY_MUST_STOP),
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("walship.json"),
        "{}",
        describe(&out)
    );

    // Unreachable S3 (a closed port): above 125, naming the endpoint.
    let dir = pg_test_harness::test_dir("unreachable");
    let config = dir.path().join("walship.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "repo = \"s3://nobucket/x\"\n[s3]\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nconnect_timeout = \"1s\"\nmax_attempts = 2\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(support::walship_bin())
        .arg("--config")
        .arg(&config)
        .args(["fetch", "000000010000000000000001", dest.to_str().unwrap()])
        .envs(repo.env())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(RECOVERY_MUST_STOP),
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists());
}

#[test]
fn missing_files_exit_1_partial_only_on_request_and_prefetch_is_used() {
    let (repo, s, segments) = local_scenario_on_15();
    let dest = repo.dir.path().join("RECOVERYXLOG");
    let dest_str = dest.to_str().unwrap();

    // Postgres probes history files and the next segment all the time: plain exit 1.
    for absent in ["00000005.history", "0000000100000000000000F0"] {
        let out = repo.walship(&["fetch", absent, dest_str]);
        assert_eq!(out.status.code(), Some(1), "{absent}: {}", describe(&out));
        assert!(!dest.exists());
    }

    // Only `<name>.partial` exists (here: a copy of the segment Postgres is writing now, as a
    // promotion or `walship stream` leaves it): not delivered unless asked for.
    let current = s
        .primary
        .query_string("select pg_walfile_name(pg_current_wal_insert_lsn())");
    let partial = repo.dir.path().join(format!("{current}.partial"));
    std::fs::copy(s.primary.data_dir().join("pg_wal").join(&current), &partial).unwrap();
    let out = repo.walship(&["archive", partial.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = repo.walship(&["fetch", &current, dest_str]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a partial must not pass for a segment: {}",
        describe(&out)
    );
    assert!(!dest.exists());
    let out = repo.walship(&["fetch", "--allow-partial", &current, dest_str]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&dest).unwrap() == std::fs::read(&partial).unwrap(),
        "partial content differs"
    );
    std::fs::remove_file(&dest).unwrap();

    // Prefetch: fetching segment N fills the spool with the following ones; they are then
    // delivered from the spool even if the repository loses them.
    let pg_wal = repo.dir.path().join("pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let recoveryxlog = pg_wal.join("RECOVERYXLOG");
    // A call as Postgres makes it, without starting a worker.
    let fetch_now = |name: &str| {
        repo.walship(&[
            "fetch",
            "--prefetch",
            "0",
            name,
            recoveryxlog.to_str().unwrap(),
        ])
    };
    let out = repo.walship(&[
        "fetch",
        "--prefetch",
        "4",
        &segments[1],
        recoveryxlog.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let spool = pg_wal.join("walship/fetch");
    wait_until(
        Duration::from_secs(30),
        "the prefetch worker to fill the spool",
        || {
            segments[2..6]
                .iter()
                .all(|n| spool.join(format!("{n}.ok")).exists())
        },
    );
    let object = repo
        .local_root()
        .join("wal")
        .join(&segments[2][..16])
        .join(&segments[2]);
    std::fs::remove_file(&object).unwrap();
    let out = fetch_now(&segments[2]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&recoveryxlog).unwrap()
            == std::fs::read(s.primary.data_dir().join("pg_wal").join(&segments[2])).unwrap(),
        "prefetched segment differs"
    );
    // The entry stays, as a second name of the delivered file, for Postgres's second
    // request of the last segment it replayed (at the end of every recovery); that request
    // is served from the spool (the repository's copy is gone) after a whole read.
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(inode(&spool.join(&segments[2])), inode(&recoveryxlog));
    std::fs::rename(&recoveryxlog, pg_wal.join(&segments[2])).unwrap();
    let out = fetch_now(&segments[2]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&recoveryxlog).unwrap()
            == std::fs::read(s.primary.data_dir().join("pg_wal").join(&segments[2])).unwrap(),
        "the segment asked for again differs"
    );

    // A spool entry whose bytes changed after the worker checked them (one byte in the
    // middle, the receipt untouched) never reaches Postgres: the call fetches the segment
    // from the repository instead, or, with the repository's copy gone too, answers
    // "absent" and delivers nothing.
    let flip_middle_byte = |name: &str| {
        let entry = spool.join(name);
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&entry, bytes).unwrap();
    };
    let original = |name: &str| std::fs::read(s.primary.data_dir().join("pg_wal").join(name));
    std::fs::remove_file(&recoveryxlog).unwrap();
    for name in &segments[3..5] {
        assert!(
            spool.join(format!("{name}.ok")).exists(),
            "{name} prefetched"
        );
        flip_middle_byte(name);
    }
    let out = fetch_now(&segments[3]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&recoveryxlog).unwrap() == original(&segments[3]).unwrap(),
        "a corrupt spool entry was delivered instead of the repository's copy"
    );
    std::fs::remove_file(&recoveryxlog).unwrap();
    let object = repo
        .local_root()
        .join("wal")
        .join(&segments[4][..16])
        .join(&segments[4]);
    std::fs::remove_file(&object).unwrap();
    let out = fetch_now(&segments[4]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        !recoveryxlog.exists(),
        "nothing is delivered when the only copy left is a corrupt spool entry"
    );
    assert!(
        !spool.join(&segments[4]).exists(),
        "the corrupt entry is thrown away"
    );
    assert!(
        !spool.join(&segments[2]).exists(),
        "a delivered entry goes once Postgres asks for the segment two after it"
    );
}

/// The prefetch worker decodes, checks and writes each segment block by block; whatever it
/// finds wrong never becomes a spool entry: an object holding another segment (it decodes
/// and its crc32c matches, but its pages are not the name's) and an object with a flipped
/// byte. Postgres's own call for them then stops recovery, naming the problem, and nothing
/// half-written is left in the spool.
#[test]
fn the_prefetch_worker_never_spools_a_wrong_or_corrupt_object() {
    // The primary stays up until the end: the scenario owns it.
    let (repo, _scenario, segments) = local_scenario_on_15();
    let object = |name: &str| repo.local_root().join("wal").join(&name[..16]).join(name);
    std::fs::copy(object(&segments[2]), object(&segments[3])).unwrap();
    let mut flipped = std::fs::read(object(&segments[4])).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    std::fs::write(object(&segments[4]), flipped).unwrap();

    let pg_wal = repo.dir.path().join("pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let recoveryxlog = pg_wal.join("RECOVERYXLOG");
    let fetch = |name: &str, prefetch: &str| {
        repo.walship(&[
            "fetch",
            "--prefetch",
            prefetch,
            name,
            recoveryxlog.to_str().unwrap(),
        ])
    };
    let out = fetch(&segments[1], "4");
    assert!(out.status.success(), "{}", describe(&out));
    let spool = pg_wal.join("walship/fetch");
    wait_until(
        Duration::from_secs(30),
        "the prefetch worker to spool the sound segments around the bad ones",
        || {
            [&segments[2], &segments[5]]
                .iter()
                .all(|n| spool.join(format!("{n}.ok")).exists())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut files: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".lock") && n != ".origin" && n != ".position")
        .collect();
    files.sort();
    let expected = [&segments[2], &segments[5]]
        .iter()
        .flat_map(|n| [n.to_string(), format!("{n}.ok")])
        .collect::<Vec<_>>();
    assert_eq!(files, expected, "only the sound segments are in the spool");

    std::fs::remove_file(&recoveryxlog).unwrap();
    // The flipped byte is reported as what it broke first (an lz4 block or the crc32c):
    // "corrupt" either way.
    for (bad, says) in [(&segments[3], "page address"), (&segments[4], "is corrupt")] {
        let out = fetch(bad, "0");
        assert_eq!(
            out.status.code(),
            Some(RECOVERY_MUST_STOP),
            "{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(bad.as_str()), "{bad}: {stderr}");
        assert!(stderr.contains(says), "{bad} should name {says}: {stderr}");
        assert!(!recoveryxlog.exists(), "nothing is delivered for {bad}");
    }
    let left: Vec<String> = std::fs::read_dir(&pg_wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["walship"], "no temporary file is left in pg_wal");
}
