//! The one rule for tests that need an outside program: skip loudly, or fail under CI.
//!
//! A test that cannot run prints a `SKIP:` line on stderr so a human sees it; when the
//! environment variable `CI` is `true` the same situation is a failure, because CI promised to
//! install everything (`scripts/setup-test-deps`).
//!
//! cargo test and nextest hide a passing test's stderr, so a green run could hide that the
//! restore story never ran. When [`SKIP_LOG_ENV`] names a file, each skip also appends one line
//! `<test binary> <test name>: <what>` to it; `scripts/test` sets it and ends with the count
//! and the names of the skipped tests.

use std::io::Write;
use std::path::Path;

/// The environment variable naming the file skips are appended to (set by `scripts/test`).
pub const SKIP_LOG_ENV: &str = "PG_TEST_HARNESS_SKIP_LOG";

/// True when the environment variable `CI` is `true` (set by `.ci/run`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that something a test needs is missing: panics with `what` under CI, else prints
/// `SKIP: <what>` on stderr, records it in the skip log when there is one, and returns so the
/// caller can skip.
pub fn skip_or_fail(what: &str) {
    if is_ci() {
        panic!("CI=true and {what} (run scripts/setup-test-deps)");
    }
    eprintln!("SKIP: {what} (run scripts/setup-test-deps to install it)");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV).filter(|v| !v.is_empty())
        && let Err(e) = record_skip(Path::new(&log), what)
    {
        eprintln!("SKIP not recorded in {}: {e}", Path::new(&log).display());
    }
}

/// Appends `<test binary> <test name>: <what>` to `log`, in one write so that tests running
/// in parallel processes do not interleave their lines.
fn record_skip(log: &Path, what: &str) -> std::io::Result<()> {
    let line = format!("{} {}: {what}\n", test_binary(), test_name());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    file.write_all(line.as_bytes())
}

/// The running test: nextest names it in `NEXTEST_TEST_NAME` (one process per test, so this
/// also holds on a runtime's worker thread); under cargo test, libtest names each test's
/// thread after it.
fn test_name() -> String {
    if let Ok(name) = std::env::var("NEXTEST_TEST_NAME") {
        return name;
    }
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "?".to_string(),
    }
}

/// The test binary: nextest's `NEXTEST_BINARY_ID` (`walship::restore`), else the executable's
/// name without cargo's hash (`restore-0123abcd0123abcd` is `restore`).
fn test_binary() -> String {
    if let Ok(id) = std::env::var("NEXTEST_BINARY_ID") {
        return id;
    }
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
        .unwrap_or("?");
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, item 4: a skip is recorded with the test's name, one line per skip, and
    /// lines from tests running at once do not interleave. (Under nextest the name comes from
    /// `NEXTEST_TEST_NAME`; under cargo test from the thread.)
    #[test]
    fn skips_are_appended_with_the_test_name() {
        let nextest = std::env::var("NEXTEST_TEST_NAME").ok();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                std::thread::Builder::new()
                    .name(format!("restore_to_time_{i}"))
                    .spawn(move || record_skip(&log, "SeaweedFS (weed) is not installed"))
                    .unwrap()
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 8, "{text}");
        for (i, line) in lines.iter().enumerate() {
            let name = nextest
                .clone()
                .unwrap_or_else(|| format!("restore_to_time_{i}"));
            assert_eq!(
                *line,
                format!(
                    "{} {name}: SeaweedFS (weed) is not installed",
                    test_binary()
                )
            );
        }
        // `pg-test-harness` (nextest) or `pg_test_harness` (cargo test), without the hash.
        assert!(
            ["pg-test-harness", "pg_test_harness"].contains(&test_binary().as_str()),
            "{}",
            test_binary()
        );
    }
}
