//! The prefetch worker's wait for the `fetch` call that started it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `fetch` call that started the worker, for [`CallerGate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Its process id (the worker's parent while it runs).
    pub pid: u32,
    /// The longest the worker's first decode waits for it to exit.
    pub wait: Duration,
}

/// Holds the worker's first decode back until the `fetch` call that started it has exited
/// (the worker's parent is no longer that process), or for at most [`Caller::wait`]. That
/// call is delivering the first segment of a recovery straight from the repository while
/// Postgres waits for it, and decoding beside it on a 2-core machine made it 23-55 ms
/// instead of 16-25 ms. Downloads go on meanwhile. The second call may then wait a few ms
/// for its segment, but the first two calls together took less, and replay was faster in 5
/// of 6 interleaved pairs (BENCHMARKS.md, "Replay through fetch: the segment asked for
/// twice, and the first call").
pub(super) struct CallerGate {
    caller: Option<(nix::unistd::Pid, Instant)>,
    passed: AtomicBool,
}

impl CallerGate {
    /// How often the parent process is looked at.
    const POLL: Duration = Duration::from_millis(1);

    /// A gate for `caller`; without one, a gate that is open.
    pub(super) fn new(caller: Option<Caller>) -> CallerGate {
        let caller = caller.and_then(|c| {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.pid).ok()?);
            Some((pid, Instant::now() + c.wait))
        });
        CallerGate {
            passed: AtomicBool::new(caller.is_none()),
            caller,
        }
    }

    /// Returns once the caller has exited or the wait is over (at once after the first time).
    pub(super) async fn pass(&self) {
        if self.passed.load(Ordering::Relaxed) {
            return;
        }
        if let Some((pid, until)) = self.caller {
            while nix::unistd::getppid() == pid && Instant::now() < until {
                tokio::time::sleep(Self::POLL).await;
            }
        }
        self.passed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent_for(wait: Duration) -> Option<Caller> {
        let pid = u32::try_from(nix::unistd::getppid().as_raw()).ok()?;
        Some(Caller { pid, wait })
    }

    #[tokio::test]
    async fn without_a_caller_or_one_that_is_gone_the_gate_is_open() {
        let started = Instant::now();
        CallerGate::new(None).pass().await;
        // This process's own pid is never its parent's: as if the caller had exited and
        // the worker had been given another parent.
        let gone = Caller {
            pid: std::process::id(),
            wait: Duration::from_secs(5),
        };
        CallerGate::new(Some(gone)).pass().await;
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    /// The test's parent process (the test runner) outlives the test: the gate holds for its
    /// whole wait, once, and then lets everything through.
    #[tokio::test]
    async fn a_live_caller_holds_the_first_decode_for_the_wait_only() {
        let wait = Duration::from_millis(60);
        let gate = CallerGate::new(parent_for(wait));
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
