//! `walship archive` refuses every unsafe input, and a crash (kill -9) at any moment of an
//! `--async` push never leaves a file reported archived that the repository does not hold.
//! Segments come from a real Postgres cluster; walship runs as the test's own user.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use pg_test_harness::{Cluster, PgInstall, StopMode};
use support::{TestRepo, describe};

/// Exit code of a safety refusal (see walship/src/exit.rs).
const REFUSED: i32 = 4;
/// Exit code that makes Postgres stop recovery.
const RECOVERY_MUST_STOP: i32 = 200;

/// Copies `count` real, complete segments (1 MiB) of a fresh cluster into `<dir>/pg_wal`,
/// each with an `archive_status/<name>.ready`, as Postgres leaves them for its archiver.
/// Returns the names, oldest first.
fn real_segments(install: &PgInstall, dir: &Path, count: usize) -> Vec<String> {
    let mut cluster = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("wal_keep_size", "'1GB'")
        .start();
    cluster.execute("create table t as select generate_series(1, 1000) i");
    let mut names = Vec::new();
    for i in 0..count {
        cluster.execute(&format!(
            "insert into t select generate_series(1, 200) + {i}"
        ));
        names.push(support::switch_wal(&cluster));
    }
    cluster.execute("checkpoint");
    cluster.stop(StopMode::Fast);
    let pg_wal = dir.join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    for name in &names {
        std::fs::copy(
            cluster.data_dir().join("pg_wal").join(name),
            pg_wal.join(name),
        )
        .unwrap();
        std::fs::write(
            pg_wal.join("archive_status").join(format!("{name}.ready")),
            b"",
        )
        .unwrap();
    }
    names
}

fn any_install() -> PgInstall {
    let installs = pg_test_harness::installs_under_test();
    installs
        .iter()
        .find(|i| i.major == 15)
        .cloned()
        .unwrap_or_else(|| installs[0].clone())
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Fetches `name` and asserts it equals `original`.
fn assert_stored(repo: &TestRepo, name: &str, original: &Path) {
    let dest = repo.dir.path().join(format!("check-{name}"));
    let out = repo.walship(&["fetch", name, path_str(&dest)]);
    assert!(
        out.status.success(),
        "{name} must be in the repository: {}",
        describe(&out)
    );
    assert!(
        std::fs::read(&dest).unwrap() == std::fs::read(original).unwrap(),
        "{name} differs"
    );
    std::fs::remove_file(dest).unwrap();
}

#[test]
fn refuses_conflicts_other_clusters_truncation_and_corruption() {
    let install = any_install();
    let work = tempfile::tempdir().unwrap();
    let names = real_segments(&install, work.path(), 3);
    let pg_wal = work.path().join("pg_wal");
    let repo = TestRepo::local();
    let first = pg_wal.join(&names[0]);

    // Archiving the same file twice succeeds both times (Postgres may call again after a crash).
    for _ in 0..2 {
        let out = repo.walship(&["archive", path_str(&first)]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_stored(&repo, &names[0], &first);

    // Different content under an archived name: refused, named, nothing overwritten.
    let other = work.path().join("conflict");
    std::fs::create_dir(&other).unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(other.join(&names[0]), &bytes).unwrap();
    let out = repo.walship(&["archive", path_str(&other.join(&names[0]))]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&names[0]) && err.contains("different content"),
        "{err}"
    );
    assert_stored(&repo, &names[0], &first);

    // A truncated segment is refused before upload, naming sizes.
    std::fs::write(
        other.join(&names[1]),
        &std::fs::read(pg_wal.join(&names[1])).unwrap()[..500_000],
    )
    .unwrap();
    let out = repo.walship(&["archive", path_str(&other.join(&names[1]))]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&names[1]) && err.contains("500000"), "{err}");
    let dest = work.path().join("absent");
    let out = repo.walship(&["fetch", &names[1], path_str(&dest)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused file must not be stored: {}",
        describe(&out)
    );

    // A segment under a name that does not match its page address is refused.
    std::fs::copy(pg_wal.join(&names[2]), other.join(&names[1])).unwrap();
    let out = repo.walship(&["archive", path_str(&other.join(&names[1]))]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("address"),
        "{}",
        describe(&out)
    );

    // A segment of another cluster: refused, naming both system identifiers.
    let stranger = tempfile::tempdir().unwrap();
    let stranger_names = real_segments(&install, stranger.path(), 1);
    let out = repo.walship(&[
        "archive",
        path_str(&stranger.path().join("pg_wal").join(&stranger_names[0])),
    ]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", describe(&out));
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.local_root().join("walship.json")).unwrap())
            .unwrap();
    let sysid = identity["system_identifier"].as_str().unwrap().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&sysid) && err.contains("system identifier"),
        "{err}"
    );

    // History files are never overwritten.
    std::fs::write(
        other.join("00000002.history"),
        "1\t0/3000000\tno recovery target specified\n",
    )
    .unwrap();
    assert!(
        repo.walship(&["archive", path_str(&other.join("00000002.history"))])
            .status
            .success()
    );
    std::fs::write(
        other.join("00000002.history"),
        "1\t0/4000000\tno recovery target specified\n",
    )
    .unwrap();
    let out = repo.walship(&["archive", path_str(&other.join("00000002.history"))]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", describe(&out));

    // Malformed names are refused with the name in the message.
    std::fs::write(other.join("00000001000000000000000g"), b"x").unwrap();
    let out = repo.walship(&["archive", path_str(&other.join("00000001000000000000000g"))]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("00000001000000000000000g"),
        "{}",
        describe(&out)
    );

    // A corrupted object is never delivered: fetch exits above 125, naming the object.
    let object = repo
        .local_root()
        .join("wal")
        .join(&names[0][..16])
        .join(&names[0]);
    let mut stored = std::fs::read(&object).unwrap();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    std::fs::write(&object, stored).unwrap();
    let dest = work.path().join("RECOVERYXLOG");
    let out = repo.walship(&["fetch", &names[0], path_str(&dest)]);
    assert_eq!(
        out.status.code(),
        Some(RECOVERY_MUST_STOP),
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&names[0]),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists(), "a corrupt object must not be delivered");
}

/// A small deterministic generator for kill timings: seeded from [`SEED_ENV`] when set, else
/// from the clock, and printed, so that a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % max
    }
}

/// Replays the kill timings of an earlier run: `ARCHIVE_SAFETY_SEED=<seed printed>`.
const SEED_ENV: &str = "ARCHIVE_SAFETY_SEED";

/// Kills that must land while an upload is in flight (begun, not ended), so that the test
/// cannot pass having killed only idle or finished processes.
const MIN_KILLS_MID_UPLOAD: usize = 6;

/// The segments whose upload `walship archive` logged as begun and not ended, from its
/// debug log (`common/src/archive/mod.rs`, `upload`).
fn uploads_in_flight(log: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some((_, name)) = line.split_once("uploading ") {
            open.push(name.trim().to_string());
        } else if let Some((_, rest)) = line.split_once("upload of ") {
            let name = rest.trim_end().trim_end_matches(" ended");
            open.retain(|n| n != name);
        }
    }
    open
}

/// Kills `walship archive --async` with SIGKILL over and over, at random moments: one kill
/// in four at a random time after the start, the others 0-3 ms after the log first showed an
/// upload in flight (a small segment's upload to a local server takes a few milliseconds). After each, every file Postgres was told is archived, and every file
/// with a receipt, must be stored intact; at least [`MIN_KILLS_MID_UPLOAD`] kills must have
/// landed with an upload in flight (read from the process's debug log).
#[test]
fn kill_9_of_async_archive_never_reports_an_unstored_file() {
    let install = any_install();
    let work = tempfile::tempdir().unwrap();
    let names = real_segments(&install, work.path(), 80);
    let pg_wal = work.path().join("pg_wal");
    let Some(repo) = TestRepo::s3() else { return };
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill timing seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = Lcg(seed);
    let (mut kills, mut mid_upload) = (0, 0);
    let mut acknowledged: Vec<String> = Vec::new();
    let mut verified: Vec<String> = Vec::new();
    let log_path = work.path().join("archive.log");
    while mid_upload < MIN_KILLS_MID_UPLOAD && kills < 80 {
        let Some(next) = names.iter().find(|n| !acknowledged.contains(n)) else {
            break;
        };
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(support::walship_bin())
            .arg("--config")
            .arg(&repo.config)
            .args(["archive", "--async", "--parallel", "4", "--read-ahead", "8"])
            .arg(pg_wal.join(next))
            .envs(repo.env())
            .env("RUST_LOG", "walship_common::archive=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let after_upload_began = kills % 4 != 0;
        let delay = Duration::from_millis(if after_upload_began {
            rng.next_ms(4)
        } else {
            rng.next_ms(400)
        });
        let mut upload_seen: Option<std::time::Instant> = None;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            let due = if after_upload_began {
                if upload_seen.is_none()
                    && !uploads_in_flight(&std::fs::read_to_string(&log_path).unwrap_or_default())
                        .is_empty()
                {
                    upload_seen = Some(std::time::Instant::now());
                }
                upload_seen.is_some_and(|t| t.elapsed() >= delay)
                    || started.elapsed() > Duration::from_secs(10)
            } else {
                started.elapsed() >= delay
            };
            if due {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let status = match status {
            Some(status) => status,
            None => {
                child.kill().unwrap(); // SIGKILL
                let status = child.wait().unwrap();
                kills += 1;
                let in_flight = uploads_in_flight(&std::fs::read_to_string(&log_path).unwrap());
                if !in_flight.is_empty() {
                    mid_upload += 1;
                    eprintln!("kill {kills} landed with uploads in flight: {in_flight:?}");
                }
                status
            }
        };
        if status.success() {
            // What Postgres would do: mark it done.
            std::fs::rename(
                pg_wal.join("archive_status").join(format!("{next}.ready")),
                pg_wal.join("archive_status").join(format!("{next}.done")),
            )
            .unwrap();
            acknowledged.push(next.clone());
        }
        // Every acknowledged file, and every file with a receipt, is stored intact (checked
        // once: nothing deletes an object).
        for name in receipts(&pg_wal).iter().chain(&acknowledged) {
            if !verified.contains(name) {
                assert_stored(&repo, name, &pg_wal.join(name));
                verified.push(name.clone());
            }
        }
    }
    assert!(
        mid_upload >= MIN_KILLS_MID_UPLOAD,
        "only {mid_upload} of {kills} kills landed with an upload in flight (seed {seed})"
    );
    // Finish the queue without interruptions; everything ends up stored.
    for name in names.iter().filter(|n| !acknowledged.contains(n)) {
        let out = repo.walship(&["archive", "--async", &pg_wal.join(name).to_string_lossy()]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    for name in &names {
        assert_stored(&repo, name, &pg_wal.join(name));
    }
}

#[test]
fn uploads_in_flight_reads_the_debug_log() {
    let log = "DEBUG uploading 000000010000000000000002\n\
               DEBUG uploading 000000010000000000000003\n\
               DEBUG upload of 000000010000000000000002 ended\n";
    assert_eq!(uploads_in_flight(log), ["000000010000000000000003"]);
    assert!(uploads_in_flight("DEBUG uploading 0000000100000000000000AA\nDEBUG upload of 0000000100000000000000AA ended\n").is_empty());
}

/// The names with a receipt, in every repository's receipts directory.
fn receipts(pg_wal: &Path) -> Vec<String> {
    let names = |dir: PathBuf| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let e = e.ok()?;
                        Some((e.file_name().into_string().ok()?, e.path()))
                    })
                    .filter(|(n, _)| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    names(pg_wal.join("walship/archived"))
        .into_iter()
        .flat_map(|(_, repository)| names(repository))
        .map(|(name, _)| name)
        .collect()
}
