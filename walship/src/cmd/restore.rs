//! `walship restore --to DIR`: the front end of `walship-restore`. Parses the target,
//! prints the plan (`--dry-run`) or restores, and maps the outcome to an exit code:
//! 0 done (or a dry run that can proceed), 4 refused before any data moved, 3 failed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{ArgGroup, Args, ValueEnum};
use walship_common::catalog::BackupId;
use walship_common::pg::TimelineId;
use walship_restore::owner::Owner;
use walship_restore::paths::TablespaceDirs;
use walship_restore::target;
use walship_restore::{
    MaterialiseOptions, PlanRequest, RecoveryTarget, RestorePlan, RestoreRequest, TargetAction,
    TargetSpec, TimelineChoice,
};

use super::as_of::AsOfArg;
use super::show;
use crate::context::Context;
use crate::exit;

/// Restore a data directory to a point in time.
///
/// Chooses the newest backup that can reach the target, checks that the archive holds every
/// WAL segment up to it and that the WAL really reaches it (a commit after the target time,
/// the restore point, the transaction's commit), that the manifest holds together and that
/// every target directory may be written (no running server, only data directories cleared,
/// every tablespace placed with --tablespace or --tablespace-in-place), and refuses before
/// writing anything if not (--dry-run shows the same plan and refusals). Then builds the
/// directory, writes recovery.signal and a walship block in postgresql.auto.conf with
/// restore_command = '<walship> fetch %f %p', and pg_control last. Run as root, files go to
/// the owner of each target directory (or --owner). Start Postgres on the directory to
/// recover.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target_kind").required(true).args(["target_time", "target_lsn", "target_xid", "target_name", "target", "latest"])))]
pub struct RestoreArgs {
    /// The data directory to build: empty or absent, or, with --force or --delta, a data
    /// directory no running server uses.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Recover to this time: RFC 3339 or 'YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]' (no zone: UTC).
    #[arg(long, value_name = "TIME", visible_alias = "pitr")]
    pub target_time: Option<String>,
    /// Recover to this WAL location (X/X).
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Recover to the commit (or abort) of this transaction.
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<String>,
    /// Recover to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
    /// Recover to a point named by a keyword.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// The same as `--target latest`: replay everything the archive holds.
    #[arg(long)]
    pub latest: bool,
    /// Timeline to recover along: a number, or `latest` (default).
    #[arg(long, value_name = "TLI")]
    pub target_timeline: Option<String>,
    /// Stop just before the target instead of just after it.
    #[arg(long)]
    pub target_exclusive: bool,
    /// For --target-time: stop at the LSN of the first commit after the time, so replay
    /// stops on the same record whatever the server's time zone.
    #[arg(long)]
    pub resolve_lsn: bool,
    /// Use this backup instead of the newest that can reach the target.
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// What the server does at the target.
    #[arg(long, value_enum, default_value = "promote")]
    pub target_action: ActionArg,
    /// Write standby.signal instead of recovery.signal.
    #[arg(long)]
    pub standby: bool,
    /// Restore tablespace OID into DIR (repeatable). Every tablespace needs one, unless
    /// --tablespace-in-place.
    #[arg(long, value_name = "OID=DIR")]
    pub tablespace: Vec<String>,
    /// Restore the tablespaces not named by --tablespace at the locations the backup
    /// recorded (the original server's paths, outside --to).
    #[arg(long)]
    pub tablespace_in_place: bool,
    /// Keep files whose size and crc32c already match; fetch the rest; remove the rest.
    /// The directory must be a data directory of this cluster.
    #[arg(long, conflicts_with = "force")]
    pub delta: bool,
    /// Replace the contents of a non-empty data directory (never any other directory).
    #[arg(long)]
    pub force: bool,
    /// Owner of every restored file, USER[:GROUP]. By default a restore run as root gives
    /// each file to the owner of its target directory (--to or its nearest existing parent;
    /// an existing tablespace directory; else the data directory's owner).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan or the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// `--walship-path`, `--parallel`.
    #[command(flatten)]
    pub restore_command: RestoreCommandArgs,
    // The restore_command written passes the same --as-of to walship fetch, so that
    // recovery reads the same view.
    #[command(flatten)]
    pub as_of: AsOfArg,
}

/// The flags of the restore that `walship restore` and `walship drill` both run: the walship
/// the restored server's `restore_command` runs, and how many bundles are fetched at once.
#[derive(Debug, Args)]
pub struct RestoreCommandArgs {
    /// The walship binary restore_command runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub walship_path: Option<PathBuf>,
    /// Bundles downloaded at once [config: restore.parallel; default: 4]
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

impl RestoreCommandArgs {
    /// `--parallel` as the configuration layer's `restore.parallel` option.
    pub(crate) fn parallel_option(&self) -> Option<String> {
        self.parallel.map(|n| n.to_string())
    }

    /// [`restore_command_parts`] for `--walship-path`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &self,
        ctx: &Context,
    ) -> Result<(PathBuf, Vec<(String, String)>, Vec<String>), String> {
        restore_command_parts(ctx, self.walship_path.clone())
    }
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// The backup's consistency point (recovery_target = 'immediate').
    Immediate,
    /// The end of the archive: replay everything it holds.
    Latest,
}

/// `--target-action`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    /// End recovery and accept connections.
    Promote,
    /// Pause at the target.
    Pause,
    /// Shut down at the target.
    Shutdown,
}

fn spec(args: &RestoreArgs) -> Result<TargetSpec, String> {
    let target = if let Some(t) = &args.target_time {
        RecoveryTarget::Time(target::parse_target_time(t).map_err(|e| e.to_string())?)
    } else if let Some(lsn) = &args.target_lsn {
        RecoveryTarget::Lsn(
            lsn.parse()
                .map_err(|e: walship_common::lsn::LsnParseError| e.to_string())?,
        )
    } else if let Some(xid) = &args.target_xid {
        RecoveryTarget::Xid(target::parse_xid(xid).map_err(|e| e.to_string())?)
    } else if let Some(name) = &args.target_name {
        RecoveryTarget::Name(target::parse_name(name).map_err(|e| e.to_string())?)
    } else {
        match args.target {
            Some(TargetArg::Immediate) => RecoveryTarget::Immediate,
            // `--latest`, or `--target latest`.
            Some(TargetArg::Latest) | None => RecoveryTarget::Latest,
        }
    };
    let timeline = match args.target_timeline.as_deref() {
        None | Some("latest") => TimelineChoice::Latest,
        Some(n) => TimelineChoice::Id(TimelineId(n.parse().ok().filter(|n| *n > 0).ok_or_else(
            || format!("invalid --target-timeline {n:?}: expected latest or a timeline number"),
        )?)),
    };
    let backup = match &args.backup {
        Some(id) => Some(id.parse::<BackupId>().map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(TargetSpec {
        target,
        timeline,
        exclusive: args.target_exclusive,
        backup,
    })
}

fn tablespaces(args: &RestoreArgs) -> Result<TablespaceDirs, String> {
    let mut out = TablespaceDirs::new();
    for item in &args.tablespace {
        let parsed = item
            .split_once('=')
            .and_then(|(oid, dir)| Some((oid.parse::<u32>().ok()?, PathBuf::from(dir))))
            .filter(|(_, dir)| dir.is_absolute());
        let (oid, dir) = parsed
            .ok_or_else(|| format!("invalid --tablespace {item:?}: expected OID=/absolute/dir"))?;
        out.insert(oid, dir);
    }
    Ok(out)
}

/// Runs `walship restore`.
pub fn run(ctx: Context, args: RestoreArgs) -> u8 {
    let usage = |message: String| {
        eprintln!("walship restore: error: {message}");
        exit::USAGE
    };
    let spec = match spec(&args) {
        Ok(spec) => spec,
        Err(message) => return usage(message),
    };
    let tablespaces = match tablespaces(&args) {
        Ok(t) => t,
        Err(message) => return usage(message),
    };
    let owner = match args.owner.as_deref().map(Owner::parse).transpose() {
        Ok(owner) => owner,
        Err(e) => return usage(e.to_string()),
    };
    // Only root can give files away: refuse now rather than fail half way.
    let euid = nix::unistd::geteuid();
    if let Some(o) = owner.filter(|o| !euid.is_root() && o.uid != euid.as_raw()) {
        return usage(format!(
            "--owner {o} needs root: this restore runs as uid {euid}, and its files are that user's"
        ));
    }
    let (walship, env, global_args) = match args.restore_command.parts(&ctx) {
        Ok(parts) => parts,
        Err(message) => return usage(message),
    };
    let to = std::path::absolute(&args.to).unwrap_or_else(|_| args.to.clone());
    let materialise = MaterialiseOptions {
        force: args.force,
        delta: args.delta,
        tablespaces,
        tablespace_in_place: args.tablespace_in_place,
        owner,
        parallel: ctx.config.restore.parallel.max(1),
        recovery: None,
        chain_below: Vec::new(),
    };
    let plan_request = PlanRequest {
        spec,
        resolve_lsn: args.resolve_lsn,
        placement: args.dry_run.then(|| materialise.placement_request(&to)),
    };
    ctx.block_on(async {
        let repo = match open_reachable(&ctx, args.as_of.as_of).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        if args.dry_run {
            return match walship_restore::plan::plan(&repo, &plan_request).await {
                Ok(plan) => {
                    print_plan(&plan, args.json);
                    if plan.is_ok() { exit::SUCCESS } else { exit::REFUSED }
                }
                Err(e) => ctx.fail(exit::FAILED, &e),
            };
        }
        let request = RestoreRequest {
            plan: plan_request,
            to: to.clone(),
            materialise,
            walship,
            global_args,
            fetch_args: args.as_of.words(),
            env,
            action: match args.target_action {
                ActionArg::Promote => TargetAction::Promote,
                ActionArg::Pause => TargetAction::Pause,
                ActionArg::Shutdown => TargetAction::Shutdown,
            },
            standby: args.standby,
        };
        let started = std::time::Instant::now();
        let mut figures = serde_json::Map::new();
        figures.insert("target".into(), request.plan.spec.target.to_string().into());
        figures.insert("data_directory".into(), to.display().to_string().into());
        let code = match walship_restore::restore(&repo, &request, progress(!args.json)).await {
            Ok(outcome) => {
                if std::io::stderr().is_terminal() && !args.json {
                    eprintln!();
                }
                let s = &outcome.summary;
                if let Some(b) = &outcome.plan.backup {
                    figures.insert("backup".into(), b.id.to_string().into());
                }
                figures.insert("bytes_written".into(), s.bytes_written.into());
                if args.json {
                    let json = serde_json::json!({
                        "plan": outcome.plan,
                        "summary": s,
                        "data_directory": to,
                        "duration_ms": started.elapsed().as_millis() as u64,
                    });
                    println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
                } else {
                    print_plan(&outcome.plan, false);
                    println!(
                        "restored {} into {} in {:.1} s: {} files written ({}), {} kept, {} removed, {} bundles fetched",
                        outcome.plan.backup.as_ref().map_or(String::new(), |b| b.id.to_string()),
                        to.display(),
                        started.elapsed().as_secs_f64(),
                        s.files_written,
                        show::size(s.bytes_written),
                        s.files_kept,
                        s.entries_removed,
                        s.bundles_fetched,
                    );
                    println!("start Postgres on {} to recover to {}", to.display(), outcome.plan.target);
                }
                exit::SUCCESS
            }
            Err(e) if e.is_refusal() => ctx.fail(exit::REFUSED, &e),
            Err(e) => ctx.fail(exit::FAILED, &e),
        };
        figures.insert("duration_ms".into(), (started.elapsed().as_millis() as u64).into());
        args.as_of
            .record_audit(&ctx, &repo, "restore", code, figures)
            .await;
        code
    })
}

/// The repository to restore from: the configured one, or, when it cannot be reached (its
/// `walship.json` cannot be read for any reason but absence), the first fallback repository
/// (`fallback_repos`) that can. Errors are reported; the exit code is returned.
async fn open_reachable(
    ctx: &Context,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<walship_common::repo::Repository, u8> {
    let repo = ctx
        .open_repository_as_of(as_of)
        .await
        .map_err(|e| ctx.fail(exit::FAILED, &e))?;
    let primary_error = match repo.require_identity().await {
        Ok(_) => return Ok(repo),
        Err(e) if e.is_not_found() || ctx.config.fallback_repos.is_empty() => {
            return Err(ctx.fail(exit::FAILED, &e));
        }
        Err(e) => e,
    };
    let mut n = 0;
    while let Some(opened) = ctx.open_fallback(n, as_of).await {
        n += 1;
        let Ok(fallback) = opened else { continue };
        match fallback.require_identity().await {
            Ok(_) => {
                eprintln!(
                    "walship restore: warning: {} cannot be read ({primary_error}); restoring from the fallback repository {}",
                    repo.location(),
                    fallback.location()
                );
                return Ok(fallback);
            }
            Err(e) => eprintln!(
                "walship restore: warning: the fallback repository {} cannot be read either: {e}",
                fallback.location()
            ),
        }
    }
    Err(ctx.fail(exit::FAILED, &primary_error))
}

/// What the restored server's `restore_command` is made of: the walship binary (this one
/// unless `walship_path`), the settings it carries from this environment, and the global
/// arguments (`--config`, `--repo`) that make it read this repository.
#[allow(clippy::type_complexity)]
fn restore_command_parts(
    ctx: &Context,
    walship_path: Option<PathBuf>,
) -> Result<(PathBuf, Vec<(String, String)>, Vec<String>), String> {
    let walship = match walship_path.map(Ok).unwrap_or_else(std::env::current_exe) {
        Ok(path) => std::path::absolute(&path).unwrap_or(path),
        Err(e) => {
            return Err(format!(
                "cannot tell where this walship binary is ({e}); pass --walship-path"
            ));
        }
    };
    // What restore_command carries from this environment; refused before anything moves.
    let env =
        walship_restore::recovery_conf::carried_env(std::env::vars_os().filter_map(
            |(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)),
        ))
        .map_err(|e| e.to_string())?;
    let mut global_args = Vec::new();
    if let Some(config) = &ctx.config.config_file {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.clone());
        global_args.extend([
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ]);
    }
    global_args.extend(["--repo".to_string(), ctx.config.repo.clone()]);
    // Fallbacks however they were set (flag, environment, file): the restored server reads
    // them even if the environment it runs in differs.
    for fallback in &ctx.config.fallback_repos {
        global_args.extend(["--fallback-repo".to_string(), fallback.clone()]);
    }
    Ok((walship, env, global_args))
}

/// A progress line on stderr when it is a terminal.
fn progress(enabled: bool) -> walship_restore::ProgressFn {
    let done = Arc::new(AtomicU64::new(0));
    let shown = Arc::new(AtomicU64::new(0));
    let terminal = enabled && std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    Arc::new(move |n| {
        let total = done.fetch_add(n, Ordering::Relaxed) + n;
        let mib = total >> 20;
        if terminal && shown.swap(mib, Ordering::Relaxed) != mib {
            let line = show::progress_line(total, 0, started.elapsed());
            eprint!("\rrestored {line}          ");
        }
    })
}

/// Prints the plan as text or JSON on stdout.
fn print_plan(plan: &RestorePlan, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(plan).unwrap_or_default());
        return;
    }
    println!("restore plan");
    println!(
        "  repository:     {} (system identifier {})",
        plan.repository, plan.system_identifier
    );
    println!(
        "  target:         {}{}",
        plan.target,
        if plan.inclusive { "" } else { ", exclusive" }
    );
    println!("  timeline:       {}", plan.target_timeline);
    match &plan.backup {
        Some(b) => println!(
            "  backup:         {} (timeline {}, WAL from {}, consistent at {} / {}), {} entries, {} stored",
            b.id,
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            b.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
            b.files,
            show::size(b.bytes_stored)
        ),
        None => println!("  backup:         none usable"),
    }
    for m in &plan.chain {
        let kind = match m.parent {
            Some(parent) => format!("incremental of {parent}"),
            None => "full".to_string(),
        };
        println!(
            "  chain member:   {} ({kind}): reads {} bundles, {} stored",
            m.id,
            m.bundles,
            show::size(m.bytes_stored)
        );
    }
    for r in &plan.wal_ranges {
        println!(
            "  WAL timeline {}: {} .. {} ({} segments)",
            r.timeline, r.first, r.last, r.segments
        );
    }
    println!(
        "  to fetch:       {} objects, {}",
        plan.fetch_objects,
        show::size(plan.fetch_bytes)
    );
    if let Some(stop) = &plan.stop_record {
        let mut line = format!("  stops at:       record at LSN {}", stop.lsn);
        if let Some(xid) = stop.xid {
            line.push_str(&format!(", transaction {xid}"));
        }
        if let Some(time) = stop.time {
            line.push_str(&format!(", {}", time.format("%Y-%m-%d %H:%M:%S%.6f UTC")));
        }
        println!("{line}");
    }
    if let Some(lsn) = plan.resolved_lsn {
        println!("  resolved to:    recovery_target_lsn {lsn} (exclusive)");
    }
    println!(
        "  reachable:      {}",
        if plan.reachable { "yes" } else { "no" }
    );
    match &plan.last_commit {
        Some(c) => println!(
            "  recovery point: last commit at {} (LSN {}); valid WAL ends at {}",
            c.time.map_or("?".to_string(), |t| t
                .format("%Y-%m-%d %H:%M:%S%.6f UTC")
                .to_string()),
            c.lsn,
            plan.wal_end
        ),
        None => println!(
            "  recovery point: no commit in the archive after the backup; valid WAL ends at {}",
            plan.wal_end
        ),
    }
    if let Some(placement) = &plan.placement {
        let owned =
            |owner: Option<Owner>| owner.map_or(String::new(), |o| format!(", owned by {o}"));
        println!(
            "  data directory: {}{}",
            placement.data_directory.display(),
            owned(placement.owner)
        );
        for ts in &placement.tablespaces {
            let how = if ts.relocated {
                format!("relocated from {}", ts.backup_location)
            } else {
                "its location in the backup".to_string()
            };
            println!(
                "  tablespace {}: {} ({how}{})",
                ts.oid,
                ts.directory.display(),
                owned(ts.owner)
            );
        }
    }
    for skipped in &plan.skipped_backups {
        println!(
            "  skipped:        backup {}: {}",
            skipped.id, skipped.reason
        );
    }
    if plan.missing_segments.is_empty() {
        println!("  missing:        none");
    } else {
        println!("  missing:        {}", plan.missing_segments.join(", "));
    }
    for p in &plan.problems {
        println!("  PROBLEM:        {}", p.message);
    }
}

#[cfg(test)]
mod tests {
    use super::spec;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::RestoreArgs, clap::Error> {
        let argv = ["walship", "restore", "--to", "/tmp/restored"];
        let cli = Cli::try_parse_from(argv.iter().chain(args))?;
        match cli.command {
            Command::Restore(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Issue 19, item 10: the DR runbooks say `restore --latest` and `restore --pitr TIME`.
    #[test]
    fn runbook_spellings_mean_the_same_targets() {
        let latest = spec(&parse(&["--latest"]).unwrap()).unwrap();
        assert_eq!(
            latest,
            spec(&parse(&["--target", "latest"]).unwrap()).unwrap()
        );
        let time = "2026-11-22 14:03:00+00";
        let pitr = spec(&parse(&["--pitr", time]).unwrap()).unwrap();
        assert_eq!(
            pitr,
            spec(&parse(&["--target-time", time]).unwrap()).unwrap()
        );
        let backup = spec(&parse(&["--latest", "--backup", "20261122T140300Z"]).unwrap()).unwrap();
        assert!(backup.backup.is_some());
    }

    /// The aliases are targets like the others: one target only, and one is required.
    #[test]
    fn runbook_spellings_conflict_with_other_targets() {
        assert!(parse(&["--latest", "--target-time", "2026-11-22 14:03:00"]).is_err());
        assert!(parse(&["--pitr", "2026-11-22 14:03:00", "--target-lsn", "0/3000000"]).is_err());
        assert!(parse(&["--latest", "--target", "immediate"]).is_err());
        assert!(parse(&[]).is_err());
    }
}
