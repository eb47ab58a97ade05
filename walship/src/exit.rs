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
/// Usage error (bad flags or arguments), or a command that is not built yet.
pub const USAGE: u8 = 2;
/// The command failed; for `archive`, Postgres keeps the file and calls again later.
pub const FAILED: u8 = 3;
/// A safety rule refused the work: different content already archived, a file of another
/// cluster, a target the archive cannot reach. Retrying will not help; a human must look.
pub const REFUSED: u8 = 4;
/// `fetch`: storage still failing after retries, or a corrupt object. Above 125, so that
/// Postgres aborts recovery instead of treating the file as missing and promoting early.
pub const RECOVERY_MUST_STOP: u8 = 200;

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
            super::RECOVERY_MUST_STOP,
        ];
        assert_eq!(listed, defined);
    }
}
