//! [`Progress`]: counters a running backup updates and a progress display reads, shared
//! between the bundler thread and the command.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one backup. All values are bytes; zero means "not known yet".
#[derive(Debug, Default)]
pub struct Progress {
    raw: AtomicU64,
    stored: AtomicU64,
    estimated_total: AtomicU64,
}

/// A consistent-enough reading of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressSnapshot {
    /// File bytes read from the server and packed so far.
    pub raw: u64,
    /// Compressed bytes of the bundles closed so far.
    pub stored: u64,
    /// The server's size estimate of the whole backup (0 when unknown).
    pub estimated_total: u64,
}

impl Progress {
    /// Counts `n` more raw bytes packed.
    pub fn add_raw(&self, n: u64) {
        self.raw.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` more stored bytes.
    pub fn add_stored(&self, n: u64) {
        self.stored.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the server's estimate of the total size.
    pub fn set_estimate(&self, bytes: u64) {
        self.estimated_total.store(bytes, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            raw: self.raw.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            estimated_total: self.estimated_total.load(Ordering::Relaxed),
        }
    }
}
