//! `walship info <id|latest>`: one backup in detail, or its whole manifest with `--json`.

use clap::Args;
use walship_common::backup::{self, BackupError};

use super::as_of::AsOfArg;
use super::list::open_catalog_as_of;
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
    #[command(flatten)]
    pub as_of: AsOfArg,
}

/// Runs `walship info`.
pub fn run(ctx: Context, args: InfoArgs) -> u8 {
    ctx.block_on(async {
        let repo = match open_catalog_as_of(&ctx, &args.as_of).await {
            Ok(repo) => repo,
            Err(code) => return code,
        };
        let m = match backup::find_backup(&repo, &args.backup).await {
            Ok(m) => m,
            Err(e @ BackupError::NotFound(_)) => return ctx.fail(exit::NOT_FOUND, &e),
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let retention = match super::retention_view::read(&repo, &ctx.config.retention).await {
            Ok(r) => r.get(&m.id).cloned().unwrap_or_default(),
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        if args.json {
            let mut value = serde_json::to_value(&m).unwrap_or_default();
            if let (Some(obj), serde_json::Value::Object(extra)) =
                (value.as_object_mut(), retention.json())
            {
                obj.extend(extra);
            }
            match serde_json::to_string_pretty(&value) {
                Ok(text) => println!("{text}"),
                Err(e) => return ctx.fail(exit::FAILED, &e),
            }
            return exit::SUCCESS;
        }
        let row = show::table_row(&m);
        for (name, value) in show::TABLE_HEADER.iter().zip(row.iter()) {
            println!("{:<14}{value}", format!("{}:", name.to_lowercase()));
        }
        match m.parent {
            Some(parent) => {
                println!("{:<14}{parent}", "parent:");
                println!("{:<14}{}", "chain depth:", m.chain_depth);
            }
            None => println!("{:<14}full backup", "kind:"),
        }
        println!("{:<14}{}", "system id:", m.system_identifier);
        println!("{:<14}{} ({})", "postgres:", m.pg_major, m.pg_version_num);
        println!("{:<14}{}", "files:", m.files.len());
        println!("{:<14}{}", "bundles:", m.bundles.len());
        for ts in &m.tablespaces {
            println!("{:<14}{} at {}", "tablespace:", ts.oid, ts.location);
        }
        println!("{:<14}{}", "walship:", m.walship_version);
        match &retention.pin {
            Some(pin) => println!(
                "{:<14}since {}{}",
                "pinned:",
                pin.at.format("%Y-%m-%d %H:%M:%S UTC"),
                pin.reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(": {r}"))
            ),
            None => println!("{:<14}no", "pinned:"),
        }
        println!("{:<14}{}", "kept by:", retention.cell());
        println!("backup_label:");
        for line in m.backup_label.lines() {
            println!("  {line}");
        }
        exit::SUCCESS
    })
}
