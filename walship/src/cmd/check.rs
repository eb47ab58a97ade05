//! `walship check`: the front end of `walship_common::check`, plus the one check only a
//! write can prove (the repository accepts this command's audit record).

use std::time::Duration;

use clap::Args;
use walship_common::check::{self, CheckItem, CheckRequest};
use walship_common::pgconn::ConnParams;

use crate::context::Context;
use crate::exit;

/// Check that this cluster archives into this repository, end to end.
///
/// Connects to Postgres (libpq conventions), checks archive_mode, that archive_command runs
/// walship archive for this repository, wal_level and max_wal_senders; that the repository
/// is reachable, of this cluster, and writable (this command's audit record is written to
/// it); then forces a WAL switch (pg_switch_wal) and waits, up to --timeout, until that
/// segment is in the repository. Each check is printed with ok, or the reason and the fix.
///
/// Exit codes: 0 every check passed; 4 a check failed (each named); 3 could not connect or
/// query; 2 bad flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Connection string (`host=... user=...` or `postgresql://...`); unset parts come
    /// from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE...
    #[arg(
        short = 'd',
        long = "dbname",
        value_name = "CONNINFO",
        default_value = ""
    )]
    pub conn: String,
    /// How long to wait for the switched segment to reach the repository.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = walship_common::config::parse_duration)]
    pub timeout: Duration,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `walship check`.
pub fn run(ctx: Context, args: CheckArgs) -> u8 {
    let params = match ConnParams::parse(&args.conn) {
        Ok(p) => p.with_fallback_application_name("walship check"),
        Err(e) => return ctx.fail(exit::USAGE, &e),
    };
    let request = CheckRequest {
        params,
        repo_url: ctx.config.repo.clone(),
        timeout: args.timeout,
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let mut items = match check::run(&repo, &request).await {
            Ok(items) => items,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        if repo.object_lock().is_some() {
            items.push(object_lock_item(&ctx, &repo).await);
        }
        let failed = items.iter().filter(|i| !i.ok).count();
        let mut figures = serde_json::Map::new();
        figures.insert("checks".into(), items.len().into());
        figures.insert("failed".into(), failed.into());
        let code = if failed == 0 {
            exit::SUCCESS
        } else {
            exit::REFUSED
        };
        let written = super::audit::record(&ctx, &repo, "check", code, figures).await;
        items.push(CheckItem {
            name: "repository writable".into(),
            ok: written,
            detail: if written {
                "this check's audit record was written".into()
            } else {
                "this check's audit record could not be written (see above)".into()
            },
            fix: if written {
                String::new()
            } else {
                "give walship's credentials permission to create objects in the repository".into()
            },
        });
        if args.json {
            let ok = items.iter().all(|i| i.ok);
            let json = serde_json::json!({ "ok": ok, "checks": items });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else {
            for i in &items {
                if i.ok {
                    println!("ok    {}: {}", i.name, i.detail);
                } else {
                    println!("FAIL  {}: {}\n      fix: {}", i.name, i.detail, i.fix);
                }
            }
        }
        if items.iter().all(|i| i.ok) {
            exit::SUCCESS
        } else {
            exit::REFUSED
        }
    })
}

/// With `s3.object_lock` on: the bucket has Object Lock enabled and versioning on.
async fn object_lock_item(ctx: &Context, repo: &walship_common::repo::Repository) -> CheckItem {
    let setting = ctx.config.s3.object_lock.as_str();
    let (ok, detail) = match repo.storage().require_object_lock(setting).await {
        Ok(status) => (
            true,
            format!(
                "bucket {} has Object Lock enabled and versioning on; new objects are locked in {} mode",
                status.bucket,
                setting.to_uppercase()
            ),
        ),
        Err(e) => (false, e.to_string()),
    };
    CheckItem {
        name: "s3.object_lock".into(),
        ok,
        detail,
        fix: if ok {
            String::new()
        } else {
            format!(
                "use a bucket created with Object Lock enabled (it turns versioning on), or set s3.object_lock = \"off\" (it is \"{setting}\")"
            )
        },
    }
}
