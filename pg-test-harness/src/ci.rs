//! The one rule for tests that need an outside program: skip loudly, or fail under CI.
//!
//! A test that cannot run prints a `SKIP:` line on stderr so a human sees it; when the
//! environment variable `CI` is `true` the same situation is a failure, because CI promised to
//! install everything (`scripts/setup-test-deps`).

/// True when the environment variable `CI` is `true` (set by `.ci/run`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that something a test needs is missing: panics with `what` under CI, else prints
/// `SKIP: <what>` on stderr and returns so the caller can skip.
pub fn skip_or_fail(what: &str) {
    if is_ci() {
        panic!("CI=true and {what} (run scripts/setup-test-deps)");
    }
    eprintln!("SKIP: {what} (run scripts/setup-test-deps to install it)");
}
