//! `walship list`: the backups in the repository, as a table or `--json`; `--incomplete`
//! shows the leftovers of interrupted backups, and `--remove` deletes them.

use std::time::{Duration, SystemTime};

use clap::Args;
use walship_common::backup::{self, IncompleteBackup};

use super::as_of::AsOfArg;
use super::{retention_view, show};
use crate::context::Context;
use crate::exit;

/// List the base backups in the repository.
///
/// A backup exists once its manifest is written (its last step). `--incomplete` lists
/// instead what interrupted backups left (objects without a manifest); add `--remove` to
/// delete those idle for at least `--idle` (default 1h, so that a backup still running
/// elsewhere is left alone). The next successful `walship backup` also removes them.
/// A backup whose manifest is corrupt or foreign is named on stderr and skipped (never
/// removed: it is not incomplete).
///
/// KEPT BY names the rules of the configured retention policy ([retention]) that keep each
/// backup as of now (pinned, pitr, daily, weekly, monthly, yearly, min_backups), or
/// "(expires)" when the next `walship expire` removes it; "-" when no policy is configured.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON: an array with every manifest field except the per-file and per-bundle
    /// lists and Postgres's backup_manifest (see `walship info --json` for those).
    #[arg(long)]
    pub json: bool,
    /// List incomplete backups (objects without a manifest) instead.
    #[arg(long)]
    pub incomplete: bool,
    /// With --incomplete: delete them.
    #[arg(long, requires = "incomplete")]
    pub remove: bool,
    /// With --remove: only those whose newest object is at least this old (0s: all of them;
    /// only when no backup is running).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = walship_common::config::parse_duration_or_zero)]
    pub idle: Duration,
    #[command(flatten)]
    pub as_of: AsOfArg,
}

/// Runs `walship list`.
pub fn run(ctx: Context, args: ListArgs) -> u8 {
    ctx.block_on(async {
        let repo = match open_catalog_as_of(&ctx, &args.as_of).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        if args.incomplete && args.remove {
            let idle_since = SystemTime::now().checked_sub(args.idle);
            return match backup::remove_incomplete(&repo, idle_since).await {
                Ok(removed) => {
                    print_incomplete(&removed, args.json, "removed");
                    exit::SUCCESS
                }
                Err(e) => ctx.fail(exit::FAILED, &e),
            };
        }
        let catalog = match backup::read_catalog(&repo).await {
            Ok(catalog) => catalog,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        // A bad manifest is named and skipped: the good backups stay listed.
        for bad in &catalog.unreadable {
            eprintln!(
                "walship list: warning: backup {} skipped, its manifest cannot be used: {}",
                bad.id, bad.reason
            );
        }
        if args.incomplete {
            print_incomplete(&catalog.incomplete, args.json, "incomplete");
            return exit::SUCCESS;
        }
        let retention = match retention_view::read(&repo, &ctx.config.retention).await {
            Ok(r) => r,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let of = |id| retention.get(&id).cloned().unwrap_or_default();
        if args.json {
            let all: Vec<_> = catalog
                .complete
                .iter()
                .map(|m| {
                    let mut v = show::summary_json(m);
                    if let (Some(obj), serde_json::Value::Object(extra)) =
                        (v.as_object_mut(), of(m.id).json())
                    {
                        obj.extend(extra);
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::Value::Array(all));
        } else {
            let rows: Vec<[String; 10]> = catalog
                .complete
                .iter()
                .map(|m| {
                    let [a, b, c, d, e, f, g, h, i] = show::table_row(m);
                    [a, b, c, d, e, f, g, h, i, of(m.id).cell()]
                })
                .collect();
            let [a, b, c, d, e, f, g, h, i] = show::TABLE_HEADER;
            show::print_table([a, b, c, d, e, f, g, h, i, "KEPT BY"], &rows);
        }
        exit::SUCCESS
    })
}

fn print_incomplete(list: &[IncompleteBackup], json: bool, what: &str) {
    if json {
        println!(
            "{}",
            serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
        );
        return;
    }
    let rows: Vec<[String; 3]> = list
        .iter()
        .map(|b| [b.id.to_string(), b.objects.to_string(), show::size(b.bytes)])
        .collect();
    show::print_table([&format!("ID ({what})")[..], "OBJECTS", "STORED"], &rows);
}

/// Opens the repository for reading the catalog: one without walship.json is a wrong URL,
/// not an empty catalog. Errors are reported; the exit code is returned.
pub async fn open_catalog(ctx: &Context) -> Result<walship_common::repo::Repository, u8> {
    open_catalog_as_of(ctx, &AsOfArg { as_of: None }).await
}

/// [`open_catalog`], as it was at `--as-of` when given.
pub async fn open_catalog_as_of(
    ctx: &Context,
    as_of: &AsOfArg,
) -> Result<walship_common::repo::Repository, u8> {
    let repo = ctx
        .open_repository_as_of(as_of.as_of)
        .await
        .map_err(|e| ctx.fail(exit::FAILED, &e))?;
    repo.require_identity()
        .await
        .map_err(|e| ctx.fail(exit::FAILED, &e))?;
    Ok(repo)
}
