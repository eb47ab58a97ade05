//! Reconnect and retry backoff: exponential with jitter, capped, reset after success.

use std::time::Duration;

/// Exponential backoff: `initial`, doubling up to `max`, each delay with up to 25% jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `initial` to at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// For reconnecting to Postgres: 200 ms up to 10 s (a restart takes a second or two).
    pub fn reconnect() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// For retrying an upload after the storage layer's own retries gave up: 1 s up to 30 s.
    pub fn uploads() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.as_millis() as u64 / 4;
        let extra = if jitter == 0 {
            0
        } else {
            rand::random_range(0..=jitter)
        };
        base + Duration::from_millis(extra)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        let bounds = [(100, 125), (200, 250), (400, 500), (500, 625), (500, 625)];
        for (delay, (lo, hi)) in d.iter().zip(bounds) {
            assert!(
                *delay >= Duration::from_millis(lo) && *delay <= Duration::from_millis(hi),
                "{delay:?} not in {lo}..={hi} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
