//! `bench archive`: pushing real 16 MiB WAL segments through `walship archive`, one call per
//! segment as Postgres's archiver does, synchronously and with `--async`, to a filesystem
//! repository and to SeaweedFS; and the same segments through `pgbackrest archive-push`
//! (posix repository, lz4, sync and async) when pgBackRest is installed.
//!
//! The segments come from a real cluster under pgbench ([`wal_load`](super::wal_load)); they are
//! copied into a scratch data directory (`pg_wal` with `archive_status/*.ready`, plus
//! `global/pg_control` for pgBackRest) so that every series pushes exactly the same bytes from
//! the same page cache. Each series runs the Postgres archiver's loop: for the oldest `.ready`
//! file, run the command; on exit 0 rename `.ready` to `.done`; any failure stops the bench.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::pgbackrest::PgBackRest;
use super::stats::Runs;
use super::wal_load::{self, SEGMENT_BYTES};
use super::walship_bin::{BenchArgs, WalshipRepo, s3_unless, tree_bytes, walship_binary};
use super::{BenchTable, find_peer, measure, met};
use crate::{S3Server, StopMode};

/// Segments pushed when `--segments` is not given.
pub const DEFAULT_SEGMENTS: usize = 64;
/// The aims.
const AIM_SYNC_RATIO: f64 = 0.5;
const AIM_ASYNC_MB_S: f64 = 200.0;
const AIM_RSS_MIB: f64 = 64.0;
/// Issue 22's aims: encrypted at most 1.1x walship's own unencrypted time, and still at most
/// 0.5x pgBackRest's with `repo-cipher-type=aes-256-cbc`.
const AIM_ENCRYPTED_OWN_RATIO: f64 = 1.1;
const AIM_ENCRYPTED_PEER_RATIO: f64 = 0.5;

/// What `bench archive` measured.
#[derive(Debug)]
pub struct ArchiveReport {
    /// Segments pushed per series.
    pub segments: usize,
    /// walship, one call per segment, filesystem repository.
    pub sync_fs: Series,
    /// walship `--async`, filesystem repository.
    pub async_fs: Series,
    /// walship, one call per segment, SeaweedFS; None with `--no-s3`.
    pub sync_s3: Option<Series>,
    /// walship `--async`, SeaweedFS; None with `--no-s3`.
    pub async_s3: Option<Series>,
    /// pgbackrest archive-push, synchronous; None when pgBackRest is not usable.
    pub peer_sync: Option<Series>,
    /// pgbackrest archive-push with archive-async; None when pgBackRest is not usable.
    pub peer_async: Option<Series>,
    /// `pgbackrest version`, when used.
    pub peer_version: Option<String>,
    /// With `--encrypt`: walship, one call per segment, encrypted filesystem repository.
    pub sync_fs_encrypted: Option<Series>,
    /// With `--encrypt`: pgbackrest archive-push, synchronous, `aes-256-cbc` repository.
    pub peer_sync_encrypted: Option<Series>,
}

/// One series of pushes and the size of what it stored (None on S3).
#[derive(Debug)]
pub struct Series {
    /// Every call.
    pub runs: Runs,
    /// Bytes the repository holds afterwards.
    pub stored_bytes: Option<u64>,
}

/// The `archive` bench: `bench archive [--segments N] [--no-s3] [--walship PATH] [--encrypt]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let s3 = s3_unless(args.no_s3)?;
    let report = run_archive(
        args.segments.unwrap_or(DEFAULT_SEGMENTS),
        s3.as_ref(),
        args.walship.as_deref(),
        args.encrypt,
    )?;
    print!("{}", report.render());
    Ok(())
}

/// Runs every series on `segments` fresh segments and returns the measurements: walship to a
/// filesystem repository and, when given, to `s3`; pgBackRest when installed. `walship` is the
/// binary to run (None: build it beside this executable). With `encrypt`, also the sync
/// series of walship into an encrypted filesystem repository and of pgBackRest into an
/// `aes-256-cbc` one, on the same segments.
pub fn run_archive(
    segments: usize,
    s3: Option<&S3Server>,
    walship: Option<&Path>,
    encrypt: bool,
) -> Result<ArchiveReport> {
    let walship = walship_binary(walship)?;
    let install = wal_load::bench_install()?;
    let work = crate::test_dir("bench-archive");
    let scratch = work.path().join("data");
    let pg_wal = scratch.join("pg_wal");
    eprintln!(
        "bench archive: PG{} writing {segments} segments under pgbench...",
        install.major
    );

    let mut cluster = wal_load::load_cluster(&install, &[]);
    wal_load::pgbench_init(&cluster, segments)?;
    let names = wal_load::write_segments(&cluster, segments)?;
    let peer = find_peer("pgbackrest").and_then(|tool| {
        match PgBackRest::create(&tool.path, &work.path().join("pgbackrest"), &cluster) {
            Ok(peer) => Some((peer, tool.version)),
            Err(e) => {
                eprintln!("bench archive: SKIP pgbackrest: {e:#}");
                None
            }
        }
    });
    let encrypted_peer = match find_peer("pgbackrest") {
        Some(tool) if encrypt => {
            let dir = work.path().join("pgbackrest-cipher");
            match PgBackRest::create_encrypted(&tool.path, &dir, &cluster) {
                Ok(peer) => Some(peer),
                Err(e) => {
                    eprintln!("bench archive: SKIP pgbackrest aes-256-cbc: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };
    cluster.stop(StopMode::Fast);
    move_segments(cluster.data_dir(), &scratch, &names)?;
    drop(cluster);

    let sync_fs = walship_series(&walship, &pg_wal, &names, work.path(), None, false, false)?;
    // Right after the unencrypted sync series, so that both see the same machine load.
    let sync_fs_encrypted = if encrypt {
        Some(walship_series(
            &walship,
            &pg_wal,
            &names,
            work.path(),
            None,
            false,
            true,
        )?)
    } else {
        None
    };
    let mut report = ArchiveReport {
        segments,
        sync_fs,
        async_fs: walship_series(&walship, &pg_wal, &names, work.path(), None, true, false)?,
        sync_s3: None,
        async_s3: None,
        peer_sync: None,
        peer_async: None,
        peer_version: None,
        sync_fs_encrypted,
        peer_sync_encrypted: None,
    };
    if let Some(peer) = &encrypted_peer {
        report.peer_sync_encrypted = Some(peer_series(peer, &scratch, &names, false)?);
    }
    if let Some((peer, version)) = &peer {
        report.peer_sync = Some(peer_series(peer, &scratch, &names, false)?);
        report.peer_async = Some(peer_series(peer, &scratch, &names, true)?);
        report.peer_version = Some(version.clone());
    }
    if let Some(s3) = s3 {
        report.sync_s3 = Some(walship_series(
            &walship,
            &pg_wal,
            &names,
            work.path(),
            Some(s3),
            false,
            false,
        )?);
        report.async_s3 = Some(walship_series(
            &walship,
            &pg_wal,
            &names,
            work.path(),
            Some(s3),
            true,
            false,
        )?);
    }
    Ok(report)
}

/// Moves the segments of the stopped cluster in `data_dir` into `scratch/pg_wal` (a rename:
/// the disk holds them once), and copies `global/pg_control` and `PG_VERSION` beside them.
fn move_segments(data_dir: &Path, scratch: &Path, names: &[String]) -> Result<()> {
    let pg_wal = scratch.join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status"))?;
    std::fs::create_dir_all(scratch.join("global"))?;
    for file in ["global/pg_control", "PG_VERSION"] {
        std::fs::copy(data_dir.join(file), scratch.join(file))
            .with_context(|| format!("copy {file}"))?;
    }
    for name in names {
        let from = data_dir.join("pg_wal").join(name);
        let to = pg_wal.join(name);
        std::fs::rename(&from, &to).with_context(|| format!("move {}", from.display()))?;
        let len = std::fs::metadata(&to)?.len();
        if len != SEGMENT_BYTES {
            bail!("{} has {len} bytes, not {SEGMENT_BYTES}", from.display());
        }
    }
    crate::chown_to_owner_recursive(scratch)?;
    Ok(())
}

/// Marks every segment `.ready` again and forgets walship's receipts, as if Postgres had just
/// written them.
fn reset_status(pg_wal: &Path, names: &[String]) -> Result<()> {
    let status = pg_wal.join("archive_status");
    std::fs::remove_dir_all(&status)?;
    std::fs::create_dir(&status)?;
    for name in names {
        std::fs::write(status.join(format!("{name}.ready")), b"")?;
    }
    let receipts = pg_wal.join("walship");
    if receipts.exists() {
        std::fs::remove_dir_all(&receipts)?;
    }
    crate::chown_to_owner_recursive(&status)?;
    Ok(())
}

/// Postgres's archiver loop over `names`: run `command(path)` for the oldest `.ready`
/// segment, rename `.ready` to `.done` on exit 0, fail on anything else.
fn push_like_postgres(
    pg_wal: &Path,
    names: &[String],
    what: &str,
    mut command: impl FnMut(&Path) -> Command,
) -> Result<Runs> {
    reset_status(pg_wal, names)?;
    let status = pg_wal.join("archive_status");
    let mut runs = Runs::new();
    let start = Instant::now();
    for name in names {
        let ready = status.join(format!("{name}.ready"));
        let mut cmd = command(&pg_wal.join(name));
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let call = measure(&mut cmd)?;
        if !call.status.success() {
            bail!("{what}: pushing {name} failed with {}", call.status);
        }
        std::fs::rename(&ready, status.join(format!("{name}.done")))
            .with_context(|| format!("rename {}", ready.display()))?;
        runs.push(call);
    }
    runs.finish(start.elapsed(), SEGMENT_BYTES * names.len() as u64);
    Ok(runs)
}

/// One walship series into a fresh repository (filesystem, or `s3` under a fresh prefix;
/// encrypted with `encrypted`), checked by fetching the last segment back.
fn walship_series(
    walship: &Path,
    pg_wal: &Path,
    names: &[String],
    work: &Path,
    s3: Option<&S3Server>,
    async_mode: bool,
    encrypted: bool,
) -> Result<Series> {
    let mode = match (async_mode, encrypted) {
        (true, false) => "async",
        (false, false) => "sync",
        (true, true) => "async-encrypted",
        (false, true) => "sync-encrypted",
    };
    let repo = match s3 {
        Some(s3) => WalshipRepo::s3(work, s3, &format!("bench-{mode}"))?,
        None => WalshipRepo::local(work, &format!("repo-{mode}"))?,
    };
    if encrypted {
        repo.encrypt(walship)?;
    }
    let what = format!("walship archive {mode} to {}", repo.url);
    eprintln!("bench archive: {what}");
    let runs = push_like_postgres(pg_wal, names, &what, |path| {
        let path = path.to_string_lossy();
        let mut args = vec!["archive"];
        if async_mode {
            args.push("--async");
        }
        args.push(&path);
        repo.command(walship, &args)
    })?;
    let last = names.last().context("no segments")?;
    check_fetch(walship, &repo, work, &pg_wal.join(last))?;
    let stored_bytes = match repo.local_root() {
        Some(root) => {
            let bytes = tree_bytes(root)?;
            std::fs::remove_dir_all(root)?;
            Some(bytes)
        }
        None => None,
    };
    Ok(Series { runs, stored_bytes })
}

/// Fetches `original`'s segment from `repo` and checks it is byte-identical.
fn check_fetch(walship: &Path, repo: &WalshipRepo, work: &Path, original: &Path) -> Result<()> {
    let name = original
        .file_name()
        .context("segment path has no name")?
        .to_string_lossy()
        .into_owned();
    let dest = work.join(format!("fetched-{name}"));
    let out = repo
        .command(walship, &["fetch", &name, &dest.to_string_lossy()])
        .output()?;
    if !out.status.success() {
        bail!(
            "walship fetch {name} from {} failed: {}",
            repo.url,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::read(&dest)? != std::fs::read(original)? {
        bail!("{name} fetched from {} differs from the original", repo.url);
    }
    std::fs::remove_file(&dest)?;
    Ok(())
}

/// One pgBackRest series (sync or async) into its emptied archive, checked by counting the
/// segments the repository holds.
fn peer_series(
    peer: &PgBackRest,
    scratch: &Path,
    names: &[String],
    async_mode: bool,
) -> Result<Series> {
    peer.clear_archive()?;
    let conf = peer.push_conf(scratch, async_mode)?;
    let what = format!("pgbackrest archive-push ({conf})");
    eprintln!("bench archive: {what}");
    let runs = push_like_postgres(&scratch.join("pg_wal"), names, &what, |path| {
        peer.archive_push(conf, path)
    })?;
    let stored = segment_files(&peer.repo())?;
    if stored.len() != names.len() {
        bail!(
            "{what}: the repository holds {} segment files, expected {}",
            stored.len(),
            names.len()
        );
    }
    let stored_bytes = stored
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    peer.clear_archive()?;
    Ok(Series {
        runs,
        stored_bytes: Some(stored_bytes),
    })
}

/// The archived segment files under a pgBackRest repository (`<24 hex>-<sha1>.lz4`).
fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(segment_files(&path)?);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() > 25 && n.as_bytes()[24] == b'-' && n.ends_with(".lz4"))
        {
            found.push(path);
        }
    }
    Ok(found)
}

impl ArchiveReport {
    /// The tables and the verdict on each aim, as text.
    pub fn render(&self) -> String {
        let n = self.segments;
        let peer_name = match &self.peer_version {
            Some(v) => v.clone(),
            None => "pgbackrest".to_owned(),
        };
        let mut out = String::new();
        for (title, fs, s3, peer) in [
            (
                format!("archive sync: {n} x 16 MiB segments, one call per segment"),
                &self.sync_fs,
                &self.sync_s3,
                &self.peer_sync,
            ),
            (
                format!("archive --async: {n} x 16 MiB segments, Postgres-like loop"),
                &self.async_fs,
                &self.async_s3,
                &self.peer_async,
            ),
        ] {
            let mut table = BenchTable::new(&title, &peer_name);
            add_rows(&mut table, "filesystem", fs, peer.as_ref());
            if let Some(s3) = s3 {
                add_rows(&mut table, "SeaweedFS S3", s3, None);
            }
            out.push_str(&table.render());
            out.push('\n');
        }
        if let Some(encrypted) = &self.sync_fs_encrypted {
            let mut table = BenchTable::new(
                &format!(
                    "archive sync, encrypted: {n} x 16 MiB segments, walship unencrypted as the peer"
                ),
                "walship plain",
            );
            add_rows(&mut table, "filesystem", encrypted, Some(&self.sync_fs));
            out.push_str(&table.render());
            out.push('\n');
            if let Some(peer) = &self.peer_sync_encrypted {
                let mut table = BenchTable::new(
                    &format!(
                        "archive sync, encrypted: {n} x 16 MiB segments, vs pgbackrest aes-256-cbc"
                    ),
                    &format!("{peer_name} aes-256-cbc"),
                );
                add_rows(&mut table, "filesystem", encrypted, Some(peer));
                out.push_str(&table.render());
                out.push('\n');
            }
        }
        if self.peer_async.is_some() {
            out.push_str(
                "note: pgbackrest async CPU and RSS count only its archive-push calls, not the \
                 background process they start (it is detached, so wait4 never sees it)\n\n",
            );
        }
        out.push_str(&self.verdicts());
        out
    }

    fn verdicts(&self) -> String {
        let mut out = String::from("aims:\n");
        match &self.peer_sync {
            Some(peer) => {
                let ratio = self.sync_fs.runs.mean_ms() / peer.runs.mean_ms();
                out.push_str(&format!(
                    "  sync time per segment <= {AIM_SYNC_RATIO}x pgbackrest (filesystem): {ratio:.2}x -> {}\n",
                    met(ratio <= AIM_SYNC_RATIO)
                ));
            }
            None => out.push_str("  sync time per segment vs pgbackrest: pgbackrest not run\n"),
        }
        if let Some(encrypted) = &self.sync_fs_encrypted {
            let ratio = encrypted.runs.mean_ms() / self.sync_fs.runs.mean_ms();
            out.push_str(&format!(
                "  encrypted sync time per segment <= {AIM_ENCRYPTED_OWN_RATIO}x walship unencrypted (filesystem): {ratio:.2}x -> {}\n",
                met(ratio <= AIM_ENCRYPTED_OWN_RATIO)
            ));
            match &self.peer_sync_encrypted {
                Some(peer) => {
                    let ratio = encrypted.runs.mean_ms() / peer.runs.mean_ms();
                    out.push_str(&format!(
                        "  encrypted sync time per segment <= {AIM_ENCRYPTED_PEER_RATIO}x pgbackrest aes-256-cbc (filesystem): {ratio:.2}x -> {}\n",
                        met(ratio <= AIM_ENCRYPTED_PEER_RATIO)
                    ));
                }
                None => {
                    out.push_str("  encrypted sync vs pgbackrest aes-256-cbc: pgbackrest not run\n")
                }
            }
        }
        for (repo, series) in [
            ("filesystem", Some(&self.async_fs)),
            ("S3", self.async_s3.as_ref()),
        ] {
            if let Some(series) = series {
                let rate = series.runs.mb_per_s();
                out.push_str(&format!(
                    "  async >= {AIM_ASYNC_MB_S} MB/s ({repo}): {rate:.0} MB/s -> {}\n",
                    met(rate >= AIM_ASYNC_MB_S)
                ));
            }
        }
        for (mode, series) in [
            ("sync", [Some(&self.sync_fs), self.sync_s3.as_ref()]),
            ("--async", [Some(&self.async_fs), self.async_s3.as_ref()]),
        ] {
            let rss = series
                .into_iter()
                .flatten()
                .map(|s| s.runs.max_rss_mib())
                .fold(0.0, f64::max);
            out.push_str(&format!(
                "  peak RSS of one {mode} walship archive call <= {AIM_RSS_MIB} MiB: {rss:.1} MiB -> {}\n",
                met(rss <= AIM_RSS_MIB)
            ));
        }
        out
    }
}

fn add_rows(table: &mut BenchTable, repo: &str, walship: &Series, peer: Option<&Series>) {
    let pick = |f: &dyn Fn(&Series) -> f64| (f(walship), peer.map(f));
    let mib = |b: Option<u64>| b.map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
    let rows: [(&str, (f64, Option<f64>)); 8] = [
        ("latency mean ms", pick(&|s| s.runs.mean_ms())),
        ("latency p50 ms", pick(&|s| s.runs.percentile_ms(50.0))),
        ("latency p99 ms", pick(&|s| s.runs.percentile_ms(99.0))),
        ("total s", pick(&|s| s.runs.total_s())),
        ("MB/s", pick(&|s| s.runs.mb_per_s())),
        ("CPU s (all calls)", pick(&|s| s.runs.cpu_s())),
        ("max peak RSS MiB", pick(&|s| s.runs.max_rss_mib())),
        ("stored MiB", pick(&|s| mib(s.stored_bytes))),
    ];
    for (metric, (w, p)) in rows {
        if metric == "stored MiB" && walship.stored_bytes.is_none() {
            continue;
        }
        table.row(repo, metric, w, p);
    }
}
