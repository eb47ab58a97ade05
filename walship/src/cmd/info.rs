//! `walship info <id|latest>`: one backup in detail, or its whole manifest with `--json`.

use clap::Args;
use walship_common::backup::{self, BackupError};

use super::list::open_catalog;
use super::show;
use crate::context::Context;
use crate::exit;

/// Show one base backup: `latest` or its id (YYYYMMDDTHHMMSSZ).
///
/// Exits 1 when there is no such backup.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `latest` or a backup id.
    pub backup: String,
    /// Print the whole manifest as JSON (every field: files, bundles, Postgres's
    /// backup_manifest, backup label, tablespace map).
    #[arg(long)]
    pub json: bool,
}

/// Runs `walship info`.
pub fn run(ctx: Context, args: InfoArgs) -> u8 {
    ctx.block_on(async {
        let repo = match open_catalog(&ctx).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        let m = match backup::find_backup(&repo, &args.backup).await {
            Ok(m) => m,
            Err(e @ BackupError::NotFound(_)) => return ctx.fail(exit::NOT_FOUND, &e),
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        if args.json {
            match serde_json::to_string_pretty(&m) {
                Ok(text) => println!("{text}"),
                Err(e) => return ctx.fail(exit::FAILED, &e),
            }
            return exit::SUCCESS;
        }
        let row = show::table_row(&m);
        for (name, value) in show::TABLE_HEADER.iter().zip(row.iter()) {
            println!("{:<14}{value}", format!("{}:", name.to_lowercase()));
        }
        println!("{:<14}{}", "system id:", m.system_identifier);
        println!("{:<14}{} ({})", "postgres:", m.pg_major, m.pg_version_num);
        println!("{:<14}{}", "files:", m.files.len());
        println!("{:<14}{}", "bundles:", m.bundles.len());
        for ts in &m.tablespaces {
            println!("{:<14}{} at {}", "tablespace:", ts.oid, ts.location);
        }
        println!("{:<14}{}", "walship:", m.walship_version);
        println!("backup_label:");
        for line in m.backup_label.lines() {
            println!("  {line}");
        }
        exit::SUCCESS
    })
}
