//! `bench plan`: the time `walship restore --dry-run` takes to plan a restore against an
//! archive of more than 500 segments (the restore issue's aim: under 10 seconds), from a
//! filesystem repository and from SeaweedFS.
//!
//! A cluster with 1 MiB segments (so that 500 segments take seconds to write, not minutes)
//! archives through `walship archive --async` into both repositories, is backed up by
//! `walship backup` into each, then writes one row and switches WAL `--segments` times
//! (default 520). Once everything is archived, `walship restore --dry-run --target latest`
//! runs against each repository as one measured child process; its plan must cover at least
//! that many segments (it reads every one of them: the chain is checked before any data
//! moves), or the bench fails.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::walship_bin::{BenchArgs, WalshipRepo, s3_unless, walship_binary};
use super::{Measurement, measure, met, wal_load};
use crate::Cluster;

/// The aim: a plan in under 10 seconds.
const AIM_SECONDS: f64 = 10.0;
/// Segments written after the backup when `--segments` is not given.
const DEFAULT_SEGMENTS: usize = 520;

/// One repository's plan.
#[derive(Debug)]
pub struct Plan {
    /// The repository's URL.
    pub url: String,
    /// Segments the plan reads (the sum of its `wal_ranges`).
    pub segments: u64,
    /// The dry run, measured.
    pub run: Measurement,
}

/// The `plan` bench: `bench plan [--segments N] [--no-s3] [--walship PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let s3 = s3_unless(args.no_s3)?;
    let walship = walship_binary(args.walship.as_deref())?;
    let install = wal_load::bench_install()?;
    let segments = args.segments.unwrap_or(DEFAULT_SEGMENTS);
    let work = crate::test_dir("bench-plan");
    let mut repos = vec![WalshipRepo::local(work.path(), "file")?];
    if let Some(s3) = &s3 {
        repos.push(WalshipRepo::s3(work.path(), s3, "plan")?);
    }
    let archive_command = repos
        .iter()
        .map(|r| r.shell_command(&walship, "archive --async %p"))
        .collect::<Vec<_>>()
        .join(" && ");
    let cluster = Cluster::builder(&install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting("archive_command", &format!("'{archive_command}'"))
        .setting("checkpoint_timeout", "'1h'")
        .start();
    cluster.execute("create table tick (n int)");
    for repo in &repos {
        back_up(&cluster, repo, &walship)?;
    }
    eprintln!("bench: writing {segments} segments");
    for n in 0..segments {
        cluster.execute(&format!(
            "insert into tick values ({n}); select pg_switch_wal()"
        ));
    }
    let last = cluster.query_string("select pg_walfile_name(pg_switch_wal())");
    wal_load::wait_archived(&cluster, &last, Duration::from_secs(600))?;

    let mut plans = Vec::new();
    for repo in &repos {
        let plan = dry_run(repo, &walship, &work.path().join("restored"))?;
        if plan.segments < segments as u64 {
            bail!(
                "the plan against {} reads {} segments, fewer than the {segments} written",
                plan.url,
                plan.segments
            );
        }
        plans.push(plan);
    }
    print!("{}", render(&plans, install.major));
    Ok(())
}

/// `walship backup --checkpoint fast` of `cluster` into `repo`.
pub(super) fn back_up(cluster: &Cluster, repo: &WalshipRepo, walship: &Path) -> Result<()> {
    eprintln!("bench: walship backup to {}", repo.url);
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let out = repo
        .command(walship, &["backup", "-d", &conn, "--checkpoint", "fast"])
        .stdin(Stdio::null())
        .output()
        .context("run walship backup")?;
    if !out.status.success() {
        bail!(
            "walship backup to {} failed with {}: {}",
            repo.url,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Times `walship restore --dry-run --target latest --json` against `repo` and reads how many
/// segments its plan covers.
fn dry_run(repo: &WalshipRepo, walship: &Path, to: &Path) -> Result<Plan> {
    eprintln!("bench: walship restore --dry-run from {}", repo.url);
    let to = to.to_string_lossy();
    let args = [
        "restore",
        "--dry-run",
        "--target",
        "latest",
        "--json",
        "--to",
        &to,
    ];
    let stdout = tempfile::NamedTempFile::new()?;
    let mut cmd = repo.command(walship, &args);
    cmd.stdin(Stdio::null()).stdout(stdout.reopen()?);
    let run = measure(&mut cmd)?;
    let text = std::fs::read_to_string(stdout.path())?;
    if !run.status.success() {
        bail!(
            "walship restore --dry-run from {} failed with {}",
            repo.url,
            run.status
        );
    }
    let plan: Value = serde_json::from_str(&text)
        .with_context(|| format!("walship restore --dry-run --json printed {text:?}"))?;
    let segments = plan["wal_ranges"]
        .as_array()
        .with_context(|| format!("no wal_ranges in {plan}"))?
        .iter()
        .filter_map(|r| r["segments"].as_u64())
        .sum();
    Ok(Plan {
        url: repo.url.clone(),
        segments,
        run,
    })
}

/// The plans and the verdict on the aim, as text.
fn render(plans: &[Plan], major: u32) -> String {
    let mut out =
        format!("walship restore --dry-run --target latest (PostgreSQL {major}, 1 MiB segments)\n");
    for p in plans {
        out.push_str(&format!(
            "  {:<40} {:>5} segments  {:>6.2} s wall  {:>6.2} s CPU  {:>6.1} MiB peak RSS\n",
            p.url,
            p.segments,
            p.run.wall.as_secs_f64(),
            (p.run.user + p.run.system).as_secs_f64(),
            p.run.peak_rss_mib()
        ));
    }
    out.push_str("\naims:\n");
    for p in plans {
        let secs = p.run.wall.as_secs_f64();
        out.push_str(&format!(
            "  plan of {} segments from {} < {AIM_SECONDS} s: {secs:.2} s -> {}\n",
            p.segments,
            p.url,
            met(secs < AIM_SECONDS)
        ));
    }
    out
}
