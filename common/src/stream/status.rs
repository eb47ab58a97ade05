//! Standby status replies: what `walship stream` tells the server, and when.
//!
//! `write` is the WAL received, `flush` the WAL durably in the repository (never more), and
//! `apply` is invalid (nothing replays). A reply goes out when the server asks for one, when
//! `flush` advances (so a synchronous commit waiting on us is released at once), and at least
//! every [`StatusPolicy::interval`] so that `wal_sender_timeout` never fires.

use std::time::{Duration, Instant};

use crate::lsn::Lsn;
use crate::pgconn::StandbyStatusUpdate;

/// When to reply, and what was last said.
#[derive(Debug, Clone)]
pub struct StatusPolicy {
    interval: Duration,
    last_sent: Option<Instant>,
    last_write: Lsn,
    last_flush: Lsn,
}

impl StatusPolicy {
    /// Replies at least every `interval`.
    pub fn new(interval: Duration) -> StatusPolicy {
        StatusPolicy {
            interval,
            last_sent: None,
            last_write: Lsn::INVALID,
            last_flush: Lsn::INVALID,
        }
    }

    /// The longest silence allowed.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The reply to send now, if one is due: asked for, `flush` moved, or the interval passed.
    pub fn due(
        &self,
        now: Instant,
        received: Lsn,
        flushed: Lsn,
        requested: bool,
    ) -> Option<StandbyStatusUpdate> {
        let stale = self
            .last_sent
            .is_none_or(|sent| now.duration_since(sent) >= self.interval);
        if requested || stale || flushed > self.last_flush {
            Some(Self::update(received, flushed))
        } else {
            None
        }
    }

    /// Records that `status` was sent at `now`.
    pub fn sent(&mut self, now: Instant, status: &StandbyStatusUpdate) {
        self.last_sent = Some(now);
        self.last_write = status.write;
        self.last_flush = status.flush;
    }

    /// [`StatusPolicy::update`] that also asks the server to answer at once (with a
    /// keepalive): how a receiver tells a silent, idle server from a dead connection. The
    /// walsender sends keepalives on its own only when *we* have been quiet for half its
    /// `wal_sender_timeout`, which our regular replies prevent.
    pub fn ping(received: Lsn, flushed: Lsn) -> StandbyStatusUpdate {
        StandbyStatusUpdate {
            reply_requested: true,
            ..Self::update(received, flushed)
        }
    }

    /// The reply for `received` and `flushed` (flush never claims more than was received).
    pub fn update(received: Lsn, flushed: Lsn) -> StandbyStatusUpdate {
        StandbyStatusUpdate {
            write: received,
            flush: flushed.min(received),
            apply: Lsn::INVALID,
            reply_requested: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_when_asked_when_flush_moves_and_when_stale() {
        let mut p = StatusPolicy::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let first = p
            .due(t0, Lsn(100), Lsn(50), false)
            .expect("nothing sent yet");
        assert_eq!(
            (first.write, first.flush, first.apply),
            (Lsn(100), Lsn(50), Lsn::INVALID)
        );
        p.sent(t0, &first);
        assert!(
            p.due(t0, Lsn(200), Lsn(50), false).is_none(),
            "write alone waits"
        );
        assert!(p.due(t0, Lsn(200), Lsn(50), true).is_some(), "asked");
        assert!(p.due(t0, Lsn(200), Lsn(60), false).is_some(), "flush moved");
        assert!(
            p.due(t0 + Duration::from_secs(10), Lsn(200), Lsn(50), false)
                .is_some()
        );
        assert_eq!(StatusPolicy::update(Lsn(10), Lsn(20)).flush, Lsn(10));
    }
}
