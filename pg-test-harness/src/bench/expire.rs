//! `bench expire`: the time `walship expire` takes to remove 100,000 expired WAL segments from
//! SeaweedFS (the lifecycle issue's aim: under 60 seconds; one listing of `wal/`, then
//! DeleteObjects of 1,000 keys a call).
//!
//! The repository is real where `expire` reads it and crafted where it does not: a cluster
//! whose WAL starts after the names of `--segments` segments (`pg_resetwal -l` before its
//! first start) archives into a SeaweedFS repository and is backed up there by `walship
//! backup`, so `walship.json` and the manifest are the binary's own. Then `--segments` one-byte
//! objects go in under the names of the segments before that backup (`expire` lists WAL and
//! never reads its content), uploaded with raw unsigned PUTs from a few threads: the set-up
//! takes minutes and is not the figure. `walship expire --daily 1 --json` is then one measured
//! child process, and it must report at least that many WAL objects removed, or the bench
//! fails.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::walship_bin::{BenchArgs, WalshipRepo, walship_binary};
use super::{Measurement, measure, met, plan, wal_load};
use crate::{Cluster, S3Server, StopMode};

/// The aim: 100,000 segments removed in under 60 seconds.
const AIM_SECONDS: f64 = 60.0;
/// Expired segments when `--segments` is not given.
const DEFAULT_SEGMENTS: usize = 100_000;
/// Upload threads for the set-up (each PUT is one short connection).
const UPLOADERS: u64 = 32;
/// The repository's prefix in the bucket.
const PREFIX: &str = "expire";

/// What `bench expire` measured.
#[derive(Debug)]
pub struct ExpireReport {
    /// Segments crafted before the backup.
    pub segments: u64,
    /// WAL objects `walship expire` says it removed.
    pub removed: u64,
    /// How long the crafted objects took to upload.
    pub set_up: Duration,
    /// The `walship expire` child process.
    pub run: Measurement,
}

/// The `expire` bench: `bench expire [--segments N] [--walship PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    if args.no_s3 {
        bail!("bench expire measures SeaweedFS: --no-s3 leaves nothing to measure");
    }
    let segments = args.segments.unwrap_or(DEFAULT_SEGMENTS) as u64;
    let walship = walship_binary(args.walship.as_deref())?;
    let s3 = S3Server::start()?;
    let work = crate::test_dir("bench-expire");
    let repo = WalshipRepo::s3(work.path(), &s3, PREFIX)?;
    back_up_after(segments, &repo, &walship)?;

    eprintln!("bench: uploading {segments} expired segments");
    let started = Instant::now();
    upload_segments(&s3, segments)?;
    let set_up = started.elapsed();
    eprintln!("bench: set up in {:.0} s", set_up.as_secs_f64());

    let (run, report) = expire(&repo, &walship)?;
    let removed = report["wal_objects_removed"]
        .as_u64()
        .with_context(|| format!("no wal_objects_removed in {report}"))?;
    if removed < segments {
        bail!("walship expire removed {removed} WAL objects, fewer than the {segments} crafted");
    }
    let report = ExpireReport {
        segments,
        removed,
        set_up,
        run,
    };
    print!("{}", report.render());
    Ok(())
}

/// Starts a cluster whose first WAL segment comes after segment `segments` (so the crafted
/// names all lie before its backup), archiving into `repo`, and backs it up there.
fn back_up_after(segments: u64, repo: &WalshipRepo, walship: &Path) -> Result<()> {
    let install = wal_load::bench_install()?;
    let archive = repo.shell_command(walship, "archive %p");
    let mut cluster = Cluster::builder(&install)
        .setting("archive_mode", "on")
        .setting("archive_command", &format!("'{archive}'"))
        .init();
    let first = wal_load::segment_name(1, segments + 1);
    let out = cluster
        .pg_command("pg_resetwal")
        .args(["-l", &first, "-D"])
        .arg(cluster.data_dir())
        .output()
        .context("run pg_resetwal")?;
    if !out.status.success() {
        bail!(
            "pg_resetwal -l {first} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.start();
    plan::back_up(&cluster, repo, walship)?;
    cluster.stop(StopMode::Fast);
    Ok(())
}

/// PUTs a one-byte object under the key of each segment 1..=`segments` of timeline 1 in the
/// repository, from [`UPLOADERS`] threads.
fn upload_segments(s3: &S3Server, segments: u64) -> Result<()> {
    let next = AtomicU64::new(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..UPLOADERS)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let segno = next.fetch_add(1, Ordering::Relaxed);
                        if segno > segments {
                            return Ok(());
                        }
                        let name = wal_load::segment_name(1, segno);
                        let path = format!("/{}/{PREFIX}/wal/{}/{name}", s3.bucket, &name[..16]);
                        let response = s3.http("PUT", &path, b"x")?;
                        if response.status != 200 {
                            bail!("PUT {path}: {} {}", response.status, response.body_text());
                        }
                        if segno.is_multiple_of(20_000) {
                            eprintln!("bench: {segno} uploaded");
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("an upload thread panicked"))??;
        }
        Ok(())
    })
}

/// Times `walship expire --daily 1 --json` against `repo`; returns its report.
fn expire(repo: &WalshipRepo, walship: &Path) -> Result<(Measurement, Value)> {
    eprintln!("bench: walship expire --daily 1");
    let stdout = tempfile::NamedTempFile::new()?;
    let mut cmd = repo.command(walship, &["expire", "--daily", "1", "--json"]);
    cmd.stdin(Stdio::null()).stdout(stdout.reopen()?);
    let run = measure(&mut cmd)?;
    let text = std::fs::read_to_string(stdout.path())?;
    if !run.status.success() {
        bail!("walship expire failed with {}: {text}", run.status);
    }
    let out: Value = serde_json::from_str(&text)
        .with_context(|| format!("walship expire --json printed {text:?}"))?;
    Ok((run, out["report"].clone()))
}

impl ExpireReport {
    /// The measurement and the verdict on the aim, as text.
    pub fn render(&self) -> String {
        let secs = self.run.wall.as_secs_f64();
        format!(
            "walship expire --daily 1 on SeaweedFS: {} crafted segments before the backup \
             (set up in {:.0} s)\n  removed {} WAL objects  {secs:>6.2} s wall  {:>6.2} s CPU  \
             {:>6.1} MiB peak RSS\n\naims:\n  {} expired segments removed from SeaweedFS < \
             {AIM_SECONDS} s: {secs:.2} s -> {}\n",
            self.segments,
            self.set_up.as_secs_f64(),
            self.removed,
            (self.run.user + self.run.system).as_secs_f64(),
            self.run.peak_rss_mib(),
            self.segments,
            met(secs < AIM_SECONDS)
        )
    }
}
