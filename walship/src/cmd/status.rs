//! `walship status`: the repository on one screen, and one exit code for monitoring.

use std::time::Duration;

use clap::Args;
use walship_restore::status::{self, RepoStatus};

use crate::context::Context;
use crate::exit;

/// Show the repository's state: backups, PITR window, newest WAL and its age, gaps, size,
/// last drill.
///
/// The operator's first command on the worst day. Read-only: one listing, the catalog, the
/// WAL scan of a restore plan to `latest` (which finds the newest recoverable commit and any
/// gap), and the newest drill report.
///
/// Exit codes: 0 healthy; 4 unhealthy: a gap in the WAL, no complete backup, a restore to
/// latest refused, the newest WAL older than --max-wal-age or the newest backup older than
/// --max-backup-age (each reason printed); 3 the repository could not be read.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Unhealthy when the newest archived WAL is older than this (the RPO you promised).
    #[arg(long, value_name = "DURATION", value_parser = walship_common::config::parse_duration)]
    pub max_wal_age: Option<Duration>,
    /// Unhealthy when the newest complete backup is older than this.
    #[arg(long, value_name = "DURATION", value_parser = walship_common::config::parse_duration)]
    pub max_backup_age: Option<Duration>,
}

/// Runs `walship status`.
pub fn run(ctx: Context, args: StatusArgs) -> u8 {
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let status = match status::status(&repo, chrono::Utc::now()).await {
            Ok(s) => s,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let unhealthy = verdicts(&status, &args);
        if args.json {
            let mut json = serde_json::to_value(&status).unwrap_or_default();
            json["healthy"] = unhealthy.is_empty().into();
            json["unhealthy_because"] = unhealthy.clone().into();
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else {
            print_text(&status, &unhealthy);
        }
        if unhealthy.is_empty() {
            exit::SUCCESS
        } else {
            exit::REFUSED
        }
    })
}

/// Every reason the repository cannot meet what was asked of it.
fn verdicts(s: &RepoStatus, args: &StatusArgs) -> Vec<String> {
    let mut out = Vec::new();
    if s.backups == 0 {
        out.push("no complete backup".to_string());
    }
    if !s.gaps.is_empty() {
        out.push(format!("WAL missing: {}", s.gaps.join(", ")));
    }
    out.extend(
        s.problems
            .iter()
            .map(|p| format!("a restore to latest is refused: {p}")),
    );
    if let Some(max) = args.max_wal_age {
        match s.wal_age_seconds {
            Some(age) if age <= max.as_secs_f64() => {}
            Some(age) => out.push(format!(
                "newest WAL is {} old, more than --max-wal-age {}",
                human(age),
                human(max.as_secs_f64())
            )),
            None => out.push("no WAL archived".to_string()),
        }
    }
    if let Some(max) = args.max_backup_age {
        match s.backup_age_seconds {
            Some(age) if age <= max.as_secs_f64() => {}
            Some(age) => out.push(format!(
                "newest backup is {} old, more than --max-backup-age {}",
                human(age),
                human(max.as_secs_f64())
            )),
            None => {}
        }
    }
    out.dedup();
    out
}

fn human(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.max(0.0) as u64)).to_string()
}

fn size(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
}

fn print_text(s: &RepoStatus, unhealthy: &[String]) {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    println!(
        "repository {} (system identifier {}, PostgreSQL {})",
        s.repository, s.system_identifier, s.pg_major
    );
    println!("  backups:       {}", s.backups);
    for (label, b) in [("oldest", &s.oldest_backup), ("newest", &s.newest_backup)] {
        if let Some(b) = b {
            println!(
                "  {label} backup: {} (consistent {}, timeline {}, {})",
                b.id,
                time(b.stop_time),
                b.timeline,
                size(b.bytes_stored)
            );
        }
    }
    if let Some(age) = s.backup_age_seconds {
        println!("  backup age:    {}", human(age));
    }
    match &s.pitr_window {
        Some(w) => println!(
            "  PITR window:   {} .. {} on timeline {} ({})",
            time(w.earliest),
            w.latest.map_or("the newest backup".to_string(), time),
            w.timeline,
            human(w.seconds)
        ),
        None => println!("  PITR window:   none"),
    }
    for t in &s.timelines {
        println!(
            "  WAL timeline {}: {} .. {} ({} segments)",
            t.timeline, t.first, t.last, t.segments
        );
    }
    match (&s.newest_wal, s.newest_wal_time, s.wal_age_seconds) {
        (Some(name), Some(t), Some(age)) => println!(
            "  newest WAL:    {name} at {} ({} ago)",
            time(t),
            human(age)
        ),
        _ => println!("  newest WAL:    none"),
    }
    println!(
        "  gaps:          {}",
        if s.gaps.is_empty() {
            "none".to_string()
        } else {
            s.gaps.join(", ")
        }
    );
    println!(
        "  size:          {} ({} WAL)",
        size(s.repository_bytes),
        size(s.wal_bytes)
    );
    match &s.last_drill {
        Some(d) => println!(
            "  last drill:    {} {} (RTO {}, RPO {})",
            d.id,
            if d.passed { "passed" } else { "FAILED" },
            d.rto_seconds.map_or("-".into(), |v| format!("{v:.1} s")),
            d.rpo_seconds.map_or("-".into(), |v| format!("{v:.1} s"))
        ),
        None => println!("  last drill:    none"),
    }
    match s.last_verify {
        Some(t) => println!("  last verify:   sound at {}", t.to_rfc3339()),
        None => println!("  last verify:   never found sound (run `walship verify`)"),
    }
    if unhealthy.is_empty() {
        println!("  healthy");
    }
    for u in unhealthy {
        println!("  UNHEALTHY:     {u}");
    }
}
