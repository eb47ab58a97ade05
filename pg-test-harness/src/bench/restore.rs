//! `bench restore`: building the data directory of a full backup of the `bench backup`
//! database ([`BenchDb`]: pgbench, scale 200, about 3 GiB by default), with `walship restore
//! --target immediate` from a filesystem repository and from SeaweedFS, beside `pgbackrest
//! restore --type=immediate` of its own full backup of the same database, in the same run.
//!
//! The backups are taken first, exactly as `bench backup` takes them (and its report is
//! printed too), the primary is stopped once every repository has its WAL, and each restore is one measured child process
//! (wall, CPU, peak RSS with `wait4`). Each restored directory is then checked by Postgres
//! itself: it starts, recovers to consistency with WAL from its own repository (walship fetch
//! or pgbackrest archive-get), promotes, and holds the primary's pgbench rows and balances.
//! Then it is removed (disk space). MB/s is the data directory (without `pg_wal`) in 10^6
//! bytes per second of wall time. `walship restore --dry-run` (the plan alone) is timed too.
//!
//! Every restore runs `--rounds` times (default 2), the tools taking turns, and the fastest
//! round of each is reported: on a VM, the first few GiB written after boot land on guest
//! memory the host has not backed yet, which made whichever tool ran first up to 4 times
//! slower (measured: 4.1 s, then 1.0 s, for the same restore).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::backup::{BackupReport, add_rows, back_up_with_every_tool, encrypted_verdict};
use super::backup_db::{AIM_RSS_MIB, BenchDb, DEFAULT_SCALE, Run, recoveries_and_load};
use super::fetch::recover;
use super::pgbackrest::PeerRepo;
use super::walship_bin::{BenchArgs, WalshipRepo, s3_unless, tree_bytes};
use super::{BenchTable, met};
use crate::{S3Server, StopMode};

/// The aim: at most 0.8 times pgBackRest's time.
const AIM_PGBACKREST_RATIO: f64 = 0.8;
/// Rounds when `--rounds` is not given.
const DEFAULT_ROUNDS: usize = 2;

/// What `bench restore` measured.
#[derive(Debug)]
pub struct RestoreReport {
    /// The backups restored here, as `bench backup` measures them.
    pub backups: BackupReport,
    /// pgbench scale.
    pub scale: usize,
    /// Bytes of the data directory without `pg_wal`.
    pub data_bytes: u64,
    /// `walship restore` from a filesystem repository (stored = restored directory's size).
    pub walship_file: Run,
    /// `walship restore` from SeaweedFS; None with `--no-s3`.
    pub walship_s3: Option<Run>,
    /// With `--encrypt`: `walship restore` from the encrypted filesystem repository.
    pub walship_file_encrypted: Option<Run>,
    /// `pgbackrest restore`; None when pgBackRest is not usable.
    pub pgbackrest: Option<Run>,
    /// `pgbackrest version`, when used.
    pub pgbackrest_version: Option<String>,
    /// Wall time of `walship restore --dry-run` on the filesystem repository.
    pub plan: Duration,
    /// Wall time of Postgres's recovery of each restored directory (walship file, walship
    /// S3, pgbackrest), start to promotion.
    pub recoveries: Vec<(String, Duration)>,
    /// Rounds each restore ran (the fastest is reported).
    pub rounds: usize,
    /// 1-minute load averages sampled along the run.
    pub load: Vec<f64>,
}

/// The `restore` bench: `bench restore [--scale N] [--rounds N] [--no-s3] [--walship PATH]
/// [--encrypt]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let s3 = s3_unless(args.no_s3)?;
    let report = run_restore(
        args.scale.unwrap_or(DEFAULT_SCALE),
        args.rounds.unwrap_or(DEFAULT_ROUNDS),
        s3.as_ref(),
        args.walship.as_deref(),
        args.encrypt,
    )?;
    print!("{}", report.render());
    Ok(())
}

/// Builds the database at `scale`, backs it up with walship (filesystem, and `s3` when given)
/// and pgBackRest (when installed), then restores and checks each, `rounds` times.
pub fn run_restore(
    scale: usize,
    rounds: usize,
    s3: Option<&S3Server>,
    walship: Option<&Path>,
    encrypt: bool,
) -> Result<RestoreReport> {
    let mut db = BenchDb::create(scale, s3, walship, encrypt)?;
    let backups = back_up_with_every_tool(&mut db)?;
    db.archive_all()?;
    db.cluster.stop(StopMode::Fast);
    db.sample_load();

    let mut recoveries = Vec::new();
    let plan = walship_plan(&db)?;
    let (mut walship_file, mut walship_s3, mut pgbackrest) = (None, None, None);
    let mut walship_file_encrypted = None;
    for round in 1..=rounds.max(1) {
        eprintln!("bench: restore round {round} of {rounds}");
        let run = walship_restore(&db, &db.file_repo, "file", &mut recoveries)?;
        keep_fastest(&mut walship_file, run);
        db.sample_load();
        if let Some(repo) = &db.encrypted_repo {
            let run = walship_restore(&db, repo, "file-encrypted", &mut recoveries)?;
            keep_fastest(&mut walship_file_encrypted, run);
        }
        if let Some(repo) = &db.s3_repo {
            let run = walship_restore(&db, repo, "s3", &mut recoveries)?;
            keep_fastest(&mut walship_s3, run);
        }
        db.sample_load();
        if backups.pgbackrest.is_some() {
            keep_fastest(&mut pgbackrest, pgbackrest_restore(&db, &mut recoveries)?);
        }
        db.sample_load();
    }
    let walship_file = walship_file.context("no walship restore ran")?;
    Ok(RestoreReport {
        backups,
        scale,
        data_bytes: db.data_bytes,
        walship_file,
        walship_s3,
        walship_file_encrypted,
        pgbackrest,
        pgbackrest_version: db.peer_version.clone(),
        plan,
        recoveries,
        rounds: rounds.max(1),
        load: db.load.clone(),
    })
}

/// Keeps the faster of `best` and `run` (by wall time).
pub(super) fn keep_fastest(best: &mut Option<Run>, run: Run) {
    if best.as_ref().is_none_or(|b| run.run.wall < b.run.wall) {
        *best = Some(run);
    }
}

/// Times `walship restore --dry-run --target immediate` on the filesystem repository.
fn walship_plan(db: &BenchDb) -> Result<Duration> {
    let to = db.work().join("plan-only");
    let to = to.to_string_lossy();
    let args = ["restore", "--dry-run", "--target", "immediate", "--to", &to];
    let mut cmd = db.file_repo.command(&db.walship, &args);
    let (run, _) = db.measured(&mut cmd, "walship-restore-plan")?;
    Ok(run.wall)
}

/// `walship restore --target immediate` from `repo` into a fresh directory, measured, then
/// started and checked by Postgres.
fn walship_restore(
    db: &BenchDb,
    repo: &WalshipRepo,
    what: &str,
    recoveries: &mut Vec<(String, Duration)>,
) -> Result<Run> {
    walship_restore_with(db, repo, what, &[], recoveries)
}

/// [`walship_restore`] with `extra` arguments (e.g. `--backup ID`).
pub(super) fn walship_restore_with(
    db: &BenchDb,
    repo: &WalshipRepo,
    what: &str,
    extra: &[&str],
    recoveries: &mut Vec<(String, Duration)>,
) -> Result<Run> {
    eprintln!("bench: walship restore {extra:?} from {}", repo.url);
    let to = db.work().join(format!("restored-{what}"));
    let wrapper = repo.wrapper_script(&db.walship, &db.work().join(format!("walship-{what}")))?;
    let (to_arg, wrapper_arg) = (to.to_string_lossy(), wrapper.to_string_lossy());
    let mut args = vec![
        "restore",
        "--target",
        "immediate",
        "--to",
        &to_arg,
        "--walship-path",
        &wrapper_arg,
    ];
    args.extend_from_slice(extra);
    let mut cmd = repo.command(&db.walship, &args);
    let (run, _) = db.measured(&mut cmd, &format!("walship-restore-{what}"))?;
    let stored_bytes = tree_bytes(&to)?;
    check_restored(db, &to, &format!("walship {what}"), recoveries)?;
    Ok(Run { run, stored_bytes })
}

/// `pgbackrest restore --type=immediate` of its latest backup into a fresh directory,
/// measured, then started and checked by Postgres.
fn pgbackrest_restore(db: &BenchDb, recoveries: &mut Vec<(String, Duration)>) -> Result<Run> {
    let peer = db.peer.as_ref().context("pgbackrest is not set up")?;
    eprintln!("bench: pgbackrest restore");
    let to = db.work().join("restored-pgbackrest");
    std::fs::create_dir(&to).with_context(|| format!("create {}", to.display()))?;
    crate::chown_to_owner_recursive(&to)?;
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
    std::fs::set_permissions(&to, mode)?;
    let (run, _) = db.measured(
        &mut peer.restore(PeerRepo::Posix, &to),
        "pgbackrest-restore",
    )?;
    let stored_bytes = tree_bytes(&to)?;
    check_restored(db, &to, "pgbackrest", recoveries)?;
    Ok(Run { run, stored_bytes })
}

/// Starts Postgres on the restored `dir`, waits for promotion, checks the pgbench rows
/// against the primary's, records the recovery time, and removes `dir`.
fn check_restored(
    db: &BenchDb,
    dir: &Path,
    what: &str,
    recoveries: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let recovery = recover(&db.install, dir, &[], &db.expected)
        .with_context(|| format!("the {what} restore did not recover to the primary's rows"))?;
    eprintln!(
        "bench: {what}: Postgres recovered the restored directory in {:.1} s, rows match ({})",
        recovery.wall.as_secs_f64(),
        db.expected
    );
    recoveries.push((what.to_owned(), recovery.wall));
    Ok(())
}

impl RestoreReport {
    /// The backup report, then the restore table (walship against pgBackRest) and the
    /// verdict on each aim, as text.
    pub fn render(&self) -> String {
        let mut out = self.backups.render();
        out.push('\n');
        out.push_str(&self.render_restore());
        out
    }

    fn render_restore(&self) -> String {
        let gib = self.data_bytes as f64 / (1u64 << 30) as f64;
        let peer = self.pgbackrest_version.as_deref().unwrap_or("pgbackrest");
        let mut table = BenchTable::new(
            &format!(
                "restore of a pgbench database, scale {} ({gib:.2} GiB): walship vs {peer}",
                self.scale
            ),
            peer,
        );
        let pgbackrest = self.pgbackrest.as_ref();
        add_rows(
            &mut table,
            "filesystem",
            &self.walship_file,
            pgbackrest,
            self.data_bytes,
        );
        if let Some(s3) = &self.walship_s3 {
            add_rows(&mut table, "SeaweedFS S3", s3, pgbackrest, self.data_bytes);
        }
        let mut out = table.render().replace("stored MiB", "restored MiB");
        if let Some(encrypted) = &self.walship_file_encrypted {
            let mut table = BenchTable::new(
                &format!(
                    "restore, encrypted, scale {} ({gib:.2} GiB): walship encrypted vs unencrypted",
                    self.scale
                ),
                "walship plain",
            );
            add_rows(
                &mut table,
                "filesystem",
                encrypted,
                Some(&self.walship_file),
                self.data_bytes,
            );
            out.push('\n');
            out.push_str(&table.render().replace("stored MiB", "restored MiB"));
        }
        out.push_str(&format!(
            "walship restore --dry-run (plan only, filesystem): {:.2} s\n",
            self.plan.as_secs_f64()
        ));
        out.push_str(&format!(
            "fastest of {} rounds for each tool (tools taking turns)\n",
            self.rounds
        ));
        out.push_str(&recoveries_and_load(&self.recoveries, &self.load));
        out.push_str(&self.verdicts());
        out
    }

    fn verdicts(&self) -> String {
        let wall = |r: &Run| r.run.wall.as_secs_f64();
        let mut out = String::from("aims:\n");
        for (repo, run) in [
            ("filesystem", Some(&self.walship_file)),
            ("S3", self.walship_s3.as_ref()),
        ] {
            let Some(run) = run else { continue };
            match &self.pgbackrest {
                Some(peer) => {
                    let ratio = wall(run) / wall(peer);
                    out.push_str(&format!(
                        "  walship restore ({repo}) time <= {AIM_PGBACKREST_RATIO}x pgbackrest: {ratio:.2}x -> {}\n",
                        met(ratio <= AIM_PGBACKREST_RATIO)
                    ));
                }
                None => out.push_str("  walship restore time vs pgbackrest: pgbackrest not run\n"),
            }
        }
        if let Some(encrypted) = &self.walship_file_encrypted {
            out.push_str(&encrypted_verdict("restore", encrypted, &self.walship_file));
        }
        let rss = [Some(&self.walship_file), self.walship_s3.as_ref()]
            .into_iter()
            .flatten()
            .map(|r| r.run.peak_rss_mib())
            .fold(0.0, f64::max);
        out.push_str(&format!(
            "  peak RSS of walship restore <= {AIM_RSS_MIB} MiB: {rss:.1} MiB -> {}\n",
            met(rss <= AIM_RSS_MIB)
        ));
        out
    }
}
