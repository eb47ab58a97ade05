//! The one place that maps command outcomes to process exit codes.
//!
//! Postgres reads these codes: for `restore_command`, 1..=125 means "the archive does not
//! have this file" (recovery may end and the server may promote), while a code above 125
//! makes recovery stop with FATAL. So `walship fetch` exits 1 only when the repository
//! definitively lacks the file, and [`RECOVERY_MUST_STOP`] when storage fails or an object
//! is corrupt. For `archive_command` any non-zero code makes Postgres keep the file and retry.
//!
//! README.md's "Exit codes" table is the user's list of these codes and of the commands that
//! use each; a test below keeps the two in step.

use std::process::ExitCode;

/// Success: the file is durably archived, delivered, restored...
pub const SUCCESS: u8 = 0;
/// What was asked for does not exist: `fetch`, the repository definitively does not hold the
/// requested file; `info`, no such backup.
pub const NOT_FOUND: u8 = 1;
/// Usage error (bad flags or arguments).
pub const USAGE: u8 = 2;
/// The command failed; for `archive`, Postgres keeps the file and calls again later.
pub const FAILED: u8 = 3;
/// A safety rule refused the work: different content already archived, a file of another
/// cluster, a target the archive cannot reach. Retrying will not help; a human must look.
pub const REFUSED: u8 = 4;
/// `fetch`: storage still failing after retries, or a corrupt object. Above 125, so that
/// Postgres aborts recovery instead of treating the file as missing and promoting early.
pub const RECOVERY_MUST_STOP: u8 = 200;
/// `stream`: stopped at once by a second SIGTERM/SIGINT (128 + SIGINT, as shells report an
/// interrupted command), without storing what was still waiting.
pub const INTERRUPTED: u8 = 130;

/// The exit code for a command line clap refused (unknown flag, bad value, missing or extra
/// argument), after printing clap's message. `--help` and `--version` exit 0.
///
/// Clap parses before any command runs, so the command is read from the raw arguments:
/// for `fetch` (Postgres's `restore_command`) a usage error exits [`RECOVERY_MUST_STOP`],
/// never [`USAGE`] (2), which Postgres would read as "file absent" and might end recovery
/// and promote (a restored `postgresql.auto.conf` written by a newer walship than the one
/// installed is how this happens).
pub fn parse_failure(err: &clap::Error, args: &[std::ffi::OsString]) -> u8 {
    // Printing to a closed stderr must not change the verdict.
    let _ = err.print();
    if !err.use_stderr() {
        return SUCCESS;
    }
    if subcommand(args) == Some("fetch") {
        RECOVERY_MUST_STOP
    } else {
        USAGE
    }
}

/// The subcommand in raw arguments (program name first): the first argument that is not an
/// option, skipping the values of the global options that take one (`--repo URL`,
/// `--config FILE`, `--fallback-repo URL`: whichever `GlobalArgs` defines so).
fn subcommand(args: &[std::ffi::OsString]) -> Option<&str> {
    let takes_value = global_options_with_a_value();
    let mut rest = args.iter().skip(1).map(|a| a.to_str());
    while let Some(arg) = rest.next() {
        match arg {
            Some(option) if takes_value.iter().any(|o| o == option) => {
                rest.next();
            }
            Some(option) if option.starts_with('-') => {}
            other => return other,
        }
    }
    None
}

/// `--name` of every global option that takes a separate value, read from the option
/// definitions themselves so that a new one cannot be missed here.
fn global_options_with_a_value() -> Vec<String> {
    use clap::Args;
    crate::cli::GlobalArgs::augment_args(clap::Command::new("walship"))
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect()
}

/// `verify`: the repository is not sound (each problem is printed). Not above 125: the
/// repository answered, and what it holds is wrong.
pub const PROBLEM_FOUND: u8 = 5;
/// `verify`: the repository could not be read (storage failing after retries, no
/// walship.json), so nothing can be said of it. Above 125, like [`RECOVERY_MUST_STOP`], so
/// that a monitoring script never reads it as a verdict.
pub const STORAGE_FAILED: u8 = 200;

/// Converts one of the codes above into the process exit code.
pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}

/// README.md's exit-code table as `(code, commands cell)` rows, for the tests that keep it
/// in step with these codes and with the commands' `--help`.
#[cfg(test)]
pub(crate) fn readme_table() -> Vec<(u8, String)> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has an Exit codes section");
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells.get(1)?.parse().ok()?, cells.get(3)?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn subcommand_is_found_after_global_options() {
        assert_eq!(subcommand(&args("walship fetch a b")), Some("fetch"));
        assert_eq!(
            subcommand(&args(
                "walship -v --repo file:///r --config /c -q fetch --x"
            )),
            Some("fetch")
        );
        assert_eq!(
            subcommand(&args("walship --repo=file:///r fetch")),
            Some("fetch")
        );
        assert_eq!(
            subcommand(&args("walship --config fetch archive")),
            Some("archive")
        );
        assert_eq!(
            subcommand(&args("walship --fallback-repo s3://b/p fetch")),
            Some("fetch")
        );
        assert_eq!(subcommand(&args("walship -v")), None);
    }

    /// README.md's exit-code table lists exactly the codes defined here.
    #[test]
    fn readme_lists_every_exit_code() {
        let mut listed: Vec<u8> = super::readme_table().iter().map(|(c, _)| *c).collect();
        listed.sort_unstable();
        let defined = [
            super::SUCCESS,
            super::NOT_FOUND,
            super::USAGE,
            super::FAILED,
            super::REFUSED,
            super::PROBLEM_FOUND,
            super::INTERRUPTED,
            super::RECOVERY_MUST_STOP,
        ];
        assert_eq!(listed, defined);
    }
}
