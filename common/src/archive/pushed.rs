//! Receipts for files `walship archive --async` pushed ahead of Postgres's call.
//!
//! When an async call pushes the next `.ready` files, it records each one here only after
//! the object is durably stored and confirmed. When Postgres later calls `walship archive`
//! for such a file, the receipt lets the call return at once, but only if the file on disk
//! still has the size and crc32c the receipt names: a receipt is a claim about exact bytes,
//! never about a name. A crash can lose a receipt (the next call simply checks the
//! repository again) but can never create one for a file that is not stored.
//!
//! Receipts are kept per repository: a cluster archiving into two repositories (`walship
//! archive %p && walship --config other.toml archive %p`) must never take a file stored in
//! one as stored in the other.

use std::path::{Path, PathBuf};

use crate::fsutil::{self, FsError};
use crate::pg::file_name::ArchiveFileName;

/// The receipts directory of one cluster and one repository, under the cluster's `pg_wal`
/// (Postgres ignores subdirectories there, and base backups leave `pg_wal` contents out).
#[derive(Debug, Clone)]
pub struct PushedReceipts {
    dir: PathBuf,
}

/// What a receipt says was durably stored for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Size in bytes of the raw file that was stored.
    pub size: u64,
    /// crc32c of the raw file that was stored.
    pub crc32c: u32,
}

impl PushedReceipts {
    /// The receipts for the repository at `location` ([`crate::repo::Repository::location`]),
    /// kept under `<pg_wal>/walship/archived/<repository>`, where `<repository>` is the first
    /// 16 hex digits of the SHA-256 of `location`.
    pub fn for_repository(pg_wal: &Path, location: &str) -> PushedReceipts {
        PushedReceipts {
            dir: pg_wal
                .join("walship")
                .join("archived")
                .join(repository_dir_name(location)),
        }
    }

    /// Records, durably, that `name` with this size and crc32c is stored in the repository.
    /// Call only after the object is durably stored and confirmed.
    pub fn record(&self, name: &ArchiveFileName, receipt: Receipt) -> Result<(), FsError> {
        fsutil::create_dir_all_durable(&self.dir, 0o700)?;
        let text = format!("{} {:08x}\n", receipt.size, receipt.crc32c);
        fsutil::durable_write(&self.path(name), text.as_bytes(), 0o600)
    }

    /// The receipt for `name`, if one exists and is readable. An unreadable or malformed
    /// receipt counts as none: the caller then checks the repository, which is always safe.
    pub fn get(&self, name: &ArchiveFileName) -> Option<Receipt> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        let (size, crc) = text.trim().split_once(' ')?;
        Some(Receipt {
            size: size.parse().ok()?,
            crc32c: u32::from_str_radix(crc, 16).ok()?,
        })
    }

    /// Forgets `name` (after Postgres has been told it is archived). Best effort: a
    /// leftover receipt is harmless because it is only ever trusted for identical bytes.
    pub fn remove(&self, name: &ArchiveFileName) {
        let _ = std::fs::remove_file(self.path(name));
    }

    fn path(&self, name: &ArchiveFileName) -> PathBuf {
        self.dir.join(name.to_string())
    }
}

/// A short, file-name-safe, stable name for a repository location.
fn repository_dir_name(location: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(location.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::segment::WalSegSize;

    #[test]
    fn record_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let receipts = PushedReceipts::for_repository(dir.path(), "/repo");
        let name = ArchiveFileName::parse(
            "000000010000000000000007",
            WalSegSize::from_mib(16).unwrap(),
        )
        .unwrap();
        assert_eq!(receipts.get(&name), None);
        let receipt = Receipt {
            size: 16 << 20,
            crc32c: 0xdead_beef,
        };
        receipts.record(&name, receipt).unwrap();
        assert_eq!(receipts.get(&name), Some(receipt));
        let other = PushedReceipts::for_repository(dir.path(), "s3://bucket/other");
        assert_eq!(
            other.get(&name),
            None,
            "a receipt belongs to one repository"
        );
        receipts.remove(&name);
        assert_eq!(receipts.get(&name), None);
    }

    #[test]
    fn malformed_receipt_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let receipts = PushedReceipts::for_repository(dir.path(), "/repo");
        let name = ArchiveFileName::parse(
            "000000010000000000000007",
            WalSegSize::from_mib(16).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(&receipts.dir).unwrap();
        std::fs::write(receipts.path(&name), "garbage").unwrap();
        assert_eq!(receipts.get(&name), None);
    }
}
