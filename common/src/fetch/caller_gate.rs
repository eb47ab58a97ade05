//! The prefetch worker's wait for the `fetch` call that started it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Holds the worker's first decode back until the `fetch` call that started it has exited
/// (the parent process changes), or for at most
/// [`super::prefetch::PrefetchPlan::wait_for_caller`]. That call is delivering the first
/// segment of a recovery straight from the repository while Postgres waits for it, and
/// decoding beside it on a 2-core machine made it 25-29 ms instead of 16-19 ms. Downloads go
/// on meanwhile. The second call may then wait a few ms for its segment, but the first two
/// calls together took less, and replay was faster in 5 of 6 interleaved pairs
/// (BENCHMARKS.md, "Replay through fetch: the segment asked for twice, and the first call").
pub(super) struct CallerGate {
    parent: nix::unistd::Pid,
    until: Instant,
    passed: AtomicBool,
}

impl CallerGate {
    /// How often the parent process is looked at.
    const POLL: Duration = Duration::from_millis(1);

    pub(super) fn new(wait: Duration) -> CallerGate {
        CallerGate {
            parent: nix::unistd::getppid(),
            until: Instant::now() + wait,
            passed: AtomicBool::new(wait.is_zero()),
        }
    }

    /// Returns once the caller has exited or the wait is over (at once after the first time).
    pub(super) async fn pass(&self) {
        if self.passed.load(Ordering::Relaxed) {
            return;
        }
        while nix::unistd::getppid() == self.parent && Instant::now() < self.until {
            tokio::time::sleep(Self::POLL).await;
        }
        self.passed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_zero_wait_passes_at_once() {
        let started = Instant::now();
        CallerGate::new(Duration::ZERO).pass().await;
        assert!(started.elapsed() < Duration::from_millis(20));
    }

    /// The test's parent process (the test runner) outlives the test: the gate holds for its
    /// whole wait, once, and then lets everything through.
    #[tokio::test]
    async fn a_live_caller_holds_the_first_decode_for_the_wait_only() {
        let wait = Duration::from_millis(60);
        let gate = CallerGate::new(wait);
        let started = Instant::now();
        gate.pass().await;
        let held = started.elapsed();
        assert!(held >= wait, "held {held:?}");
        assert!(held < wait + Duration::from_secs(2), "held {held:?}");
        let again = Instant::now();
        gate.pass().await;
        assert!(again.elapsed() < Duration::from_millis(20));
    }
}
