//! `walship archive <path>`: Postgres's `archive_command`.

use std::path::PathBuf;

use clap::Args;
use walship_common::archive::{self, ArchiveOutcome, ReadAhead};

use crate::context::Context;
use crate::exit;

/// Arguments of `walship archive` (the command's help text is in `cli.rs`).
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The file to archive (`%p`: a path relative to the data directory works).
    pub path: PathBuf,
    /// Archive under this name instead of the path's file name (`%f`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Also push the next `.ready` files of pg_wal/archive_status in parallel, so that
    /// Postgres's later calls for them return at once [config: archive.async]
    #[arg(long = "async")]
    pub async_mode: bool,
    /// Uploads in flight at once in --async mode [config: archive.parallel]
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// How many further `.ready` files one --async call pushes [config: archive.read_ahead]
    #[arg(long, value_name = "N")]
    pub read_ahead: Option<usize>,
}

/// Runs `walship archive`.
pub fn run(ctx: Context, args: ArchiveArgs) -> u8 {
    let config = &ctx.config;
    // The flags reached `config` through `Options`: flags over environment over file.
    let async_mode = config.archive.r#async;
    let read_ahead = ReadAhead {
        files: config.archive.read_ahead,
        parallel: config.archive.parallel,
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let result = if async_mode {
            archive::archive_with_read_ahead(&repo, &args.path, args.name.as_deref(), read_ahead)
                .await
        } else {
            archive::archive_file(&repo, &args.path, args.name.as_deref()).await
        };
        match result {
            Ok(done) => {
                let how = match done.outcome {
                    ArchiveOutcome::Stored(stored) => {
                        format!(
                            "stored ({} bytes, {} stored)",
                            stored.raw_len, stored.stored_len
                        )
                    }
                    ArchiveOutcome::AlreadyArchived => {
                        "already archived with identical content".to_string()
                    }
                    ArchiveOutcome::PushedAhead => "pushed ahead by an earlier call".to_string(),
                };
                tracing::info!("archived {}: {how}", done.name);
                exit::SUCCESS
            }
            Err(e) if e.is_refusal() => ctx.fail(exit::REFUSED, &e),
            Err(e) => ctx.fail(exit::FAILED, &e),
        }
    })
}
