//! `walship verify`: check every object of the repository and report every problem.

use std::time::Duration;

use clap::Args;
use walship_common::catalog::BackupId;
use walship_common::verify::{VerifyError, VerifyOptions, VerifyReport, verify};

use super::as_of::AsOfArg;
use super::show;
use crate::context::Context;
use crate::exit;

/// Arguments of `walship verify` (its help text is on `Command::Verify` in `cli.rs`).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this backup and the WAL from its start to its stop.
    #[arg(long, value_name = "ID")]
    pub backup: Option<BackupId>,
    /// Listings, manifests and object headers only: no content is read.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Warn when the newest complete backup is older than this (at TIME with --as-of).
    #[arg(long, value_name = "DURATION", default_value = "26h", value_parser = humantime::parse_duration)]
    pub max_backup_age: Duration,
    /// Warn when the newest archived WAL is older than this (at TIME with --as-of).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub max_wal_age: Duration,
    /// Objects read and checked at once (memory: one buffer per object in flight).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub readers: usize,
    // With --as-of, backup and WAL ages are measured at TIME.
    #[command(flatten)]
    pub as_of: AsOfArg,
}

/// Runs `walship verify`.
pub fn run(ctx: Context, args: VerifyArgs) -> u8 {
    ctx.block_on(async {
        let repo = match ctx.open_repository_as_of(args.as_of.as_of).await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::STORAGE_FAILED, &e),
        };
        let opts = VerifyOptions {
            backup: args.backup,
            quick: args.quick,
            max_backup_age: args.max_backup_age,
            max_wal_age: args.max_wal_age,
            parallel: args.readers,
            // As of a time, "stale" means stale at that time.
            now: args.as_of.as_of.unwrap_or_else(chrono::Utc::now),
            // WAL continuity is judged from the floor the configured policy keeps.
            policy: Some(ctx.config.retention.clone()).filter(|p| p.is_set()),
        };
        let mut figures = serde_json::Map::new();
        let code = match verify(&repo, &opts).await {
            Ok(report) => {
                print(&report, args.json);
                figures.insert("sound".into(), report.sound.into());
                figures.insert("problems".into(), report.problems.len().into());
                figures.insert("quick".into(), args.quick.into());
                if report.sound {
                    exit::SUCCESS
                } else {
                    exit::PROBLEM_FOUND
                }
            }
            Err(e @ VerifyError::NoSuchBackup(_)) => ctx.fail(exit::NOT_FOUND, &e),
            Err(e) => ctx.fail(exit::STORAGE_FAILED, &e),
        };
        args.as_of
            .record_audit(&ctx, &repo, "verify", code, figures)
            .await;
        code
    })
}

fn print(report: &VerifyReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).unwrap_or_else(|_| "{}".into())
        );
        return;
    }
    for p in &report.problems {
        println!("PROBLEM: {p}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    let c = &report.checked;
    let wal: Vec<String> = c
        .wal_segments
        .iter()
        .map(|(tli, n)| format!("{n} on timeline {tli}"))
        .collect();
    println!(
        "{}: checked {} objects ({}{}), {} backups, WAL segments: {}; {} problems, {} warnings, in {}",
        if report.sound { "sound" } else { "NOT SOUND" },
        c.objects,
        show::size(c.bytes),
        if c.quick { ", headers only" } else { "" },
        c.backups,
        if wal.is_empty() {
            "none".into()
        } else {
            wal.join(", ")
        },
        report.problems.len(),
        report.warnings.len(),
        show::duration_ms(c.elapsed_ms)
    );
}
