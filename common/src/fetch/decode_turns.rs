//! The prefetch worker's one decoder, handed to segments nearest first.
//!
//! Downloads overlap, but decoding, checking and writing run one segment at a time (the
//! worker takes at most one core from the recovery it serves). Handed out in the order the
//! stored objects arrived, a later segment often went first: at the start the worker asks
//! for several segments at once, and the one Postgres needs next then waited behind another's
//! decoding and writing. Here a segment whose object arrived waits while any nearer segment
//! is still downloading or decoding, so the next segment is never queued behind a later one,
//! but for at most [`WAIT_FOR_NEARER`]: a stalled download (a hung request lasts until the
//! storage's timeout) must not hold up the segments after it.

use std::collections::BTreeSet;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::pg::file_name::WalFileName;

/// The longest a segment whose object arrived waits for nearer ones before it decodes anyway:
/// far longer than the objects of one round of downloads arrive apart (a few ms from a local
/// repository, tens from S3), far shorter than a stalled request lasts.
pub(super) const WAIT_FOR_NEARER: Duration = Duration::from_millis(250);

/// The decoder's state (its buffers, reused from segment to segment) and its queue.
#[derive(Debug)]
pub(super) struct DecodeTurns<T> {
    decoder: Mutex<T>,
    /// Segments between the start of their download and the end of their decoding.
    lined_up: SyncMutex<BTreeSet<WalFileName>>,
    /// Woken whenever a segment leaves the line.
    left: Notify,
}

/// A segment's place in line, from the start of its download; it leaves the line when
/// dropped (decoded, failed or abandoned), and the next nearest segment may decode.
#[derive(Debug)]
pub(super) struct Place<'a, T> {
    turns: &'a DecodeTurns<T>,
    wal: WalFileName,
}

impl<T> DecodeTurns<T> {
    /// A decoder with state `decoder` and nobody in line.
    pub(super) fn new(decoder: T) -> DecodeTurns<T> {
        DecodeTurns {
            decoder: Mutex::new(decoder),
            lined_up: SyncMutex::new(BTreeSet::new()),
            left: Notify::new(),
        }
    }

    /// Puts `wal` in line (call when its download starts).
    pub(super) fn line_up(&self, wal: WalFileName) -> Place<'_, T> {
        self.line().insert(wal);
        Place { turns: self, wal }
    }

    fn line(&self) -> std::sync::MutexGuard<'_, BTreeSet<WalFileName>> {
        // Nothing panics while holding it; a poisoned set is still the right set.
        self.lined_up.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'a, T> Place<'a, T> {
    /// Waits until no nearer segment is in line (at most [`WAIT_FOR_NEARER`]), then for the
    /// decoder.
    pub(super) async fn decoder(&self) -> MutexGuard<'a, T> {
        let _ = tokio::time::timeout(WAIT_FOR_NEARER, self.nearest()).await;
        self.turns.decoder.lock().await
    }

    /// Returns once no nearer segment is in line.
    async fn nearest(&self) {
        loop {
            // Registered before the look, so that a segment leaving in between wakes it.
            let left = self.turns.left.notified();
            if self.turns.line().first() == Some(&self.wal) {
                return;
            }
            left.await;
        }
    }
}

impl<T> Drop for Place<'_, T> {
    fn drop(&mut self) {
        self.turns.line().remove(&self.wal);
        self.turns.left.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::segment::WalSegSize;

    fn segment(n: u64) -> WalFileName {
        let name = format!("0000000100000000{n:08X}");
        WalFileName::parse(&name, WalSegSize::new(16 << 20).unwrap()).unwrap()
    }

    /// Decodes segment `n`: records it in the decoder's state.
    async fn decode(place: Place<'_, Vec<u64>>, n: u64) {
        place.decoder().await.push(n);
    }

    /// The segment whose object arrived last still decodes first when it is the nearest,
    /// and one that leaves the line without decoding (a failed download) holds nobody up.
    #[tokio::test]
    async fn the_nearest_segment_decodes_first() {
        let turns = DecodeTurns::new(Vec::new());
        let (e, f, g, h) = (segment(14), segment(15), segment(16), segment(17));
        let place_e = turns.line_up(e);
        let place_f = turns.line_up(f);
        let place_g = turns.line_up(g);
        let place_h = turns.line_up(h);
        drop(place_g); // G's download failed.
        // H's and F's objects arrive before E's: they are polled first, and still wait.
        let later = futures::future::join(decode(place_h, 17), decode(place_f, 15));
        let nearest = async {
            tokio::task::yield_now().await;
            decode(place_e, 14).await;
        };
        futures::future::join(later, nearest).await;
        assert_eq!(*turns.decoder.lock().await, vec![14, 15, 17]);
        assert!(turns.line().is_empty());
    }

    /// A nearer segment whose download stalls holds a later one up for `WAIT_FOR_NEARER`
    /// only, not until the stalled request ends.
    #[tokio::test]
    async fn a_stalled_download_holds_the_others_up_briefly() {
        let turns = DecodeTurns::new(Vec::new());
        let _stalled = turns.line_up(segment(14));
        let started = tokio::time::Instant::now();
        decode(turns.line_up(segment(15)), 15).await;
        let waited = started.elapsed();
        assert!(waited >= WAIT_FOR_NEARER, "decoded after {waited:?}");
        assert!(waited < WAIT_FOR_NEARER * 4, "decoded after {waited:?}");
        assert_eq!(*turns.decoder.lock().await, vec![15]);
    }
}
