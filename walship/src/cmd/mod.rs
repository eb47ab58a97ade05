//! One module per subcommand; each turns parsed arguments into library calls and an exit code.

pub mod archive;
pub mod as_of;
pub mod audit;
pub mod backup;
pub mod check;
pub mod copy;
pub mod drill;
pub mod expire;
pub mod exporter;
pub mod fetch;
pub mod info;
pub mod key;
pub mod list;
pub mod pin;
pub mod restore;
mod retention_view;
mod show;
pub mod status;
pub mod stream;
pub mod verify;

use walship_common::config::Options;
use walship_common::retention::PinAction;

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
                backup_expire: args.expire.then_some(true),
                backup_max_chain: args.max_chain.map(|n| n.to_string()),
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
                restore_parallel: args.restore_command.parallel_option(),
                ..Options::default()
            };
            with_context("restore", &cli.global, options, exit::FAILED, |ctx| {
                restore::run(ctx, args)
            })
        }
        Command::Verify(args) => with_context(
            "verify",
            &cli.global,
            Options::default(),
            exit::STORAGE_FAILED,
            |ctx| verify::run(ctx, args),
        ),
        Command::Expire(args) => {
            with_context("expire", &cli.global, args.options(), exit::USAGE, |ctx| {
                expire::run(ctx, args)
            })
        }
        Command::Copy(args) => with_context(
            "copy",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| copy::run(ctx, args),
        ),
        Command::Pin(args) => with_context(
            "pin",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| pin::run(ctx, &args.backup, PinAction::Pin, args.reason.clone()),
        ),
        Command::Unpin(args) => with_context(
            "unpin",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| pin::run(ctx, &args.backup, PinAction::Unpin, None),
        ),
        Command::Drill(args) => {
            let options = Options {
                restore_parallel: args.restore_command.parallel_option(),
                ..Options::default()
            };
            with_context("drill", &cli.global, options, exit::FAILED, |ctx| {
                drill::run(ctx, args)
            })
        }
        Command::Status(args) => with_context(
            "status",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| status::run(ctx, args),
        ),
        Command::Exporter(args) => with_context(
            "exporter",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| exporter::run(ctx, args),
        ),
        Command::Audit(args) => with_context(
            "audit",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| audit::run(ctx, args),
        ),
        Command::Check(args) => with_context(
            "check",
            &cli.global,
            Options::default(),
            exit::FAILED,
            |ctx| check::run(ctx, args),
        ),
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
