//! `bench fetch`: how long Postgres takes to replay N segments when `restore_command =
//! 'walship fetch %f %p'` delivers them from a filesystem repository, against the same
//! recovery with the segments already in `pg_wal` (crash recovery from the same base copy,
//! no restore_command).
//!
//! A primary archives through `walship archive --async`; a base copy is taken with the
//! low-level backup API; then pgbench writes N segments and the primary stops. Each round
//! copies the base twice and recovers it both ways; each recovery is timed from `pg_ctl
//! start` until `pg_is_in_recovery()` is false, and checked: it holds every pgbench
//! transaction of the primary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::BenchTable;
use super::wal_load::{self, SEGMENT_BYTES};
use super::walship_bin::{BenchArgs, WalshipRepo, walship_binary};
use crate::{Cluster, PgInstall, StopMode};

/// Segments replayed when `--segments` is not given.
pub const DEFAULT_SEGMENTS: usize = 64;
/// Rounds (each recovering both ways) when `--rounds` is not given.
pub const DEFAULT_ROUNDS: usize = 2;
/// The aim: fetch replay at most this many times the local replay.
const AIM_RATIO: f64 = 1.3;
/// How long one recovery may take.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(900);

/// What one recovery cost.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// From `pg_ctl start` to the end of recovery.
    pub wall: Duration,
    /// Postgres's own "redo done ... elapsed" figure, when its log has one (PG15+).
    pub redo: Option<Duration>,
}

/// What `bench fetch` measured.
#[derive(Debug)]
pub struct FetchReport {
    /// Segments written after the base copy (all replayed).
    pub segments: usize,
    /// Segments the local recovery found in `pg_wal` (from the backup's start).
    pub local_segments: usize,
    /// Recoveries through `walship fetch`, one per round.
    pub fetch: Vec<Recovery>,
    /// Recoveries with the segments in `pg_wal`, one per round.
    pub local: Vec<Recovery>,
}

/// The `fetch` bench: `bench fetch [--segments N] [--rounds N] [--walship PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let report = run_fetch(
        args.segments.unwrap_or(DEFAULT_SEGMENTS),
        args.rounds.unwrap_or(DEFAULT_ROUNDS),
        args.walship.as_deref(),
    )?;
    print!("{}", report.render());
    Ok(())
}

/// Writes `segments` segments after a base copy and recovers it `rounds` times each way.
pub fn run_fetch(segments: usize, rounds: usize, walship: Option<&Path>) -> Result<FetchReport> {
    let walship = walship_binary(walship)?;
    let install = wal_load::bench_install()?;
    let work = crate::test_dir("bench-fetch");
    let repo = WalshipRepo::local(work.path(), "repo")?;
    let archive_command = repo.shell_command(&walship, "archive --async %p");
    eprintln!(
        "bench fetch: PG{}, archive_command = '{archive_command}'",
        install.major
    );

    let mut primary = wal_load::load_cluster(
        &install,
        &[
            ("archive_mode", "on".to_owned()),
            ("archive_command", format!("'{archive_command}'")),
        ],
    );
    wal_load::pgbench_init(&primary, segments)?;
    let base = work.path().join("base");
    let start = wal_load::base_copy(&primary, &base)?;
    eprintln!(
        "bench fetch: base copy taken (replay starts in {start}); writing {segments} segments..."
    );
    let names = wal_load::write_segments(&primary, segments)?;
    let last = names.last().context("no segments")?.clone();
    wal_load::wait_archived(&primary, &last, Duration::from_secs(600))?;
    let transactions = primary.query_string(PGBENCH_CHECK);
    primary.stop(StopMode::Fast);
    // Keep only the segments to replay; the rest of the primary goes.
    let wal_dir = work.path().join("wal");
    std::fs::create_dir(&wal_dir)?;
    let mut wal = Vec::new();
    for segment in segments_between(&primary.data_dir().join("pg_wal"), &start, &last)? {
        let kept = wal_dir.join(segment.file_name().context("segment without name")?);
        std::fs::rename(&segment, &kept)?;
        wal.push(kept);
    }
    drop(primary);

    let mut report = FetchReport {
        segments,
        local_segments: wal.len(),
        fetch: Vec::new(),
        local: Vec::new(),
    };
    for round in 1..=rounds {
        let dir = work.path().join(format!("fetch-{round}"));
        wal_load::copy_tree_all(&base, &dir)?;
        std::fs::write(dir.join("recovery.signal"), b"")?;
        let restore = repo.shell_command(&walship, "fetch %f %p");
        let conf = [format!("restore_command = '{restore}'")];
        let r = recover(&install, &dir, &conf, &transactions)?;
        eprintln!(
            "bench fetch: round {round}: through walship fetch {:.2} s",
            r.wall.as_secs_f64()
        );
        report.fetch.push(r);

        let dir = work.path().join(format!("local-{round}"));
        wal_load::copy_tree_all(&base, &dir)?;
        // Hard links, not copies (disk space): crash recovery only reads completed segments,
        // and wal_keep_size (from the copied postgresql.conf) keeps it from recycling them;
        // the row check below would catch a segment changed by an earlier round.
        for segment in &wal {
            let name = segment.file_name().context("segment without name")?;
            std::fs::hard_link(segment, dir.join("pg_wal").join(name))?;
        }
        let r = recover(&install, &dir, &[], &transactions)?;
        eprintln!(
            "bench fetch: round {round}: segments in pg_wal {:.2} s",
            r.wall.as_secs_f64()
        );
        report.local.push(r);
    }
    Ok(report)
}

/// The segment files in `pg_wal` from `first` to `last` (timeline 1, 16 MiB), oldest first.
fn segments_between(pg_wal: &Path, first: &str, last: &str) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(pg_wal)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 24
            && name.bytes().all(|b| b.is_ascii_hexdigit())
            && name.as_str() >= first
            && name.as_str() <= last
        {
            if entry.metadata()?.len() != SEGMENT_BYTES {
                bail!("{} is not a whole segment", entry.path().display());
            }
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The query whose answer proves a recovered pgbench database whole: transactions, accounts,
/// and the sum of the balances.
pub(super) const PGBENCH_CHECK: &str = "select (select count(*) from pgbench_history) || ' transactions, ' \
     || (select count(*) from pgbench_accounts) || ' accounts, balance ' \
     || (select coalesce(sum(abalance), 0) from pgbench_accounts)";

/// Starts the copy in `dir` with the extra settings (archiving off), waits for the end of
/// recovery, checks that [`PGBENCH_CHECK`] answers `expected`, stops it and removes `dir`.
pub(super) fn recover(
    install: &PgInstall,
    dir: &Path,
    conf: &[String],
    expected: &str,
) -> Result<Recovery> {
    let mut cluster = Cluster::from_data_dir(install, dir);
    cluster.append_conf("archive_mode = off");
    for line in conf {
        cluster.append_conf(line);
    }
    let start = Instant::now();
    cluster.start();
    let mut client = cluster.client();
    loop {
        let row = client.query_one("select pg_is_in_recovery()", &[])?;
        if !row.get::<_, bool>(0) {
            break;
        }
        if start.elapsed() > RECOVERY_TIMEOUT {
            bail!(
                "recovery of {} still running after {RECOVERY_TIMEOUT:?}\n{}",
                dir.display(),
                cluster.log_excerpt()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed();
    let found = cluster.query_string(PGBENCH_CHECK);
    if found != expected {
        bail!(
            "recovery of {} holds {found}, the primary had {expected}\n{}",
            dir.display(),
            cluster.log_excerpt()
        );
    }
    let redo = redo_elapsed(&cluster.log());
    drop(client);
    cluster.stop(StopMode::Immediate);
    drop(cluster);
    remove_restored(dir)?;
    Ok(Recovery { wall, redo })
}

/// Removes a recovered directory. `walship fetch`'s prefetch worker outlives the server by
/// up to its idle timeout and may still be writing its spool under `pg_wal`, so a removal
/// that races it is retried for a while.
fn remove_restored(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("bench: removing {} ({e}); retrying", dir.display());
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).with_context(|| format!("remove {}", dir.display())),
        }
    }
}

/// The `elapsed: X s` of Postgres's "redo done at ... system usage" log line (PG15+).
fn redo_elapsed(log: &str) -> Option<Duration> {
    let line = log.lines().rev().find(|l| l.contains("redo done at"))?;
    let secs = line.split("elapsed: ").nth(1)?.split(' ').next()?;
    secs.parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn best(recoveries: &[Recovery], f: impl Fn(&Recovery) -> Option<Duration>) -> Option<f64> {
    recoveries
        .iter()
        .filter_map(f)
        .map(|d| d.as_secs_f64())
        .reduce(f64::min)
}

impl FetchReport {
    /// The table (best of the rounds; every round listed below) and the verdict on the aim.
    pub fn render(&self) -> String {
        let mut table = BenchTable::new(
            &format!(
                "replay {} x 16 MiB segments (best of {} rounds)",
                self.segments,
                self.fetch.len()
            ),
            "segments in pg_wal",
        );
        let case = "recovery";
        let wall = (
            best(&self.fetch, |r| Some(r.wall)),
            best(&self.local, |r| Some(r.wall)),
        );
        if let (Some(w), local) = wall {
            table.row(case, "wall s (start to end of recovery)", w, local);
        }
        if let (Some(w), local) = (best(&self.fetch, |r| r.redo), best(&self.local, |r| r.redo)) {
            table.row(case, "redo s (Postgres's own figure)", w, local);
        }
        let mut out = table.render();
        out.push_str(&format!(
            "local recovery read {} segments from pg_wal (from the backup's start)\nrounds (fetch / local wall s):",
            self.local_segments
        ));
        for (f, l) in self.fetch.iter().zip(&self.local) {
            out.push_str(&format!(
                " {:.2}/{:.2}",
                f.wall.as_secs_f64(),
                l.wall.as_secs_f64()
            ));
        }
        out.push('\n');
        if let (Some(f), Some(l)) = wall {
            let ratio = f / l;
            out.push_str(&format!(
                "aim: replay through walship fetch <= {AIM_RATIO}x local: {ratio:.2}x -> {}\n",
                if ratio <= AIM_RATIO { "met" } else { "NOT met" }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redo_elapsed_from_the_log() {
        let log = "LOG:  redo starts at 0/2000028\n\
                   LOG:  redo done at 0/9000148 system usage: CPU: user: 1.20 s, system: 0.30 s, elapsed: 12.34 s\n";
        assert_eq!(redo_elapsed(log), Some(Duration::from_secs_f64(12.34)));
        assert_eq!(redo_elapsed("LOG:  database system is ready"), None);
    }
}
