//! `walship`: the command-line front end. Parses arguments, sets up logging, runs one
//! command and maps its outcome to an exit code. The work lives in `walship-common` and
//! `walship-restore`; nothing here is needed by a test of the libraries.

// The futures of the commands are deep types (each storage call's future holds the S3
// backend's): rustc's default query depth of 128 is too shallow to lay them out.
#![recursion_limit = "256"]

mod allocator;
mod cli;
mod cmd;
mod context;
mod exit;

use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::tune();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::parse_args(&args) {
        Ok(cli) => cli,
        Err(e) => return exit::code(exit::parse_failure(&e, &args)),
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    exit::code(cmd::run(cli))
}

/// Logs to stderr (Postgres collects an archive_command's stderr into its own log).
/// `RUST_LOG` overrides the level chosen by -v/-q.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // Our crates at the chosen level; libraries (the AWS SDK, hyper) only for errors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "error,walship={level},walship_common={level},walship_restore={level}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
