//! `bench verify`: `walship verify` (full: every object read, decoded and checked) of a
//! repository holding one full backup of the `bench backup` database ([`BenchDb`]: pgbench,
//! scale 200, about 3 GiB, by default) and the WAL of `--segments` more segments (64 by
//! default), beside `pgbackrest verify` of pgBackRest's repositories holding its own full
//! backup of the same database and the same WAL, in the same run (the lifecycle issue's aim:
//! at most 0.5 times pgBackRest's time): walship's filesystem repository against pgBackRest's
//! posix one, walship's SeaweedFS repository against pgBackRest's on the same server (HTTPS
//! with a private CA for both, since pgBackRest speaks S3 only over TLS).
//!
//! The backups are taken exactly as `bench backup` takes them; pgbench then writes the
//! segments, which the cluster archives into every repository; once all are archived the
//! primary stops, and each verify is one measured child process (wall, CPU, peak RSS). Both
//! read their repository cold: before each verify, the page cache of that repository's files
//! (walship's directory, SeaweedFS's data directory, pgBackRest's repository) is dropped, as
//! for a repository written long ago (walship drops its own objects' pages when it stores
//! them; pgBackRest and SeaweedFS do not, so without this the peers would read from memory
//! and walship's filesystem repository from disk). Both
//! must find their repository sound: walship's `--json` report says `sound` and counts the
//! backup and the segments, pgBackRest exits 0 and calls its backup `valid`; otherwise the bench
//! fails rather than time a verify that stopped early.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::backup_db::{BenchDb, DEFAULT_SCALE, load_range};
use super::pgbackrest::PeerRepo;
use super::walship_bin::{BenchArgs, WalshipRepo, s3_https_unless, tree_bytes};
use super::{BenchTable, Measurement, met, wal_load};
use crate::{S3Server, StopMode};

/// The aim: at most half of pgBackRest's time.
const AIM_PGBACKREST_RATIO: f64 = 0.5;
/// Segments written after the backups when `--segments` is not given.
const DEFAULT_SEGMENTS: usize = 64;

/// Keeps in `best` whichever of it and `run` took less wall time.
fn keep_fastest(best: &mut Option<VerifyRun>, run: VerifyRun) {
    if best.as_ref().is_none_or(|b| run.run.wall < b.run.wall) {
        *best = Some(run);
    }
}

/// One measured verify and what it checked.
#[derive(Debug)]
pub struct VerifyRun {
    /// The child process.
    pub run: Measurement,
    /// Bytes of the repository it verified.
    pub repo_bytes: u64,
    /// What the verify said it checked (walship's summary; pgBackRest's status lines).
    pub checked: String,
    /// CPU time SeaweedFS spent meanwhile, for a verify of a repository on it.
    pub server_cpu: Option<std::time::Duration>,
}

/// What `bench verify` measured.
#[derive(Debug)]
pub struct VerifyBenchReport {
    /// pgbench scale.
    pub scale: usize,
    /// Bytes of the data directory without `pg_wal`.
    pub data_bytes: u64,
    /// Segments written after the backups.
    pub segments: usize,
    /// `walship verify` of the filesystem repository.
    pub walship_file: VerifyRun,
    /// `walship verify` of the SeaweedFS repository; None with `--no-s3`.
    pub walship_s3: Option<VerifyRun>,
    /// `pgbackrest verify` of its posix repository.
    pub pgbackrest: VerifyRun,
    /// `pgbackrest verify` of its repository on the same SeaweedFS (HTTPS); None with
    /// `--no-s3`.
    pub pgbackrest_s3: Option<VerifyRun>,
    /// `pgbackrest version`.
    pub pgbackrest_version: String,
    /// 1-minute load averages sampled along the run.
    pub load: Vec<f64>,
}

/// The `verify` bench: `bench verify [--scale N] [--segments N] [--rounds N] [--no-s3]
/// [--walship PATH] [--keep]`. With `--rounds N` every verify runs N times, each cold, and
/// the table shows each tool's fastest round (every round is printed as it ends); `--keep`
/// leaves the repositories in place and prints the commands to repeat a verify by hand.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let s3 = s3_https_unless(args.no_s3)?;
    let report = run_verify(&args, s3.as_ref())?;
    print!("{}", report.render());
    Ok(())
}

/// Builds the database and repositories as `args` say (scale, segments, rounds, walship
/// binary, keep), with walship's and pgBackRest's S3 repositories on `s3` when given (it must
/// serve HTTPS for pgBackRest's: [`S3Server::start_https`]), and verifies each.
pub fn run_verify(args: &BenchArgs, s3: Option<&S3Server>) -> Result<VerifyBenchReport> {
    let scale = args.scale.unwrap_or(DEFAULT_SCALE);
    let segments = args.segments.unwrap_or(DEFAULT_SEGMENTS);
    let mut db = BenchDb::create(scale, s3, args.walship.as_deref(), false)?;
    if db.peer.is_none() {
        bail!("pgbackrest is not installed or not usable: nothing to compare walship verify with");
    }
    db.walship_backup(&db.file_repo, "file")?;
    if let Some(repo) = &db.s3_repo {
        db.walship_backup(repo, "s3")?;
    }
    db.pgbackrest_backup(PeerRepo::Posix)?;
    db.pgbackrest_backup(PeerRepo::S3)?;
    db.sample_load();
    eprintln!("bench: writing {segments} segments");
    wal_load::write_segments(&db.cluster, segments)?;
    db.archive_all()?;
    db.cluster.stop(StopMode::Fast);
    db.sample_load();

    let file_root = db
        .file_repo
        .local_root()
        .context("no filesystem repository")?
        .to_path_buf();
    let peer_repo = db.peer.as_ref().context("pgbackrest is not set up")?.repo();
    let (mut walship_file, mut walship_s3, mut pgbackrest, mut pgbackrest_s3) =
        (None, None, None, None);
    for round in 1..=args.rounds.unwrap_or(1) {
        drop_page_cache(&file_root)?;
        let file = walship_verify(&db, &db.file_repo, "file", segments)?;
        db.sample_load();
        let s3_run = match (&db.s3_repo, s3) {
            (Some(repo), Some(s3)) => {
                drop_page_cache(&s3.data_dir())?;
                Some(with_server_cpu(s3, || {
                    walship_verify(&db, repo, "s3", segments)
                })?)
            }
            _ => None,
        };
        db.sample_load();
        drop_page_cache(&peer_repo)?;
        let peer = pgbackrest_verify(&db, PeerRepo::Posix)?;
        db.sample_load();
        let peer_s3 = match s3 {
            Some(s3) if db.peer.as_ref().is_some_and(|p| p.has_s3()) => {
                drop_page_cache(&s3.data_dir())?;
                Some(with_server_cpu(s3, || {
                    pgbackrest_verify(&db, PeerRepo::S3)
                })?)
            }
            _ => None,
        };
        db.sample_load();
        let secs = |r: &Option<VerifyRun>| {
            r.as_ref().map_or("-".to_string(), |r| {
                format!("{:.2} s", r.run.wall.as_secs_f64())
            })
        };
        eprintln!(
            "bench: round {round}: walship file {:.2} s, S3 {}; pgbackrest file {:.2} s, S3 {}",
            file.run.wall.as_secs_f64(),
            secs(&s3_run),
            peer.run.wall.as_secs_f64(),
            secs(&peer_s3),
        );
        keep_fastest(&mut walship_file, file);
        if let Some(run) = s3_run {
            keep_fastest(&mut walship_s3, run);
        }
        keep_fastest(&mut pgbackrest, peer);
        if let Some(run) = peer_s3 {
            keep_fastest(&mut pgbackrest_s3, run);
        }
    }
    let walship_file = walship_file.context("no round ran")?;
    let pgbackrest = pgbackrest.context("no round ran")?;
    if args.keep {
        db.keep_work();
        eprintln!(
            "bench verify: kept {} (walship: {}; pgbackrest: {:?})",
            db.work().display(),
            db.file_repo.shell_command(&db.walship, "verify --json"),
            db.peer.as_ref().map(|p| p.verify(PeerRepo::Posix))
        );
    }
    let report = VerifyBenchReport {
        scale,
        data_bytes: db.data_bytes,
        segments,
        walship_file,
        walship_s3,
        pgbackrest,
        pgbackrest_s3,
        pgbackrest_version: db.peer_version.clone().unwrap_or_default(),
        load: db.load.clone(),
    };
    Ok(report)
}

/// Runs `verify` and records the CPU time `server` spent meanwhile.
fn with_server_cpu(
    server: &S3Server,
    verify: impl FnOnce() -> Result<VerifyRun>,
) -> Result<VerifyRun> {
    let before = server.cpu_time();
    let mut run = verify()?;
    run.server_cpu = server
        .cpu_time()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(run)
}

/// Writes back and drops from the page cache every file under `dir`, so that the next read of
/// it comes from disk (`posix_fadvise(DONTNEED)` per file: nothing outside `dir` is touched).
fn drop_page_cache(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            drop_page_cache(&path)?;
        } else if kind.is_file() {
            let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            file.sync_all()?;
            nix::fcntl::posix_fadvise(
                file.as_raw_fd(),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )
            .with_context(|| format!("drop the cached pages of {}", path.display()))?;
        }
    }
    Ok(())
}

/// `walship verify --json` of `repo`, measured; it must call the repository sound and have
/// checked one backup and at least `segments` segments.
fn walship_verify(
    db: &BenchDb,
    repo: &WalshipRepo,
    what: &str,
    segments: usize,
) -> Result<VerifyRun> {
    eprintln!("bench: walship verify of {}", repo.url);
    let mut cmd = repo.command(&db.walship, &["verify", "--json"]);
    let (run, stdout) = db.measured(&mut cmd, &format!("walship-verify-{what}"))?;
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("walship verify --json printed {stdout:?}"))?;
    let checked = &report["checked"];
    let wal: u64 = checked["wal_segments"].as_object().map_or(0, |per_tli| {
        per_tli.values().filter_map(Value::as_u64).sum()
    });
    if report["sound"] != Value::Bool(true)
        || checked["backups"].as_u64() != Some(1)
        || wal < segments as u64
    {
        bail!(
            "walship verify of {} did not check a sound repository with one backup and {segments} segments: {report}",
            repo.url
        );
    }
    let repo_bytes = match repo.local_root() {
        Some(root) => tree_bytes(root)?,
        None => checked["bytes"].as_u64().unwrap_or(0),
    };
    Ok(VerifyRun {
        run,
        repo_bytes,
        checked: format!(
            "{} objects, {} bytes, 1 backup, {wal} WAL segments",
            checked["objects"], checked["bytes"]
        ),
        server_cpu: None,
    })
}

/// `pgbackrest verify` of `repo`, measured; it must exit 0 and call its one backup valid.
/// The repository size is the posix repository's (the S3 one holds the same files).
fn pgbackrest_verify(db: &BenchDb, repo: PeerRepo) -> Result<VerifyRun> {
    let peer = db.peer.as_ref().context("pgbackrest is not set up")?;
    eprintln!("bench: pgbackrest verify ({repo:?} repository)");
    let name = format!("pgbackrest-verify-{repo:?}").to_lowercase();
    let (run, stdout) = db.measured(&mut peer.verify(repo), &name)?;
    // The results come twice: as a log line and as the text output.
    let mut results: Vec<&str> = Vec::new();
    for line in stdout.lines().map(str::trim) {
        let result = line.starts_with("archiveId:") || line.starts_with("backup:");
        if result && !results.contains(&line) {
            results.push(line);
        }
    }
    if !results.iter().any(|l| l.contains("status: valid")) {
        bail!("pgbackrest verify did not call a backup valid:\n{stdout}");
    }
    let checked = results.join("; ");
    Ok(VerifyRun {
        run,
        repo_bytes: tree_bytes(&peer.repo())?,
        checked,
        server_cpu: None,
    })
}

impl VerifyBenchReport {
    /// The table (walship against pgBackRest), what each checked, and the verdict, as text.
    pub fn render(&self) -> String {
        let gib = self.data_bytes as f64 / (1u64 << 30) as f64;
        let mut table = BenchTable::new(
            &format!(
                "verify of a full backup of a pgbench database, scale {} ({gib:.2} GiB), and {} \
                 more segments: walship vs {}",
                self.scale, self.segments, self.pgbackrest_version
            ),
            &self.pgbackrest_version,
        );
        for (case, run, peer) in self.cases() {
            let figures = |r: &VerifyRun| {
                [
                    r.run.wall.as_secs_f64(),
                    (r.run.user + r.run.system).as_secs_f64(),
                    r.run.peak_rss_mib(),
                    r.repo_bytes as f64 / (1u64 << 20) as f64,
                ]
            };
            let (ours, theirs) = (figures(run), figures(peer));
            for (i, metric) in ["wall s", "CPU s", "peak RSS MiB", "repository MiB"]
                .into_iter()
                .enumerate()
            {
                table.row(case, metric, ours[i], Some(theirs[i]));
            }
            if let Some(server) = run.server_cpu {
                let theirs = peer.server_cpu.map(|c| c.as_secs_f64());
                table.row(case, "SeaweedFS CPU s", server.as_secs_f64(), theirs);
            }
        }
        let mut out = table.render();
        out.push_str(&format!(
            "walship (filesystem) checked {}\n",
            self.walship_file.checked
        ));
        if let Some(s3) = &self.walship_s3 {
            out.push_str(&format!("walship (S3) checked {}\n", s3.checked));
        }
        out.push_str(&format!("pgbackrest: {}\n", self.pgbackrest.checked));
        if let Some(s3) = &self.pgbackrest_s3 {
            out.push_str(&format!("pgbackrest (S3): {}\n", s3.checked));
        }
        for (who, run) in [
            ("walship", self.walship_s3.as_ref()),
            ("pgbackrest", self.pgbackrest_s3.as_ref()),
        ] {
            let Some((run, server)) = run.and_then(|r| Some((r, r.server_cpu?))) else {
                continue;
            };
            let cpu = (run.run.user + run.run.system + server).as_secs_f64();
            let wall = run.run.wall.as_secs_f64();
            out.push_str(&format!(
                "{who} verify from SeaweedFS: client + server CPU {cpu:.2} s in {wall:.2} s of wall \
                 time ({:.2} of the machine's {} cores busy)\n",
                cpu / wall,
                std::thread::available_parallelism().map_or(2, |n| n.get())
            ));
        }
        out.push_str(&format!(
            "1-minute load average during the run: {}\n\naims:\n",
            load_range(&self.load)
        ));
        for (case, run, peer) in self.cases() {
            let ratio = run.run.wall.as_secs_f64() / peer.run.wall.as_secs_f64();
            out.push_str(&format!(
                "  walship verify ({case}) time <= {AIM_PGBACKREST_RATIO}x pgbackrest verify (same storage): {ratio:.2}x -> {}\n",
                met(ratio <= AIM_PGBACKREST_RATIO)
            ));
        }
        out
    }

    /// Each storage walship verified, with its run and pgBackRest's on the same storage
    /// (its posix repository when it has none on SeaweedFS).
    fn cases(&self) -> Vec<(&'static str, &VerifyRun, &VerifyRun)> {
        let mut cases = vec![("filesystem", &self.walship_file, &self.pgbackrest)];
        if let Some(s3) = &self.walship_s3 {
            let peer = self.pgbackrest_s3.as_ref().unwrap_or(&self.pgbackrest);
            cases.push(("SeaweedFS S3", s3, peer));
        }
        cases
    }
}
