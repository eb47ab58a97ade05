//! `bench fetch`: how long Postgres takes to replay N segments when `restore_command =
//! 'walship fetch %f %p'` delivers them from a filesystem repository, against the same
//! recovery with the segments already in `pg_wal`.
//!
//! "The same recovery" is archive recovery (`recovery.signal`) from the same base copy, with
//! the segments in `pg_wal` and a `restore_command` that finds nothing (`false`), so that
//! Postgres reads them from `pg_wal`: the aim's baseline. More ways put it in context: crash
//! recovery (no `recovery.signal`, no `restore_command`: what Postgres does without any
//! archive); `cp` from a plain directory of uncompressed segments (the plainest
//! `restore_command`, which leaves Postgres's fsync of each restored file unflushed data); and
//! three that measure the machine rather than walship: the baseline recovery with the reference
//! `lz4` tool decoding the same segments beside it (the work a prefetching `restore_command`
//! cannot avoid), `mv` of segments decoded and flushed before the recovery (a perfect prefetch:
//! Postgres's own cost of running a command and keeping its file, per segment), and that `mv`
//! with `lz4` decoding beside it: the least a decompressing `restore_command` costs here.
//!
//! A primary archives through `walship archive --async`; a base copy is taken with the
//! low-level backup API; then pgbench writes N segments and the primary stops. Each round
//! copies the base and recovers it every way, each after a `sync`; each recovery is timed
//! from `pg_ctl start` until `pg_is_in_recovery()` is false, and checked: it holds every
//! pgbench transaction of the primary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::BenchTable;
use super::decode_beside::CompressedSegments;
use super::steal::{CpuTimes, NOISY_STEAL};
use super::wal_load::{self, SEGMENT_BYTES};
use super::walship_bin::{BenchArgs, WalshipRepo, walship_binary};
use crate::{Cluster, PgInstall, StopMode};

/// Segments replayed when `--segments` is not given.
pub const DEFAULT_SEGMENTS: usize = 64;
/// Rounds (each recovering both ways) when `--rounds` is not given.
/// Three: this machine's speed drifts within minutes, and the best of three rounds of each
/// way is a steadier figure than the best of two.
pub const DEFAULT_ROUNDS: usize = 3;
/// The aim: fetch replay at most this many times the local replay.
const AIM_RATIO: f64 = 1.2;
/// How long one recovery may take.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(900);

/// What one recovery cost.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// From `pg_ctl start` to the end of recovery.
    pub wall: Duration,
    /// Postgres's own "redo done ... elapsed" figure, when its log has one (PG15+).
    pub redo: Option<Duration>,
    /// Where redo ended (the "redo done at" LSN), when the log says so: every way must end
    /// at the same place, or they did not replay the same WAL.
    pub redo_end: Option<String>,
    /// The share of the machine's CPU time the hypervisor gave elsewhere meanwhile, where
    /// `/proc/stat` says ([`CpuTimes`]).
    pub steal: Option<f64>,
}

/// One way of giving the replayed segments to a recovering copy of the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Archive recovery through `restore_command = 'walship fetch %f %p'`: what is measured.
    WalshipFetch,
    /// Archive recovery with the segments in `pg_wal` (`restore_command = 'false'`): the
    /// same recovery without an archive, the aim's baseline.
    ArchiveRecoveryLocal,
    /// Crash recovery with the segments in `pg_wal`: no archive recovery at all.
    CrashRecoveryLocal,
    /// Archive recovery through `restore_command = 'cp <dir>/%f %p'` from uncompressed
    /// segments: the least a `restore_command` can cost.
    CopyFromDirectory,
    /// The aim's baseline while `lz4 -d` decodes (and flushes) the same segments beside it:
    /// what decompression alone costs replay on this machine (no walship code runs).
    ArchiveRecoveryLocalBesideDecode,
    /// Archive recovery through `restore_command = 'mv <dir>/%f %p'` from segments copied
    /// and flushed into a directory on the data directory's file system before the recovery
    /// (unmeasured): a perfect prefetch, where delivering a segment is one rename by one
    /// small process. Any `restore_command` pays at least this (Postgres starts the command
    /// for every segment and then renames and fsyncs what it delivered).
    MoveReady,
    /// [`Way::MoveReady`] while `lz4 -d` decodes and flushes the same segments beside it, as
    /// [`Way::ArchiveRecoveryLocalBesideDecode`] does: the least a `restore_command` that
    /// decompresses during recovery can cost on this machine (no walship code runs).
    MoveReadyBesideDecode,
}

impl Way {
    /// Every way, in the order each round runs them.
    pub const ALL: [Way; 7] = [
        Way::WalshipFetch,
        Way::ArchiveRecoveryLocal,
        Way::CrashRecoveryLocal,
        Way::CopyFromDirectory,
        Way::ArchiveRecoveryLocalBesideDecode,
        Way::MoveReady,
        Way::MoveReadyBesideDecode,
    ];

    /// What the table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Way::WalshipFetch => "walship fetch",
            Way::ArchiveRecoveryLocal => "archive recovery, WAL in pg_wal",
            Way::CrashRecoveryLocal => "crash recovery, WAL in pg_wal",
            Way::CopyFromDirectory => "restore_command cp",
            Way::ArchiveRecoveryLocalBesideDecode => "pg_wal, lz4 -d of it beside",
            Way::MoveReady => "restore_command mv, ready",
            Way::MoveReadyBesideDecode => "mv ready, lz4 -d beside",
        }
    }

    /// Whether `lz4 -d` decodes the segments beside this recovery.
    fn decodes_beside(self) -> bool {
        matches!(
            self,
            Way::ArchiveRecoveryLocalBesideDecode | Way::MoveReadyBesideDecode
        )
    }
}

/// What `bench fetch` measured.
#[derive(Debug)]
pub struct FetchReport {
    /// Segments written after the base copy (all replayed).
    pub segments: usize,
    /// Segments from the backup's start to the last one (what every way replays).
    pub replayed_segments: usize,
    /// Every recovery, in the order run.
    pub recoveries: Vec<(Way, Recovery)>,
    /// Each time the replayed segments were copied from the page cache and flushed one by
    /// one (the setup of the `mv` ways, unmeasured by them): the disk work every
    /// `restore_command` adds to replay, since Postgres fsyncs each segment it restores,
    /// and replay from `pg_wal` never does.
    pub flushes: Vec<Duration>,
}

/// The `fetch` bench: `bench fetch [--segments N] [--rounds N] [--walship PATH] [--keep]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let report = run_fetch(
        args.segments.unwrap_or(DEFAULT_SEGMENTS),
        args.rounds.unwrap_or(DEFAULT_ROUNDS),
        args.walship.as_deref(),
        args.keep,
    )?;
    print!("{}", report.render());
    Ok(())
}

/// Writes `segments` segments after a base copy and recovers it `rounds` times every way.
/// With `keep`, the scratch directory (repository `repo`, base copy `base`, segments `wal`)
/// stays and its path is printed.
pub fn run_fetch(
    segments: usize,
    rounds: usize,
    walship: Option<&Path>,
    keep: bool,
) -> Result<FetchReport> {
    let walship = walship_binary(walship)?;
    let install = wal_load::bench_install()?;
    let work = crate::test_dir("bench-fetch");
    let repo = WalshipRepo::local(work.path(), "repo")?;
    let archive_command = repo.shell_command(&walship, "archive --async %p");
    eprintln!(
        "bench fetch: PG{}, archive_command = '{archive_command}'",
        install.major
    );

    // No autovacuum: WAL it wrote after the last switch would reach the archive (and so
    // the recovery through fetch) but not the segments kept for the other ways.
    let mut primary = wal_load::load_cluster(
        &install,
        &[
            ("archive_mode", "on".to_owned()),
            ("archive_command", format!("'{archive_command}'")),
            ("autovacuum", "off".to_owned()),
        ],
    );
    wal_load::pgbench_init(&primary, segments)?;
    let base = work.path().join("base");
    let start = wal_load::base_copy(&primary, &base)?;
    eprintln!(
        "bench fetch: base copy taken (replay starts in {start}); writing {segments} segments..."
    );
    wal_load::write_segments(&primary, segments)?;
    // The check reads every row and sets hint bits, whose WAL (full-page images, with data
    // checksums) every way must replay: so it runs before the last switch.
    let transactions = primary.query_string(PGBENCH_CHECK);
    let last = wal_load::segment_name(1, wal_load::switch_wal(&primary)?);
    wal_load::wait_archived(&primary, &last, Duration::from_secs(600))?;
    primary.stop(StopMode::Fast);
    // A shutdown with archiving on switches segments once more when WAL was written after
    // the switch above (a background writer's standby snapshot) and archives that segment:
    // the fetch way would replay it, so every way gets it.
    let last = newest_archived_segment(&primary.data_dir().join("pg_wal"), last)?;
    // Keep only the segments to replay; the rest of the primary goes.
    let wal_dir = work.path().join("wal");
    std::fs::create_dir(&wal_dir)?;
    let mut wal = Vec::new();
    for segment in segments_between(&primary.data_dir().join("pg_wal"), &start, &last)? {
        let kept = wal_dir.join(segment.file_name().context("segment without name")?);
        std::fs::rename(&segment, &kept)?;
        wal.push(kept);
    }
    crate::chown_to_owner_recursive(&wal_dir)?;
    drop(primary);
    let compressed = CompressedSegments::prepare(&wal, &work.path().join("wal-lz4"))?;

    let mut report = FetchReport {
        segments,
        replayed_segments: wal.len(),
        recoveries: Vec::new(),
        flushes: Vec::new(),
    };
    for round in 1..=rounds {
        for way in Way::ALL {
            let dir = work.path().join(format!("round-{round}-{way:?}"));
            wal_load::copy_tree_all(&base, &dir)?;
            let conf = match way {
                Way::WalshipFetch => {
                    let restore = repo.shell_command(&walship, "fetch %f %p");
                    vec![format!("restore_command = '{restore}'")]
                }
                Way::ArchiveRecoveryLocal | Way::ArchiveRecoveryLocalBesideDecode => {
                    vec!["restore_command = 'false'".to_owned()]
                }
                Way::CrashRecoveryLocal => Vec::new(),
                Way::CopyFromDirectory => vec![format!(
                    "restore_command = 'cp {}/%f %p'",
                    wal_dir.display()
                )],
                Way::MoveReady | Way::MoveReadyBesideDecode => {
                    let ready = work.path().join(format!("ready-{round}-{way:?}"));
                    let started = Instant::now();
                    copy_flushed(&wal, &ready)?;
                    report.flushes.push(started.elapsed());
                    vec![format!("restore_command = 'mv {}/%f %p'", ready.display())]
                }
            };
            if way != Way::CrashRecoveryLocal {
                std::fs::write(dir.join("recovery.signal"), b"")?;
            }
            if matches!(
                way,
                Way::ArchiveRecoveryLocal
                    | Way::CrashRecoveryLocal
                    | Way::ArchiveRecoveryLocalBesideDecode
            ) {
                link_segments(&wal, &dir.join("pg_wal"))?;
            }
            // Each recovery starts with nothing of the bench's own left to write back: the
            // copy of the base just made (and, before the first, the segments the load
            // wrote) were otherwise flushed during whichever recovery came next, the first
            // way of the first round above all.
            nix::unistd::sync();
            let decoding = way
                .decodes_beside()
                .then(|| compressed.decode_in_background(&work.path().join("decoded"), &dir))
                .transpose()?;
            let r = recover(&install, &dir, &conf, &transactions)?;
            if let Some(decoding) = decoding {
                decoding.join().expect("lz4 decoding thread panicked")?;
            }
            let ready = work.path().join(format!("ready-{round}-{way:?}"));
            if ready.exists() {
                std::fs::remove_dir_all(&ready)?;
            }
            eprintln!(
                "bench fetch: round {round}: {} {:.2} s",
                way.label(),
                r.wall.as_secs_f64()
            );
            report.recoveries.push((way, r));
        }
    }
    report.check_same_wal()?;
    if keep {
        eprintln!("bench fetch: kept {}", work.keep().display());
    }
    Ok(report)
}

/// Puts the segments into a copy's `pg_wal`. Hard links, not copies (disk space): recovery
/// only reads completed segments, and wal_keep_size (from the copied postgresql.conf) keeps
/// it from recycling them; the row check of [`recover`] would catch a segment changed by an
/// earlier recovery.
fn link_segments(wal: &[PathBuf], pg_wal: &Path) -> Result<()> {
    for segment in wal {
        let name = segment.file_name().context("segment without name")?;
        std::fs::hard_link(segment, pg_wal.join(name))
            .with_context(|| format!("link {} into {}", segment.display(), pg_wal.display()))?;
    }
    Ok(())
}

/// Copies the segments into a new directory `ready` (owned by the server's user, so that
/// its `restore_command` may move them out) and flushes each, as the prefetch worker
/// flushes its entries.
fn copy_flushed(wal: &[PathBuf], ready: &Path) -> Result<()> {
    std::fs::create_dir(ready).with_context(|| format!("create {}", ready.display()))?;
    for segment in wal {
        let name = segment.file_name().context("segment without name")?;
        let copy = ready.join(name);
        std::fs::copy(segment, &copy)
            .with_context(|| format!("copy {} to {}", segment.display(), copy.display()))?;
        std::fs::File::open(&copy)?.sync_data()?;
    }
    crate::chown_to_owner_recursive(ready)?;
    Ok(())
}

/// The newest segment marked archived (`archive_status/<name>.done`) in `pg_wal`, if it is
/// after `last`; else `last`.
fn newest_archived_segment(pg_wal: &Path, last: String) -> Result<String> {
    let mut newest = last;
    for entry in std::fs::read_dir(pg_wal.join("archive_status"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(segment) = name.strip_suffix(".done")
            && segment.len() == 24
            && segment.bytes().all(|b| b.is_ascii_hexdigit())
            && segment > newest.as_str()
        {
            newest = segment.to_owned();
        }
    }
    Ok(newest)
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
    let cpu_before = CpuTimes::now();
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
    let steal = CpuTimes::now()
        .zip(cpu_before)
        .and_then(|(after, before)| after.steal_since(&before));
    let found = cluster.query_string(PGBENCH_CHECK);
    if found != expected {
        bail!(
            "recovery of {} holds {found}, the primary had {expected}\n{}",
            dir.display(),
            cluster.log_excerpt()
        );
    }
    let log = cluster.log();
    let redo = redo_elapsed(&log);
    let redo_end = redo_end(&log);
    drop(client);
    cluster.stop(StopMode::Immediate);
    drop(cluster);
    remove_restored(dir)?;
    Ok(Recovery {
        wall,
        redo,
        redo_end,
        steal,
    })
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

/// Postgres's last "redo done at <LSN> ..." log line.
fn redo_done_line(log: &str) -> Option<&str> {
    log.lines().rev().find(|l| l.contains("redo done at"))
}

/// The LSN of Postgres's last "redo done at <LSN>" log line.
fn redo_end(log: &str) -> Option<String> {
    let lsn = redo_done_line(log)?
        .split("redo done at ")
        .nth(1)?
        .split(' ')
        .next()?;
    Some(lsn.to_owned())
}

/// The `elapsed: X s` of Postgres's "redo done at ... system usage" log line (PG15+).
fn redo_elapsed(log: &str) -> Option<Duration> {
    let line = redo_done_line(log)?;
    let secs = line.split("elapsed: ").nth(1)?.split(' ').next()?;
    secs.parse::<f64>().ok().map(Duration::from_secs_f64)
}

impl FetchReport {
    /// Fails unless every recovery whose log names its end of redo ended at the same LSN: a
    /// comparison of recoveries that replayed different amounts of WAL means nothing.
    fn check_same_wal(&self) -> Result<()> {
        let mut ends = self
            .recoveries
            .iter()
            .filter_map(|(way, r)| Some((way, r.redo_end.as_deref()?)));
        if let Some((first_way, first)) = ends.next()
            && let Some((way, end)) = ends.find(|(_, end)| end != &first)
        {
            bail!(
                "{} ended redo at {end} but {} at {first}: the ways did not replay the same WAL",
                way.label(),
                first_way.label()
            );
        }
        Ok(())
    }

    /// The best of the rounds for `way`, by `f`.
    fn best(&self, way: Way, f: impl Fn(&Recovery) -> Option<Duration>) -> Option<f64> {
        self.recoveries
            .iter()
            .filter(|(w, _)| *w == way)
            .filter_map(|(_, r)| f(r))
            .map(|d| d.as_secs_f64())
            .reduce(f64::min)
    }

    /// The round of `way` with the shortest wall time.
    fn best_round(&self, way: Way) -> Option<&Recovery> {
        self.recoveries
            .iter()
            .filter(|(w, _)| *w == way)
            .map(|(_, r)| r)
            .min_by_key(|r| r.wall)
    }

    /// What the hypervisor took during the two rounds the verdict compares, and at most in
    /// any round: a run whose compared rounds lost more than [`NOISY_STEAL`] of the CPU
    /// measured the host's load as much as walship.
    fn steal_line(&self) -> Option<String> {
        let fetch = self.best_round(Way::WalshipFetch)?.steal?;
        let baseline = self.best_round(Way::ArchiveRecoveryLocal)?.steal?;
        let most = self
            .recoveries
            .iter()
            .filter_map(|(_, r)| r.steal)
            .fold(0.0, f64::max);
        let verdict = if fetch.max(baseline) > NOISY_STEAL {
            format!(
                ": above {:.0}%, so this run's verdict measures the host's load as much as walship",
                NOISY_STEAL * 100.0
            )
        } else {
            String::new()
        };
        Some(format!(
            "machine: the hypervisor took {:.1}% of the CPU during walship's best round and {:.1}% during the baseline's (at most {:.0}% in a round of this run){verdict}\n",
            fetch * 100.0,
            baseline * 100.0,
            most * 100.0
        ))
    }

    /// The table (best of the rounds; every round listed below) and the verdict on the aim.
    pub fn render(&self) -> String {
        let rounds = self
            .recoveries
            .iter()
            .filter(|(w, _)| *w == Way::WalshipFetch)
            .count();
        let mut table = BenchTable::new(
            &format!(
                "replay {} x 16 MiB segments (best of {rounds} rounds): walship fetch vs a baseline",
                self.segments,
            ),
            "baseline",
        );
        let fetch_wall = self.best(Way::WalshipFetch, |r| Some(r.wall));
        let fetch_redo = self.best(Way::WalshipFetch, |r| r.redo);
        for way in &Way::ALL[1..] {
            if let Some(w) = fetch_wall {
                let local = self.best(*way, |r| Some(r.wall));
                table.row(way.label(), "wall s (start to end of recovery)", w, local);
            }
            if let (Some(w), local @ Some(_)) = (fetch_redo, self.best(*way, |r| r.redo)) {
                table.row(way.label(), "redo s (Postgres's own figure)", w, local);
            }
        }
        let mut out = table.render();
        out.push_str(&format!(
            "every way replays {} segments (from the backup's start)\nrounds (wall s, and the CPU time stolen by the hypervisor meanwhile):",
            self.replayed_segments
        ));
        for way in Way::ALL {
            out.push_str(&format!("\n  {:<32}", way.label()));
            for (_, r) in self.recoveries.iter().filter(|(w, _)| *w == way) {
                out.push_str(&format!(" {:.2}", r.wall.as_secs_f64()));
                if let Some(steal) = r.steal {
                    out.push_str(&format!(" (st {:.0}%)", steal * 100.0));
                }
            }
        }
        out.push('\n');
        let baseline = self.best(Way::ArchiveRecoveryLocal, |r| Some(r.wall));
        if let (Some(f), Some(l)) = (fetch_wall, baseline) {
            let ratio = f / l;
            out.push_str(&format!(
                "aim: replay through walship fetch <= {AIM_RATIO}x the same recovery with WAL in pg_wal: {ratio:.2}x -> {}\n",
                if ratio <= AIM_RATIO { "met" } else { "NOT met" }
            ));
            out.push_str(&self.steal_line().unwrap_or_default());
            if let Some(busy) = self.best(Way::ArchiveRecoveryLocalBesideDecode, |r| Some(r.wall)) {
                out.push_str(&format!(
                    "machine: the baseline with lz4 -d decoding the same segments beside it takes {:.2}x the baseline (no walship code runs)\n",
                    busy / l
                ));
            }
            if let (Some(ready), Some(floor)) = (
                self.best(Way::MoveReady, |r| Some(r.wall)),
                self.best(Way::MoveReadyBesideDecode, |r| Some(r.wall)),
            ) {
                out.push_str(&format!(
                    "machine: restore_command mv of segments decoded and flushed before the recovery takes {:.2}x the baseline; \
                     with lz4 -d decoding beside it {:.2}x, the floor of any restore_command that decompresses (walship fetch: {:.2}x that floor)\n",
                    ready / l,
                    floor / l,
                    f / floor
                ));
            }
            if let Some(flush) = self.flushes.iter().min() {
                let mib =
                    (self.replayed_segments as u64 * SEGMENT_BYTES) as f64 / f64::from(1 << 20);
                out.push_str(&format!(
                    "machine: copying the {} segments ({mib:.0} MiB) from the page cache and flushing each takes {:.2} s here ({:.0} MiB/s), \
                     {:.2}x the baseline's whole time: disk work every restore_command adds (Postgres fsyncs each segment \
                     it restores) and replay from pg_wal never does\n",
                    self.replayed_segments,
                    flush.as_secs_f64(),
                    mib / flush.as_secs_f64(),
                    flush.as_secs_f64() / l
                ));
            }
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
        assert_eq!(redo_end(log).as_deref(), Some("0/9000148"));
    }
}
