//! The one retry layer for storage calls: bounded attempts, exponential backoff with full
//! jitter, and an optional deadline for the whole call.
//!
//! The AWS SDK is capped at a single attempt, so every retry in walship happens here and is
//! visible in one place. Only errors for which [`StorageError::is_retryable`] is true are
//! tried again (timeouts, throttling such as 503 SlowDown, other 5xx, reset or refused
//! connections); a final answer (404, 412) or a refusal (403, 400) is returned at once.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use super::error::{StorageError, StorageOp};

/// How often and how patiently to retry a failed storage call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; at least 1.
    pub max_attempts: u32,
    /// Backoff cap before the first retry; it doubles for each further retry.
    pub base_delay: Duration,
    /// Upper bound of any single backoff.
    pub max_delay: Duration,
    /// The longest one call may take, every attempt and backoff included; `None`: only the
    /// backend's own per-attempt timeouts bound it. An attempt still running at the deadline
    /// is abandoned ([`StorageError::DeadlineExceeded`]), and no retry starts whose backoff
    /// would end past it (the last failure is returned).
    pub deadline: Option<Duration>,
    /// An instant by which every call made with this policy ends, whenever it started (the
    /// overall limit of one `walship fetch`); `None`: no such limit. Enforced like
    /// `deadline`; whichever comes first applies.
    pub not_after: Option<Instant>,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling to at most 10 s: at most about 3 s of sleeping before
    /// the last attempt, short enough for an `archive_command`. No deadline.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            deadline: None,
            not_after: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The largest backoff before retry number `retry` (0 for the first retry):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn delay_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The backoff before retry number `retry`: uniformly random in `[0, delay_cap]`
    /// ("full jitter"), so that many clients throttled at once spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.delay_cap(retry);
        let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=cap_micros))
    }

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, `max_attempts`
    /// are spent or the deadline passes; returns the last result. `op` and `key` are for
    /// logs and errors.
    ///
    /// Cancel safety: dropping the future stops retrying at once; an attempt in flight is
    /// dropped with it.
    pub async fn run<T, F, Fut>(
        &self,
        op: StorageOp,
        key: &str,
        mut attempt: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let attempts = self.max_attempts.max(1);
        let started = Instant::now();
        let end = [self.deadline.map(|d| started + d), self.not_after]
            .into_iter()
            .flatten()
            .min();
        let mut done = 0;
        loop {
            let result = match end {
                None => attempt().await,
                Some(end) => match tokio::time::timeout_at(end.into(), attempt()).await {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(StorageError::DeadlineExceeded {
                            op,
                            key: key.to_owned(),
                            // The configured limit (for `fetch`, `deadline` and
                            // `not_after` both come from `fetch.timeout`).
                            limit: self
                                .deadline
                                .unwrap_or_else(|| end.saturating_duration_since(started)),
                            attempts: done + 1,
                        });
                    }
                },
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            done += 1;
            if !err.is_retryable() || done >= attempts {
                return Err(err);
            }
            let delay = self.backoff(done - 1);
            if end.is_some_and(|end| Instant::now() + delay >= end) {
                return Err(err);
            }
            tracing::warn!(
                op = op.as_str(),
                key,
                attempt = done,
                of = attempts,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "storage call failed, retrying: {err}"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            deadline: None,
            not_after: None,
        }
    }

    fn transient() -> StorageError {
        StorageError::Transient {
            op: StorageOp::Get,
            key: "k".into(),
            endpoint: "e".into(),
            message: "503".into(),
        }
    }

    #[test]
    fn backoff_stays_within_exponential_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            deadline: None,
            not_after: None,
        };
        assert_eq!(policy.delay_cap(0), Duration::from_millis(100));
        assert_eq!(policy.delay_cap(1), Duration::from_millis(200));
        assert_eq!(policy.delay_cap(4), Duration::from_millis(1600));
        assert_eq!(policy.delay_cap(5), Duration::from_secs(2));
        assert_eq!(policy.delay_cap(200), Duration::from_secs(2));
        for retry in 0..12 {
            for _ in 0..200 {
                assert!(policy.backoff(retry) <= policy.delay_cap(retry));
            }
        }
        // Full jitter: not always the cap.
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(distinct.len() > 1);
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let result = fast()
            .run(StorageOp::Get, "k", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run(StorageOp::Get, "k", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            })
            .await;
        assert!(result.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn never_retries_permanent_answers() {
        for err in [
            || StorageError::NotFound { key: "k".into() },
            || StorageError::AlreadyExists { key: "k".into() },
            || StorageError::Permanent {
                op: StorageOp::Put,
                key: "k".into(),
                endpoint: "e".into(),
                message: "403 AccessDenied".into(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let result: Result<(), _> = fast()
                .run(StorageOp::Put, "k", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(err())
                })
                .await;
            assert!(result.unwrap_err().is_permanent());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn a_deadline_bounds_a_silent_call_and_the_retries() {
        let limit = Duration::from_millis(300);
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(40),
            deadline: Some(limit),
            not_after: None,
        };
        // A server that never answers: the attempt is abandoned at the deadline.
        let started = std::time::Instant::now();
        let result: Result<(), _> = policy.run(StorageOp::Get, "k", std::future::pending).await;
        assert!(matches!(
            result,
            Err(StorageError::DeadlineExceeded { attempts: 1, .. })
        ));
        assert!(started.elapsed() >= limit && started.elapsed() < limit * 3);
        // Failures that take 200 ms each: the second attempt is cut at the deadline, not
        // five attempts (1 s).
        let started = std::time::Instant::now();
        let result: Result<(), _> = policy
            .run(StorageOp::Get, "k", || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(transient())
            })
            .await;
        assert!(result.unwrap_err().is_retryable());
        assert!(started.elapsed() < limit * 2, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_overall_limit_bounds_every_call_together() {
        let policy = RetryPolicy {
            deadline: Some(Duration::from_secs(30)),
            not_after: Some(Instant::now() + Duration::from_millis(300)),
            ..RetryPolicy::default()
        };
        let started = Instant::now();
        // Two calls that each would wait forever: together they end by the overall limit.
        for _ in 0..2 {
            let result: Result<(), _> = policy.run(StorageOp::Get, "k", std::future::pending).await;
            assert!(matches!(result, Err(StorageError::DeadlineExceeded { .. })));
        }
        assert!(started.elapsed() < Duration::from_millis(600));
    }
}
