//! The prefetch spool: WAL segments fetched ahead of Postgres's requests during recovery.
//!
//! Lives under `<pg_wal>/walship/fetch` (same file system as `pg_wal`, so delivery is a
//! rename). Each entry is the raw segment under its exact WAL file name plus a receipt
//! `<name>.ok` holding its size and crc32c, written after the data. An entry is delivered
//! only under the name it was fetched for, and only after its bytes are checked against the
//! receipt again; anything that fails the check is thrown away and fetched afresh from the
//! repository, so a crash or a stray file can cost time but never correctness.
//!
//! One prefetch worker at a time fills the spool, holding an exclusive `flock` on `.lock`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fsutil::{self, FsError};
use crate::pg::file_name::WalFileName;
use crate::pg::segment::WalSegSize;

/// Suffix of the receipt written after an entry's data.
const RECEIPT_SUFFIX: &str = ".ok";
/// Entries untouched for this long are removed by [`FetchSpool::clean`].
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The spool of one cluster's `pg_wal`.
#[derive(Debug, Clone)]
pub struct FetchSpool {
    dir: PathBuf,
    seg_size: WalSegSize,
}

/// The exclusive right to fill the spool, released on drop.
#[derive(Debug)]
pub struct SpoolLock {
    _lock: nix::fcntl::Flock<File>,
}

impl FetchSpool {
    /// The spool under `<pg_wal>/walship/fetch`, for a cluster with segments of `seg_size`.
    pub fn for_pg_wal(pg_wal: &Path, seg_size: WalSegSize) -> FetchSpool {
        FetchSpool::in_dir(pg_wal.join("walship").join("fetch"), seg_size)
    }

    /// A spool in `dir` (the `fetch.spool_dir` setting).
    pub fn in_dir(dir: PathBuf, seg_size: WalSegSize) -> FetchSpool {
        FetchSpool { dir, seg_size }
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the spool directory if needed.
    pub fn create(&self) -> Result<(), FsError> {
        fsutil::create_dir_all_durable(&self.dir, 0o700)
    }

    /// Takes the exclusive right to fill the spool, or `None` if a worker already has it.
    pub fn try_lock(&self) -> Result<Option<SpoolLock>, FsError> {
        self.create()?;
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| FsError {
                action: "open lock file",
                path: path.clone(),
                source,
            })?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(SpoolLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(FsError {
                action: "lock",
                path,
                source: errno.into(),
            }),
        }
    }

    /// Where the entry for `name` lives (whether or not it exists yet).
    pub fn entry_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(name.to_string())
    }

    fn receipt_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(format!("{name}{RECEIPT_SUFFIX}"))
    }

    /// True if a complete entry (data and receipt) exists for `name`.
    pub fn contains(&self, name: &WalFileName) -> bool {
        self.receipt_path(name).exists() && self.entry_path(name).exists()
    }

    /// Records a complete entry: `data` (a file inside the spool directory holding the raw
    /// segment) is renamed to the entry for `name`, then the receipt is written.
    pub fn commit(
        &self,
        name: &WalFileName,
        data: &Path,
        size: u64,
        crc32c: u32,
    ) -> Result<(), FsError> {
        let target = self.entry_path(name);
        fsutil::rename_unsynced(data, &target)?;
        let receipt = format!("{size} {crc32c:08x}\n");
        fsutil::durable_write(&self.receipt_path(name), receipt.as_bytes(), 0o600)
    }

    /// The verified entry for `name`: its path, once its bytes match the receipt again.
    /// A missing, partial or mismatching entry is removed and `None` returned.
    pub fn take_verified(&self, name: &WalFileName) -> Option<PathBuf> {
        let receipt = fs::read_to_string(self.receipt_path(name)).ok()?;
        let path = self.entry_path(name);
        let expected = parse_receipt(&receipt);
        let found = size_and_crc(&path).ok();
        if expected.is_some() && expected == found {
            Some(path)
        } else {
            self.remove(name);
            None
        }
    }

    /// Removes the entry for `name` (data and receipt). Best effort.
    pub fn remove(&self, name: &WalFileName) {
        let _ = fs::remove_file(self.receipt_path(name));
        let _ = fs::remove_file(self.entry_path(name));
    }

    /// Removes entries Postgres will not ask for any more: segments before `current`
    /// (recovery moves forward), entries and temporary files left for an hour, and
    /// anything that is not a spool entry.
    pub fn clean(&self, current: &WalFileName) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(text) = file_name.to_str() else {
                continue;
            };
            if text == ".lock" {
                continue;
            }
            let base = text.strip_suffix(RECEIPT_SUFFIX).unwrap_or(text);
            let behind = match WalFileName::parse(base, self.seg_size) {
                Ok(name) => name.segno() < current.segno(),
                Err(_) => !fsutil::is_temp_name(text),
            };
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if behind || stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn parse_receipt(text: &str) -> Option<(u64, u32)> {
    let (size, crc) = text.trim().split_once(' ')?;
    Some((size.parse().ok()?, u32::from_str_radix(crc, 16).ok()?))
}

/// Size and crc32c of a file, read in 1 MiB chunks.
pub fn size_and_crc(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> WalFileName {
        WalFileName::parse(s, size()).unwrap()
    }

    fn size() -> WalSegSize {
        WalSegSize::from_mib(16).unwrap()
    }

    #[test]
    fn commit_then_take_verified() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        let n = name("000000010000000000000005");
        let tmp = spool.dir().join(".walship-tmp.x");
        fs::write(&tmp, b"segment bytes").unwrap();
        let (size, crc) = size_and_crc(&tmp).unwrap();
        spool.commit(&n, &tmp, size, crc).unwrap();
        assert!(spool.contains(&n));
        assert_eq!(spool.take_verified(&n), Some(spool.entry_path(&n)));
        // Another timeline's name is a different entry.
        assert_eq!(spool.take_verified(&name("000000020000000000000005")), None);
    }

    #[test]
    fn tampered_entry_is_discarded() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        let n = name("000000010000000000000005");
        let tmp = spool.dir().join(".walship-tmp.x");
        fs::write(&tmp, b"segment bytes").unwrap();
        let (size, crc) = size_and_crc(&tmp).unwrap();
        spool.commit(&n, &tmp, size, crc).unwrap();
        fs::write(spool.entry_path(&n), b"segment bytez").unwrap();
        assert_eq!(spool.take_verified(&n), None);
        assert!(!spool.contains(&n), "a bad entry must be removed");
    }

    #[test]
    fn clean_removes_entries_behind_and_foreign_files() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        for f in [
            "000000010000000000000003",
            "000000010000000000000003.ok",
            "000000010000000000000009",
            "junk",
        ] {
            fs::write(spool.dir().join(f), b"x").unwrap();
        }
        spool.clean(&name("000000010000000000000005"));
        let mut left: Vec<String> = fs::read_dir(spool.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["000000010000000000000009"]);
    }
}
