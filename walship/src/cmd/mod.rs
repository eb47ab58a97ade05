//! One module per subcommand; each turns parsed arguments into library calls and an exit code.

pub mod archive;
pub mod backup;
pub mod fetch;
pub mod info;
pub mod key;
pub mod list;
pub mod restore;
mod show;
pub mod stream;

use walship_common::config::Options;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::exit;

/// Runs the parsed command line and returns the exit code (see [`crate::exit`]).
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Archive(args) => {
            let options = Options {
                archive_async: args.async_mode.then_some(true),
                archive_parallel: args.parallel.map(|n| n.to_string()),
                archive_read_ahead: args.read_ahead.map(|n| n.to_string()),
                ..Options::default()
            };
            with_context("archive", &cli.global, options, exit::FAILED, |ctx| {
                archive::run(ctx, args)
            })
        }
        Command::Fetch(args) => {
            let options = Options {
                fetch_prefetch: args.prefetch.map(|n| n.to_string()),
                fetch_parallel: args.parallel.map(|n| n.to_string()),
                fetch_allow_partial: args.allow_partial.then_some(true),
                ..Options::default()
            };
            // The prefetch worker outlives the call: its storage limit is per request, not
            // the call's overall fetch.timeout (see Context::open_repository).
            let command = if args.prefetch_worker {
                "fetch-worker"
            } else {
                "fetch"
            };
            // A configuration problem during recovery must stop Postgres, not end recovery.
            with_context(
                command,
                &cli.global,
                options,
                exit::RECOVERY_MUST_STOP,
                |ctx| fetch::run(ctx, args),
            )
        }
        Command::Stream(args) => {
            let options = Options {
                stream_slot: args.slot.clone(),
                stream_partial_interval: args.partial_interval.clone(),
                stream_application_name: args.application_name.clone(),
                stream_stop_timeout: args.stop_timeout.clone(),
                ..Options::default()
            };
            with_context("stream", &cli.global, options, exit::USAGE, |ctx| {
                stream::run(ctx, args)
            })
        }
        Command::Backup(args) => {
            let options = Options {
                backup_bundle_size: args.bundle_size.clone(),
                backup_parallel: args.parallel.map(|n| n.to_string()),
                ..Options::default()
            };
            with_context("backup", &cli.global, options, exit::FAILED, |ctx| {
                backup::run(ctx, args)
            })
        }
        Command::List(args) => with_context(
            "list",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| list::run(ctx, args),
        ),
        Command::Info(args) => with_context(
            "info",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| info::run(ctx, args),
        ),
        Command::Restore(args) => {
            let options = Options {
                restore_parallel: args.parallel.map(|n| n.to_string()),
                ..Options::default()
            };
            with_context("restore", &cli.global, options, exit::FAILED, |ctx| {
                restore::run(ctx, args)
            })
        }
        Command::Key(args) => match args.action {
            key::KeyAction::Init { key_file } => key::init(&key_file),
            action => with_context(
                "key",
                &cli.global,
                Options::default(),
                exit::FAILED,
                |ctx| key::run(ctx, action),
            ),
        },
        Command::Verify(_) => not_built("verify", None),
        Command::Expire(_) => not_built("expire", None),
        Command::Check(_) => not_built("check", None),
    }
}

/// Loads the configuration and runs `body`; a configuration error exits with `failure`.
fn with_context(
    command: &'static str,
    global: &crate::cli::GlobalArgs,
    options: Options,
    failure: u8,
    body: impl FnOnce(Context) -> u8,
) -> u8 {
    match Context::load(command, global, options, failure) {
        Ok(ctx) => body(ctx),
        Err(message) => {
            eprintln!("{message}");
            failure
        }
    }
}

/// Refuses plainly: a command that is not built must never look like a success.
fn not_built(name: &str, issue: Option<u32>) -> u8 {
    match issue {
        Some(n) => {
            eprintln!("walship {name}: not built yet (tracked in issue {n}); nothing was done")
        }
        None => eprintln!("walship {name}: not built yet; nothing was done"),
    }
    exit::USAGE
}
