//! `walship audit`: list the audit trail, or check its chain (`--verify`); and [`record`],
//! which every audited command calls once with its outcome.

use clap::Args;
use walship_common::audit::{self, AuditRecord};
use walship_common::repo::Repository;

use crate::context::Context;
use crate::exit;

/// List the audit trail: one record per backup, restore and drill, hash-chained.
///
/// Each operation appends a create-only record under audit/<YYYY>/ in the repository: time,
/// operation, arguments (secrets removed), OS user, host, walship version, result, figures,
/// and the sha256 of the record before it. --verify checks the chain and names every record
/// that was removed or altered (the removal of the newest records cannot be seen from the
/// chain alone).
///
/// Exit codes: 0 listed, or the chain verified; 4 the chain is broken (each break named);
/// 3 the repository could not be read; 2 bad flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records at or after this time: RFC 3339 or 'YYYY-MM-DD HH:MM:SS' (no zone: UTC).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Check the chain of every record (not only those --since selects).
    #[arg(long)]
    pub verify: bool,
    /// Print records (and problems) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `walship audit`.
pub fn run(ctx: Context, args: AuditArgs) -> u8 {
    let since = match args
        .since
        .as_deref()
        .map(walship_restore::target::parse_target_time)
    {
        Some(Ok(t)) => Some(t.time),
        Some(Err(e)) => {
            eprintln!("walship audit: error: {e}");
            return exit::USAGE;
        }
        None => None,
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let records = match audit::list(&repo).await {
            Ok(records) => records,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let problems = if args.verify {
            audit::verify(&records)
        } else {
            Vec::new()
        };
        let shown: Vec<_> = records
            .iter()
            .filter(|r| match (&r.record, since) {
                (Ok(rec), Some(since)) => rec.time >= since,
                _ => true,
            })
            .collect();
        if args.json {
            let records: Vec<serde_json::Value> = shown
                .iter()
                .map(|r| match &r.record {
                    Ok(rec) => serde_json::json!({"key": r.key, "sha256": r.sha256, "record": rec}),
                    Err(e) => serde_json::json!({"key": r.key, "sha256": r.sha256, "error": e}),
                })
                .collect();
            let mut out = serde_json::json!({ "records": records });
            if args.verify {
                out["verified"] = problems.is_empty().into();
                out["problems"] = serde_json::to_value(&problems).unwrap_or_default();
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            for r in &shown {
                match &r.record {
                    Ok(rec) => println!(
                        "{} {:<8} {:<6} {}@{} {}",
                        rec.time.format("%Y-%m-%d %H:%M:%S UTC"),
                        rec.operation,
                        rec.result,
                        rec.os_user,
                        rec.host,
                        serde_json::Value::Object(rec.figures.clone())
                    ),
                    Err(e) => println!("{}: unreadable: {e}", r.key),
                }
            }
            if args.verify {
                for p in &problems {
                    println!("BROKEN: record {} {}", p.key, p.message);
                }
                if problems.is_empty() {
                    println!("chain verified: {} records", records.len());
                }
            }
        }
        if problems.is_empty() {
            exit::SUCCESS
        } else {
            exit::REFUSED
        }
    })
}

/// Appends the audit record of `operation` (this process's arguments, secrets removed) to
/// the repository. A failure to record is reported on stderr and does not change the
/// operation's exit code: the operation happened, and saying otherwise would be false.
/// Returns whether the record was written.
pub async fn record(
    ctx: &Context,
    repo: &Repository,
    operation: &str,
    code: u8,
    figures: serde_json::Map<String, serde_json::Value>,
) -> bool {
    let arguments = audit::args::redact_args(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned()),
    );
    let record = AuditRecord::now(operation, arguments, code, figures);
    match audit::append(repo, record).await {
        Ok(_) => true,
        Err(e) => {
            ctx.fail(code, &e);
            eprintln!("walship {operation}: warning: the audit record above was not written");
            false
        }
    }
}
