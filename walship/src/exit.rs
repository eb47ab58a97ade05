//! The one place that maps command outcomes to process exit codes.
//!
//! Postgres reads these codes: for `restore_command`, 1..=125 means "the archive does not
//! have this file" (recovery may end and the server may promote), while a code above 125
//! makes recovery stop with FATAL. So `walship fetch` exits 1 only when the repository
//! definitively lacks the file, and [`RECOVERY_MUST_STOP`] when storage fails or an object
//! is corrupt. For `archive_command` any non-zero code makes Postgres keep the file and retry.

use std::process::ExitCode;

/// Success: the file is durably archived, delivered, restored...
pub const SUCCESS: u8 = 0;
/// `fetch`: the repository definitively does not hold the requested file.
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
