//! `walship expire`: apply the retention policy (`[retention]`) — print the plan, then remove
//! the backups and WAL no rule keeps, unless `--dry-run`.

use chrono::{DateTime, Utc};
use clap::Args;
use walship_common::config::Options;
use walship_common::repo::Repository;
use walship_common::retention::lock::LockReport;
use walship_common::retention::{
    self, ExpireReport, Inventory, Plan, PlanInputs, Policy, read_inventory,
};

use super::list::open_catalog;
use super::show;
use crate::context::Context;
use crate::exit;

/// Arguments of `walship expire` (its help text is on `Command::Expire` in `cli.rs`).
#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Print the plan and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Evaluate the policy as if it were TIME (RFC 3339, `2026-12-01 00:00:00+00`, or a
    /// date). Removing with a TIME later than the clock also needs --force.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    /// Allow removing with --now later than the clock.
    #[arg(long)]
    pub force: bool,
    /// Print the plan and what was removed as JSON.
    #[arg(long)]
    pub json: bool,
    /// Every moment of the last DURATION stays restorable (e.g. 30d)
    /// [config: retention.pitr_window; default: none]
    #[arg(long, value_name = "DURATION")]
    pub pitr_window: Option<String>,
    /// Keep the newest backup of each of the N most recent days that have one
    /// [config: retention.daily; default: 0]
    #[arg(long, value_name = "N")]
    pub daily: Option<String>,
    /// Keep the newest backup of each of the N most recent ISO weeks
    /// [config: retention.weekly; default: 0]
    #[arg(long, value_name = "N")]
    pub weekly: Option<String>,
    /// Keep the newest backup of each of the N most recent months
    /// [config: retention.monthly; default: 0]
    #[arg(long, value_name = "N")]
    pub monthly: Option<String>,
    /// Keep the newest backup of each of the N most recent years
    /// [config: retention.yearly; default: 0]
    #[arg(long, value_name = "N")]
    pub yearly: Option<String>,
    /// Never fewer complete backups than N [config: retention.min_backups; default: 1]
    #[arg(long, value_name = "N")]
    pub min_backups: Option<String>,
    /// Where calendar days begin: UTC, +HH:MM or a zone name like Europe/Paris
    /// [config: retention.timezone; default: UTC]
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
}

impl ExpireArgs {
    /// The configuration keys these flags set.
    pub fn options(&self) -> Options {
        Options {
            retention_pitr_window: self.pitr_window.clone(),
            retention_daily: self.daily.clone(),
            retention_weekly: self.weekly.clone(),
            retention_monthly: self.monthly.clone(),
            retention_yearly: self.yearly.clone(),
            retention_min_backups: self.min_backups.clone(),
            retention_timezone: self.timezone.clone(),
            ..Options::default()
        }
    }
}

/// Parses `--now`: RFC 3339, `YYYY-MM-DD HH:MM:SS[+zone]` (no zone: UTC), or `YYYY-MM-DD`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%#z", "%Y-%m-%dT%H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "expected a time like 2026-12-01T00:00:00Z, 2026-12-01 00:00:00+00 or 2026-12-01, not {text:?}"
    ))
}

/// Runs `walship expire`.
pub fn run(ctx: Context, args: ExpireArgs) -> u8 {
    let policy = ctx.config.retention.clone();
    if !policy.is_set() {
        eprintln!(
            "walship expire: no retention policy is configured, so nothing is removed; set at least one of {} (in [retention] of the config file, as WALSHIP_RETENTION_* or as flags)",
            Policy::KEYS
        );
        return exit::USAGE;
    }
    let clock = Utc::now();
    let now = args.now.unwrap_or(clock);
    if now > clock + chrono::Duration::minutes(1) && !args.dry_run && !args.force {
        eprintln!(
            "walship expire: --now {now} is later than the clock ({clock}); removing as of a future time needs --force (or use --dry-run to see the plan)"
        );
        return exit::USAGE;
    }
    ctx.block_on(async {
        let repo = match open_catalog(&ctx).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        let mut figures = serde_json::Map::new();
        figures.insert("now".into(), now.to_rfc3339().into());
        figures.insert("dry_run".into(), args.dry_run.into());
        let code = match expire(&repo, &policy, now, args.dry_run).await {
            Ok((inventory, plan, report)) => {
                // Under Object Lock: extend what the policy now keeps longer (after the
                // removals, which never need it; a failure fails the run).
                let locks =
                    match lock_extensions(&repo, &inventory, &plan, &policy, args.dry_run).await {
                        Ok(locks) => locks,
                        Err(e) => {
                            print(&inventory, &plan, report.as_ref(), args.json, None);
                            return ctx.fail(exit::FAILED, &e);
                        }
                    };
                print(
                    &inventory,
                    &plan,
                    report.as_ref(),
                    args.json,
                    locks.as_ref(),
                );
                if let Some(l) = &locks {
                    figures.insert("locks_extended".into(), l.objects_extended.into());
                }
                if let Some(r) = &report {
                    let removed: Vec<String> =
                        r.backups_removed.iter().map(|id| id.to_string()).collect();
                    figures.insert("backups_removed".into(), removed.into());
                    figures.insert("wal_objects_removed".into(), r.wal_objects_removed.into());
                    figures.insert("bytes_removed".into(), r.bytes_removed.into());
                    figures.insert("refused".into(), r.refused.len().into());
                }
                exit::SUCCESS
            }
            Err(e) => ctx.fail(exit::FAILED, e.as_ref()),
        };
        // A dry run changes nothing: no record of it.
        if !args.dry_run {
            super::audit::record(&ctx, &repo, "expire", code, figures).await;
        }
        code
    })
}

/// Reads the repository, plans and, unless `dry_run`, removes. Shared with `backup` when
/// `[backup] expire = true`.
pub async fn expire(
    repo: &Repository,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<(Inventory, Plan, Option<ExpireReport>), Box<dyn std::error::Error>> {
    let inventory = read_inventory(repo).await?;
    let backups = inventory.summaries();
    let wal = inventory.wal_objects();
    let plan = retention::plan(PlanInputs {
        backups: &backups,
        wal: &wal,
        histories: &inventory.histories,
        seg_size: inventory.seg_size,
        policy,
        now,
    });
    let report = if dry_run {
        None
    } else {
        Some(retention::execute(repo, &inventory, &plan).await?)
    };
    Ok((inventory, plan, report))
}

/// Under `s3.object_lock`: the lock extensions the plan calls for, carried out unless
/// `dry_run` (`retention::lock`); `None` without Object Lock.
pub(super) async fn lock_extensions(
    repo: &Repository,
    inventory: &Inventory,
    plan: &Plan,
    policy: &Policy,
    dry_run: bool,
) -> Result<Option<LockReport>, walship_common::storage::StorageError> {
    let Some(lock) = repo.object_lock() else {
        return Ok(None);
    };
    if dry_run {
        return Ok(Some(LockReport {
            extensions: retention::lock::extensions(plan, inventory, policy, lock),
            ..LockReport::default()
        }));
    }
    retention::lock::extend_locks(repo, inventory, plan, policy, lock)
        .await
        .map(Some)
}

fn print(
    inventory: &Inventory,
    plan: &Plan,
    report: Option<&ExpireReport>,
    json: bool,
    locks: Option<&LockReport>,
) {
    let leftovers: Vec<_> = inventory.leftovers().iter().map(|i| i.id).collect();
    if json {
        let value = serde_json::json!({
            "plan": plan,
            "leftovers": leftovers,
            "dry_run": report.is_none(),
            "report": report,
            "locks": locks,
        });
        println!("{value}");
        return;
    }
    println!(
        "retention as of {}",
        plan.now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for (tli, pitr) in &plan.pitr_timelines {
        let anchor = pitr.anchor.map_or("-".into(), |a| a.to_string());
        let start = pitr.window_start.format("%Y-%m-%d %H:%M:%S");
        if pitr.covered {
            println!("PITR window on timeline {tli} from {start} restores from backup {anchor}");
        } else {
            println!(
                "PITR window on timeline {tli} from {start} is not covered yet: its oldest backup, {anchor}, ended after it"
            );
        }
    }
    for tli in &plan.unknown_timelines {
        println!(
            "timeline {tli} has WAL or backups but no {:08X}.history: its ancestry is unknown, so no WAL is removed",
            tli.0
        );
    }
    let mut rows = Vec::new();
    for k in &plan.kept {
        let rules: Vec<&str> = k.rules.iter().map(|r| r.as_str()).collect();
        rows.push([k.id.to_string(), "keep".into(), rules.join(",")]);
    }
    for r in &plan.removed {
        rows.push([r.id.to_string(), "remove".into(), show::size(r.bytes)]);
    }
    rows.sort();
    show::print_table(["BACKUP", "ACTION", "RULES / SIZE"], &rows);
    for range in &plan.wal_ranges {
        println!(
            "WAL timeline {}: remove {}..{} ({} objects, {})",
            range.timeline,
            range.first,
            range.last,
            range.objects,
            show::size(range.bytes)
        );
    }
    for id in &leftovers {
        println!("leftover of an interrupted backup or expire: {id} (removed)");
    }
    println!(
        "plan: keep {} backups, remove {} backups ({}) and {} WAL objects ({})",
        plan.kept.len(),
        plan.removed.len(),
        show::size(plan.backup_bytes),
        plan.wal_removed.len(),
        show::size(plan.wal_bytes)
    );
    if let Some(locks) = locks {
        for ext in &locks.extensions {
            let rules: Vec<&str> = ext.rules.iter().map(|r| r.as_str()).collect();
            println!(
                "lock of backup {} and its WAL extended to {} ({})",
                ext.id,
                ext.until.format("%Y-%m-%d %H:%M:%S UTC"),
                rules.join(",")
            );
        }
        if report.is_some() {
            println!(
                "object locks: {} extended, {} already long enough",
                locks.objects_extended, locks.objects_already_locked
            );
        }
    }
    match report {
        None => println!("dry run: nothing was removed"),
        Some(r) => {
            for refusal in &r.refused {
                println!(
                    "refused by the storage, skipped: {} ({})",
                    refusal.key.as_str(),
                    refusal.reason
                );
            }
            for id in &r.backups_kept_after_all {
                println!(
                    "kept after all (pinned meanwhile or its manifest could not be deleted): {id}"
                );
            }
            println!(
                "removed {} backups, {} leftovers, {} WAL objects: {} objects, {}; {} refused",
                r.backups_removed.len(),
                r.leftovers_removed.len(),
                r.wal_objects_removed,
                r.objects_removed,
                show::size(r.bytes_removed),
                r.refused.len()
            );
        }
    }
}
