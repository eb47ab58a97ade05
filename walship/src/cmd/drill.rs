//! `walship drill`: the front end of `walship_restore::drill`. Parses the flags, picks the
//! OS user the server runs as, runs the drill, prints the report, writes it to `--report`
//! and to `drills/<id>.json` in the repository, and maps the outcome to an exit code:
//! 0 passed, 3 failed (a check, a limit, a refused restore) or could not run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use walship_restore::drill::{self, DrillRequest, DrillTarget};
use walship_restore::owner::Owner;
use walship_restore::target;

use crate::context::Context;
use crate::exit;

/// Prove that the repository restores, and measure RTO and RPO: a restore drill.
///
/// Restores into a scratch directory (--to, default a fresh temporary directory), starts
/// Postgres of the backup's major on it (on a free loopback port, archiving off, reachable
/// only through its own socket directory), waits until recovery has ended and the server
/// accepts writes, runs the checks, stops it and removes the scratch directory (unless
/// --keep). Always checked: replay reached the LSN the plan said it must.
///
/// RTO: seconds from the start of the drill until the server accepted writes (parts: plan,
/// materialise, replay; the checks come after). RPO: for `latest`, when the archive last
/// received WAL minus the time of the last transaction replayed; for a time, the target
/// time minus it. The JSON report goes to stdout with --json, to --report FILE, and to
/// drills/<id>.json in the repository.
///
/// Exit codes: 0 passed; 3 failed (a check, --max-rto/--max-rpo, a restore the plan
/// refused, such as a gap in the WAL, named) or could not run; 2 bad flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("drill_target").args(["target", "target_time"])))]
pub struct DrillArgs {
    /// Write the repository's metrics to this file afterwards, atomically (for
    /// node_exporter's textfile collector, e.g. /var/lib/node_exporter/walship.prom).
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<std::path::PathBuf>,
    /// Recover to the end of the archive (default) or to a uniformly random moment of the
    /// PITR window (oldest backup to newest commit).
    #[arg(long, value_enum)]
    pub target: Option<DrillTargetArg>,
    /// Recover to this time: RFC 3339 or 'YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]' (no zone: UTC).
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Scratch directory (empty or absent; removed afterwards unless --keep).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Keep the scratch directory.
    #[arg(long)]
    pub keep: bool,
    /// Directory of the Postgres server binaries (default: /usr/lib/postgresql/<major>/bin,
    /// the test-deps cache, PATH).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// OS user the server runs as when walship runs as root (default: the owner of --to's
    /// nearest existing directory if not root, else `postgres`).
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Database role the checks connect as (default: the OS user's name, as initdb names
    /// the superuser).
    #[arg(long, value_name = "NAME")]
    pub db_user: Option<String>,
    /// SQL file: each statement must return one row whose first column is true.
    #[arg(long, value_name = "FILE")]
    pub check_sql: Option<PathBuf>,
    /// Check every btree index of every database with amcheck.
    #[arg(long)]
    pub amcheck: bool,
    /// How long the server may take to end recovery and accept writes.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = walship_common::config::parse_duration)]
    pub timeout: Duration,
    /// Fail when the RTO exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = walship_common::config::parse_duration)]
    pub max_rto: Option<Duration>,
    /// Fail when the achieved RPO exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = walship_common::config::parse_duration)]
    pub max_rpo: Option<Duration>,
    /// Write the JSON report to this file too.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// `--walship-path`, `--parallel`, as `walship restore` has them.
    #[command(flatten)]
    pub restore_command: super::restore::RestoreCommandArgs,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrillTargetArg {
    /// The end of the archive.
    Latest,
    /// A uniformly random moment of the PITR window.
    Random,
}

/// Runs `walship drill`.
pub fn run(ctx: Context, args: DrillArgs) -> u8 {
    let usage = |message: String| {
        eprintln!("walship drill: error: {message}");
        exit::USAGE
    };
    let target = match (&args.target_time, args.target) {
        (Some(t), _) => match target::parse_target_time(t) {
            Ok(t) => DrillTarget::Time(t),
            Err(e) => return usage(e.to_string()),
        },
        (None, Some(DrillTargetArg::Random)) => DrillTarget::Random,
        (None, _) => DrillTarget::Latest,
    };
    let to = args
        .to
        .as_ref()
        .map(|t| std::path::absolute(t).unwrap_or_else(|_| t.clone()));
    let (os_user, os_user_name) = match os_user(args.os_user.as_deref(), to.as_deref()) {
        Ok(found) => found,
        Err(message) => return usage(message),
    };
    let check_sql = match &args.check_sql {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(sql) => Some((path.display().to_string(), sql)),
            Err(e) => return usage(format!("read --check-sql {}: {e}", path.display())),
        },
        None => None,
    };
    let (walship, env, global_args) = match args.restore_command.parts(&ctx) {
        Ok(parts) => parts,
        Err(message) => return usage(message),
    };
    let request = DrillRequest {
        target,
        to,
        keep: args.keep,
        pg_bin: args.pg_bin.clone(),
        os_user,
        db_user: args.db_user.clone().unwrap_or(os_user_name),
        check_sql,
        amcheck: args.amcheck,
        timeout: args.timeout,
        max_rto: args.max_rto,
        max_rpo: args.max_rpo,
        walship,
        global_args,
        env,
        parallel: ctx.config.restore.parallel,
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let mut figures = serde_json::Map::new();
        let started = chrono::Utc::now();
        let report = match drill::run(&repo, &request).await {
            Ok(report) => report,
            // A drill that could not run (no binaries, no window, storage failing) is a
            // failed drill: reported, stored and exported as one, so that monitoring sees it.
            Err(e) => {
                ctx.fail(exit::FAILED, &e);
                drill::DrillReport::could_not_run(repo.location(), started, e.to_string())
            }
        };
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        let mut code = if report.passed {
            exit::SUCCESS
        } else {
            exit::FAILED
        };
        if let Some(path) = &args.report
            && let Err(e) = walship_common::fsutil::write_file_atomic(path, json.as_bytes())
        {
            code = ctx.fail(exit::FAILED, &e);
        }
        match report.store(&repo).await {
            Ok(key) => tracing::info!("drill report stored as {key}"),
            Err(e) => code = ctx.fail(exit::FAILED, &e),
        }
        if args.json {
            println!("{json}");
        } else {
            print_summary(&report);
        }
        for (name, value) in [
            ("drill", serde_json::json!(report.id)),
            ("passed", serde_json::json!(report.passed)),
            ("target", serde_json::json!(report.target)),
            ("backup", serde_json::json!(report.backup)),
            ("rto_seconds", serde_json::json!(report.rto_seconds)),
            ("rpo_seconds", serde_json::json!(report.rpo_seconds)),
            ("bytes_restored", serde_json::json!(report.bytes_restored)),
        ] {
            figures.insert(name.into(), value);
        }
        super::audit::record(&ctx, &repo, "drill", code, figures).await;
        // The metrics are written whatever the outcome (a failed drill is a metric too); a
        // failure to write them is reported and leaves the exit code alone.
        if let Some(path) = &args.metrics_textfile {
            super::exporter::write_textfile(&ctx, &repo, path).await;
        }
        code
    })
}

/// The human summary.
fn print_summary(report: &drill::DrillReport) {
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
    println!(
        "drill {}: {}",
        report.id,
        if report.passed { "PASSED" } else { "FAILED" }
    );
    println!("  target:   {} ({})", report.target, report.target_kind);
    println!(
        "  backup:   {} (PostgreSQL {})",
        report.backup.as_deref().unwrap_or("-"),
        report.pg_major
    );
    println!(
        "  RTO:      {} (plan {:.1} s, materialise {:.1} s, replay {:.1} s; checks {:.1} s after)",
        secs(report.rto_seconds),
        report.plan_seconds,
        report.materialise_seconds,
        report.replay_seconds,
        report.checks_seconds
    );
    println!("  RPO:      {}", secs(report.rpo_seconds));
    for check in &report.checks {
        println!(
            "  {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    for failure in &report.failures {
        println!("  failure:  {failure}");
    }
}

/// The OS user the server runs as: `None` when not root (this process's user); as root,
/// `--os-user`, else the owner of the nearest existing directory of `to` if it is not root,
/// else `postgres`. Also returns the user's name (the default database role).
fn os_user(
    given: Option<&str>,
    to: Option<&std::path::Path>,
) -> Result<(Option<Owner>, String), String> {
    use nix::unistd::{Uid, User, geteuid};
    let name_of = |uid: u32| {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name)
    };
    if !geteuid().is_root() {
        if given.is_some() {
            return Err("--os-user needs root; the server runs as this user".into());
        }
        return Ok((None, name_of(geteuid().as_raw())));
    }
    if let Some(user) = given {
        let owner = Owner::parse(user).map_err(|e| e.to_string())?;
        return Ok((Some(owner), name_of(owner.uid)));
    }
    if let Some(dir) = to {
        use std::os::unix::fs::MetadataExt;
        let existing = dir.ancestors().find_map(|d| std::fs::metadata(d).ok());
        if let Some(meta) = existing.filter(|m| m.uid() != 0) {
            let owner = Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            };
            return Ok((Some(owner), name_of(owner.uid)));
        }
    }
    let owner = Owner::parse("postgres").map_err(|_| {
        "running as root: Postgres refuses to run as root; pass --os-user USER".to_string()
    })?;
    Ok((Some(owner), "postgres".to_string()))
}
