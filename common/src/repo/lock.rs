//! Which S3 Object Lock each object walship creates gets (`[s3] object_lock`).
//!
//! [`LockPolicy`] is computed once from the configuration (the lock mode, the margin, and the
//! retention policy: see [`crate::retention::lock`]) and held by the
//! [`super::Repository`]; every put path asks it for the lock of the key it writes:
//!
//! | objects | locked until |
//! |---|---|
//! | `wal/` (segments, `.history`, `.backup`) | now + `retention.pitr_window` + margin |
//! | `wal/**.partial` (the stream's tail) | not locked: it is overwritten every `stream.partial_interval`, and on a versioned bucket each overwrite would keep a locked copy for the whole window |
//! | `backups/<id>/` (bundles, manifest, pin records) | now + the shortest time the policy keeps a new backup + margin |
//! | everything else (`walship.json`, `keys/`, `audit/`, `drills/`) | now + the longest time the policy keeps anything + margin |
//!
//! `expire` later extends the locks of what the policy keeps longer (`retention::lock`).

use std::time::{Duration, SystemTime};

use crate::storage::{LockMode, ObjectKey, ObjectLock};

/// The lock durations of a repository under Object Lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// GOVERNANCE or COMPLIANCE.
    pub mode: LockMode,
    /// `s3.object_lock_margin`: added to every duration below (and to every extension), so
    /// that a lock outlives the run of `expire` that would extend it.
    pub margin: Duration,
    /// WAL: `retention.pitr_window` + margin.
    pub wal: Duration,
    /// A new backup: the shortest time the policy keeps it + margin.
    pub backup: Duration,
    /// Repository-wide objects: the longest time the policy keeps anything + margin.
    pub other: Duration,
}

/// Which lock duration a key falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedKind {
    /// Under `wal/`, but not a `.partial`.
    Wal,
    /// A `.partial` or a stream tail piece (`.partial.<offset>`) under `wal/`: never locked
    /// (both are removed once the complete segment is stored).
    Partial,
    /// Under `backups/`.
    Backup,
    /// Anything else.
    Other,
}

impl LockedKind {
    /// The kind of `key`.
    pub fn of(key: &ObjectKey) -> LockedKind {
        let key = key.as_str();
        if key.starts_with("wal/") && (key.ends_with(".partial") || key.contains(".partial.")) {
            LockedKind::Partial
        } else if key.starts_with("wal/") {
            LockedKind::Wal
        } else if key.starts_with("backups/") {
            LockedKind::Backup
        } else {
            LockedKind::Other
        }
    }
}

impl LockPolicy {
    /// The lock a new object at `key`, written at `now`, gets (`None`: none, a `.partial`).
    pub fn lock_for(&self, key: &ObjectKey, now: SystemTime) -> Option<ObjectLock> {
        let duration = match LockedKind::of(key) {
            LockedKind::Partial => return None,
            LockedKind::Wal => self.wal,
            LockedKind::Backup => self.backup,
            LockedKind::Other => self.other,
        };
        Some(ObjectLock {
            mode: self.mode,
            retain_until: now + duration,
        })
    }

    /// A lock in this policy's mode until `until`.
    pub fn until(&self, until: SystemTime) -> ObjectLock {
        ObjectLock {
            mode: self.mode,
            retain_until: until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_key_gets_its_duration() {
        let policy = LockPolicy {
            mode: LockMode::Compliance,
            margin: Duration::from_secs(1),
            wal: Duration::from_secs(10),
            backup: Duration::from_secs(20),
            other: Duration::from_secs(30),
        };
        let now = SystemTime::UNIX_EPOCH;
        let until = |key: &str| {
            policy
                .lock_for(&ObjectKey::new(key).unwrap(), now)
                .unwrap()
                .retain_until
                .duration_since(now)
                .unwrap()
                .as_secs()
        };
        assert_eq!(until("wal/0000000100000000/000000010000000000000001"), 10);
        assert_eq!(until("wal/00000002.history"), 10);
        assert_eq!(until("backups/20260101T000000Z/manifest.json"), 20);
        assert_eq!(until("backups/20260101T000000Z/pins/00000001.json"), 20);
        assert_eq!(until("walship.json"), 30);
        assert_eq!(until("audit/2026/x"), 30);
        assert_eq!(until("keys/k1"), 30);
        assert_eq!(
            policy
                .lock_for(&ObjectKey::new("drills/x").unwrap(), now)
                .map(|l| l.mode),
            Some(LockMode::Compliance)
        );
        let partial = "wal/0000000100000000/000000010000000000000001.partial";
        assert_eq!(
            policy.lock_for(&ObjectKey::new(partial).unwrap(), now),
            None
        );
    }
}
