//! The prefetch spool: WAL segments fetched ahead of Postgres's requests during recovery.
//!
//! Lives under `<pg_wal>/walship/fetch` (same file system as `pg_wal`, so delivery is a
//! hard link, [`FetchSpool::deliver`]). Each entry is the raw segment under its exact WAL file name plus a receipt
//! `<name>.ok` (`super::receipt`) holding its size, crc32c and file version, written after
//! the data was flushed. An entry is delivered only under the name it was fetched for, and
//! only after it is checked against the receipt again ([`FetchSpool::verify`]: the file
//! still at the version the worker wrote, or else one chunked read for the crc32c, either
//! of which binds the bytes to those the worker checked page by page, plus the caller's
//! check of the first page against the name and the cluster); anything that fails the
//! check is thrown away and fetched afresh from the repository, so a crash or a stray file
//! can cost time but never correctness. Receipts and renames are not fsynced: the spool
//! is a cache, re-checked on every use.
//!
//! Two small files tie the spool to its users:
//! - `.origin` ([`SpoolOrigin`]): the repository the entries came from and that repository's
//!   identity. Entries are delivered only to a `fetch` configured with the same repository,
//!   and the page headers are checked against that identity, so a spool hit needs no
//!   repository access at all. A worker for another repository empties the spool first.
//! - `.position`: the segment Postgres asked for last, which the prefetch worker follows.
//!
//! One prefetch worker at a time fills the spool, holding an exclusive `flock` on `.lock`.
//! While it fetches a segment it keeps `<name>.fetching` ([`FetchSpool::fetching`]), so that
//! a `fetch` call for that segment waits for the entry rather than download it a second
//! time beside the worker.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::receipt::{FileVersion, Receipt};
use crate::crc::Crc32c;
use crate::fsutil::{self, FsError};
use crate::pg::file_name::WalFileName;
use crate::pg::segment::WalSegSize;
use crate::repo::RepoIdentity;
use crate::repo::identity::IDENTITY_FORMAT_VERSION;

/// The most bytes `.origin` may have: a URL and a copy of `walship.json`.
const ORIGIN_MAX: u64 = 64 << 10;

/// Suffix of the receipt written after an entry's data.
const RECEIPT_SUFFIX: &str = ".ok";
/// Suffix of the marker a worker keeps while it fetches an entry ([`FetchSpool::fetching`]).
const FETCHING_SUFFIX: &str = ".fetching";
/// How often [`FetchSpool::await_fetching`] looks for the entry.
const AWAIT_POLL: Duration = Duration::from_millis(1);
/// How often [`FetchSpool::await_fetching`] checks that the worker is still alive.
const AWAIT_LIVENESS: Duration = Duration::from_millis(50);
/// The file naming the repository the entries came from.
const ORIGIN_FILE: &str = ".origin";
/// The file naming the segment Postgres asked for last.
const POSITION_FILE: &str = ".position";
/// The worker's lock file.
const LOCK_FILE: &str = ".lock";
/// Entries untouched for this long are removed by [`FetchSpool::clean`].
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The spool of one cluster's `pg_wal`.
#[derive(Debug, Clone)]
pub struct FetchSpool {
    dir: PathBuf,
    seg_size: WalSegSize,
}

/// Where a spool's entries came from: the repository (as configured: URL and S3 endpoint)
/// and its identity when the worker read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolOrigin {
    /// The repository, as configured (URL, and the S3 endpoint when one is set).
    pub repository: String,
    /// The repository's `walship.json`.
    pub identity: RepoIdentity,
}

impl SpoolOrigin {
    /// The origin recorded in the spool directory `dir`, if readable, of a sane size and
    /// of the identity format this build reads.
    pub fn read(dir: &Path) -> Option<SpoolOrigin> {
        let mut bytes = Vec::new();
        let file = File::open(dir.join(ORIGIN_FILE)).ok()?;
        file.take(ORIGIN_MAX + 1).read_to_end(&mut bytes).ok()?;
        let origin: SpoolOrigin = serde_json::from_slice(&bytes).ok()?;
        let current = origin.identity.format_version == IDENTITY_FORMAT_VERSION;
        (current && bytes.len() as u64 <= ORIGIN_MAX).then_some(origin)
    }

    /// The segment size of the origin's cluster.
    pub fn seg_size(&self) -> Option<WalSegSize> {
        WalSegSize::new(u64::from(self.identity.wal_segment_size)).ok()
    }
}

/// The exclusive right to fill the spool, released on drop.
#[derive(Debug)]
pub struct SpoolLock {
    lock: nix::fcntl::Flock<File>,
}

impl SpoolLock {
    /// True while the lock file this lock holds is still the spool's: false once the spool
    /// directory was removed or replaced (a data directory restored again at the same
    /// path), when the worker holding it must stop, since it no longer keeps others out.
    pub fn still_holds(&self, spool: &FetchSpool) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(held) = self.lock.metadata() else {
            return false;
        };
        fs::metadata(spool.dir.join(LOCK_FILE))
            .is_ok_and(|current| current.dev() == held.dev() && current.ino() == held.ino())
    }
}

impl FetchSpool {
    /// The spool directory under a `pg_wal` directory: `<pg_wal>/walship/fetch`.
    pub fn dir_for_pg_wal(pg_wal: &Path) -> PathBuf {
        pg_wal.join("walship").join("fetch")
    }

    /// The spool under `<pg_wal>/walship/fetch`, for a cluster with segments of `seg_size`.
    pub fn for_pg_wal(pg_wal: &Path, seg_size: WalSegSize) -> FetchSpool {
        FetchSpool::in_dir(FetchSpool::dir_for_pg_wal(pg_wal), seg_size)
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
        let path = self.dir.join(LOCK_FILE);
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
            Ok(lock) => Ok(Some(SpoolLock { lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(FsError {
                action: "lock",
                path,
                source: errno.into(),
            }),
        }
    }

    /// True when a prefetch worker holds the spool now (so none needs starting).
    pub fn worker_running(&self) -> bool {
        matches!(self.try_lock(), Ok(None))
    }

    /// The origin of the entries, if recorded.
    pub fn origin(&self) -> Option<SpoolOrigin> {
        SpoolOrigin::read(&self.dir)
    }

    /// Makes `origin` the spool's origin. Entries from any other origin are removed first,
    /// so that they can never be delivered to a `fetch` of this one.
    pub fn adopt_origin(&self, origin: &SpoolOrigin) -> Result<(), FsError> {
        self.create()?;
        if self.origin().as_ref() == Some(origin) {
            return Ok(());
        }
        self.remove_entries(|_| true);
        let json = serde_json::to_vec(origin).map_err(|e| FsError {
            action: "encode",
            path: self.dir.join(ORIGIN_FILE),
            source: std::io::Error::other(e),
        })?;
        fsutil::replace_unsynced(&self.dir.join(ORIGIN_FILE), &json, 0o600)
    }

    /// Records that Postgres asked for `name` (the worker prefetches what follows it).
    /// Best effort: without it the worker only falls behind.
    ///
    /// Overwritten in place, not replaced by a rename: on ext4 a rename over an existing file
    /// flushes the new file's data and frees the old one's block (a discard, waited for, on
    /// a file system mounted with `discard`), about 0.3 ms of every `fetch` call. The
    /// position is only a hint: a reader that catches a write half done reads a name that
    /// does not parse or the wrong segment, so the worker prefetches the wrong window until
    /// its next look (every few milliseconds); every entry is still checked by name when
    /// delivered.
    pub fn set_position(&self, name: &WalFileName) {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        if self.create().is_err() {
            return;
        }
        let text = name.to_string();
        let path = self.dir.join(POSITION_FILE);
        let Ok(file) = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        else {
            return;
        };
        if file.write_all_at(text.as_bytes(), 0).is_ok()
            && file.metadata().is_ok_and(|m| m.len() != text.len() as u64)
        {
            let _ = file.set_len(text.len() as u64);
        }
    }

    /// The segment Postgres asked for last, if recorded.
    pub fn position(&self) -> Option<WalFileName> {
        let text = fs::read_to_string(self.dir.join(POSITION_FILE)).ok()?;
        WalFileName::parse(text.trim(), self.seg_size).ok()
    }

    /// Where the entry for `name` lives (whether or not it exists yet).
    pub fn entry_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(name.to_string())
    }

    fn receipt_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(format!("{name}{RECEIPT_SUFFIX}"))
    }

    fn fetching_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(format!("{name}{FETCHING_SUFFIX}"))
    }

    /// Marks `name` as being fetched by the worker until the returned guard is dropped, so
    /// that a `fetch` call for it waits for the entry ([`await_fetching`](Self::await_fetching))
    /// instead of downloading the same segment beside the worker. Best effort.
    pub fn fetching(&self, name: &WalFileName) -> FetchingMark {
        let path = self.fetching_path(name);
        let _ = File::create(&path);
        FetchingMark { path }
    }

    /// While the worker is fetching `name` (its mark exists and the worker still holds the
    /// spool), waits for the entry, for at most `limit`. Returns at once otherwise: a
    /// segment no worker is fetching (for example one the repository does not have yet) is
    /// answered without delay.
    pub fn await_fetching(&self, name: &WalFileName, limit: Duration) {
        let start = std::time::Instant::now();
        let mut alive_checked = start;
        let (mark, receipt) = (self.fetching_path(name), self.receipt_path(name));
        while mark.exists() && !receipt.exists() && start.elapsed() < limit {
            if alive_checked.elapsed() >= AWAIT_LIVENESS {
                if !self.worker_running() {
                    return;
                }
                alive_checked = std::time::Instant::now();
            }
            std::thread::sleep(AWAIT_POLL);
        }
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
        let version = fs::metadata(&target)
            .ok()
            .map(|meta| FileVersion::of(&meta));
        let receipt = Receipt {
            size,
            crc32c,
            version,
        };
        fsutil::replace_unsynced(&self.receipt_path(name), receipt.encode().as_bytes(), 0o600)
    }

    /// Checks the entry for `name` against its receipt and returns its first `head` bytes
    /// (for the caller's header check). An entry still at the version the receipt records
    /// is only read that far (see [`super::receipt`]); any other is read once, in
    /// [`READ_BUFFER`] chunks, for its crc32c. A missing, partial or mismatching entry, or
    /// one that is not exactly one segment long (whatever its receipt says), is removed and
    /// `None` returned.
    pub fn verify(&self, name: &WalFileName, head: usize) -> Option<Vec<u8>> {
        let checked = fs::read_to_string(self.receipt_path(name))
            .ok()
            .and_then(|text| Receipt::parse(&text))
            .and_then(|receipt| self.check_entry(name, &receipt, head));
        if checked.is_none() {
            self.remove(name);
        }
        checked
    }

    /// [`FetchSpool::verify`]'s check of an entry against a receipt.
    fn check_entry(&self, name: &WalFileName, receipt: &Receipt, head: usize) -> Option<Vec<u8>> {
        let mut file = File::open(self.entry_path(name)).ok()?;
        let meta = file.metadata().ok()?;
        if meta.len() != receipt.size || receipt.size != self.seg_size.as_u64() {
            return None;
        }
        if receipt.version == Some(FileVersion::of(&meta)) {
            let mut first = vec![0; head];
            file.read_exact(&mut first).ok()?;
            return Some(first);
        }
        let (size, crc, first) = read_summary(&mut file, head).ok()?;
        (size == receipt.size && crc == receipt.crc32c).then_some(first)
    }

    /// Hands the entry for `name` over to `dest` as a second name of the same file (a hard
    /// link, or a link beside `dest` renamed over it when `dest` exists), keeping the entry
    /// and its receipt: at the end of a recovery Postgres asks again for the last segment it
    /// replayed, and that request is then served from here rather than downloaded and
    /// decoded afresh (15-23 ms on the bench machine). The link changes the file's change
    /// time, so a second delivery reads the entry whole for its crc32c, and a file Postgres
    /// has written to since is caught by it. [`FetchSpool::clean`] removes the entry once
    /// Postgres has moved two segments past it. Where links are refused, the entry is
    /// renamed to `dest` as before.
    pub fn deliver(&self, name: &WalFileName, dest: &Path) -> Result<(), FsError> {
        let entry = self.entry_path(name);
        match fsutil::link_unsynced(&entry, dest) {
            Ok(()) => Ok(()),
            Err(_) => {
                fsutil::rename_unsynced(&entry, dest)?;
                let _ = fs::remove_file(self.receipt_path(name));
                Ok(())
            }
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
        let now = SystemTime::now();
        self.remove_entries(|entry| {
            let behind = match entry.wal {
                // The segment just before `current` stays: it may be asked for again (see
                // `deliver`).
                Some(name) => name.segno().0.saturating_add(1) < current.segno().0,
                None => !entry.temp,
            };
            let stale = entry
                .modified
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_AFTER);
            behind || stale
        });
    }

    /// Removes every entry, receipt and temporary file for which `doomed` says so (never
    /// the lock, origin or position files). Best effort.
    fn remove_entries(&self, doomed: impl Fn(&EntryInfo) -> bool) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(text) = file_name.to_str() else {
                continue;
            };
            if [LOCK_FILE, ORIGIN_FILE, POSITION_FILE].contains(&text) {
                continue;
            }
            let base = text
                .strip_suffix(RECEIPT_SUFFIX)
                .or_else(|| text.strip_suffix(FETCHING_SUFFIX))
                .unwrap_or(text);
            let info = EntryInfo {
                wal: WalFileName::parse(base, self.seg_size).ok(),
                temp: fsutil::is_temp_name(text),
                modified: entry.metadata().and_then(|m| m.modified()).ok(),
            };
            if doomed(&info) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The worker's mark on an entry it is fetching; removed when dropped.
#[derive(Debug)]
pub struct FetchingMark {
    path: PathBuf,
}

impl Drop for FetchingMark {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What [`FetchSpool::remove_entries`] knows of one file.
struct EntryInfo {
    /// The segment, for an entry or its receipt.
    wal: Option<WalFileName>,
    /// Whether it is a temporary file.
    temp: bool,
    /// Its modification time.
    modified: Option<SystemTime>,
}

/// Bytes read at a time when an entry is verified.
const READ_BUFFER: usize = 256 * 1024;

/// Size, crc32c and first `head` bytes of a file, read once in [`READ_BUFFER`] chunks.
fn read_summary(file: &mut File, head: usize) -> std::io::Result<(u64, u32, Vec<u8>)> {
    // Small enough to stay in the L2 cache between the copy and the crc, and below the
    // binary's mmap threshold (a 1 MiB buffer was mapped, faulted in and unmapped per call).
    let mut buf = vec![0u8; READ_BUFFER];
    let mut first = Vec::with_capacity(head);
    // Hardware CRC-32C by carry-less multiplication (`crate::crc`): half the time of the
    // SSE4.2 `crc32` instruction on a 16 MiB entry, on the path of every restored segment.
    let (mut size, mut crc) = (0u64, Crc32c::default());
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, crc.value(), first));
        }
        let chunk = &buf[..n];
        let wanted = head.saturating_sub(first.len()).min(n);
        first.extend_from_slice(&chunk[..wanted]);
        crc.update(chunk);
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_and_crc(path: &Path) -> (u64, u32) {
        let bytes = fs::read(path).unwrap();
        (bytes.len() as u64, crate::crc::crc32c(&bytes))
    }

    fn name(s: &str) -> WalFileName {
        WalFileName::parse(s, size()).unwrap()
    }

    fn size() -> WalSegSize {
        WalSegSize::from_mib(16).unwrap()
    }

    /// A spool in a new `pg_wal` holding `content` as the committed entry for segment 5,
    /// with the receipt the worker would write for it.
    fn spool_with_entry(content: &[u8]) -> (tempfile::TempDir, FetchSpool, WalFileName) {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        let n = name("000000010000000000000005");
        let tmp = spool.dir().join(".walship-tmp.x");
        fs::write(&tmp, content).unwrap();
        let (len, crc) = size_and_crc(&tmp);
        spool.commit(&n, &tmp, len, crc).unwrap();
        (pg_wal, spool, n)
    }

    /// A whole segment starting with `start`, zeros after it.
    fn segment_starting_with(start: &[u8]) -> Vec<u8> {
        let mut segment = start.to_vec();
        segment.resize(size().as_u64() as usize, 0);
        segment
    }

    #[test]
    fn commit_then_take_verified() {
        let segment = segment_starting_with(b"segment bytes");
        let (pg_wal, spool, n) = spool_with_entry(&segment);
        assert!(spool.contains(&n));
        assert_eq!(spool.verify(&n, 7).as_deref(), Some(&b"segment"[..]));
        assert_eq!(spool.verify(&n, 13).as_deref(), Some(&b"segment bytes"[..]));
        // Another timeline's name is a different entry.
        assert_eq!(spool.verify(&name("000000020000000000000005"), 7), None);
        let dest = pg_wal.path().join("RECOVERYXLOG");
        spool.deliver(&n, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), segment);
    }

    /// Postgres asks again for the last segment it replayed at the end of a recovery: the
    /// delivered entry stays, is delivered again (over an existing file too) after a whole
    /// read, and goes once Postgres is two segments past it.
    #[test]
    fn a_delivered_entry_serves_the_same_request_again_until_two_segments_later() {
        let segment = segment_starting_with(b"segment bytes");
        let (pg_wal, spool, n) = spool_with_entry(&segment);
        let dest = pg_wal.path().join("RECOVERYXLOG");
        spool.deliver(&n, &dest).unwrap();
        // What Postgres does with the file it got: renames it to the segment's name.
        fs::rename(&dest, pg_wal.path().join(n.to_string())).unwrap();
        let next = name("000000010000000000000006");
        spool.clean(&next);
        assert!(spool.contains(&n), "the segment just behind stays");
        spool.clean(&n);
        assert_eq!(spool.verify(&n, 7).as_deref(), Some(&b"segment"[..]));
        fs::write(&dest, b"a stale RECOVERYXLOG").unwrap();
        spool.deliver(&n, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), segment);
        spool.clean(&name("000000010000000000000007"));
        assert!(!spool.contains(&n), "two segments later the entry is gone");
        assert_eq!(
            fs::read(&dest).unwrap(),
            segment,
            "Postgres's copy is untouched"
        );
    }

    /// Postgres writing into the file it was given (a recycled segment) changes the entry
    /// that shares it; the entry is then read whole, refused and removed.
    #[test]
    fn a_delivered_entry_written_to_afterwards_is_refused() {
        let segment = segment_starting_with(b"segment bytes");
        let (pg_wal, spool, n) = spool_with_entry(&segment);
        let dest = pg_wal.path().join("RECOVERYXLOG");
        spool.deliver(&n, &dest).unwrap();
        let mut recycled = segment.clone();
        recycled[1 << 20] = 7;
        fs::OpenOptions::new()
            .write(true)
            .open(&dest)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &recycled))
            .unwrap();
        assert_eq!(spool.verify(&n, 7), None);
        assert!(!spool.contains(&n));
    }

    #[test]
    fn an_entry_shorter_than_a_segment_is_refused_even_with_its_receipt() {
        let (_pg_wal, spool, n) = spool_with_entry(b"segment bytes");
        assert_eq!(spool.verify(&n, 7), None);
        assert!(!spool.contains(&n), "the short entry is removed");
    }

    /// Writes `content` over the entry for `n` in place (same inode), once the clock has
    /// moved past the commit's change time (file times advance by clock ticks).
    fn overwrite_later(spool: &FetchSpool, n: &WalFileName, content: &[u8]) {
        std::thread::sleep(Duration::from_millis(50));
        fs::write(spool.entry_path(n), content).unwrap();
    }

    #[test]
    fn tampered_entry_is_discarded() {
        let (_pg_wal, spool, n) = spool_with_entry(&segment_starting_with(b"segment bytes"));
        // Same length, one byte changed (and past the first page, which the caller checks
        // against the name): the file's version changed, so it is read whole, and the
        // crc32c tells.
        let mut changed = segment_starting_with(b"segment bytes");
        changed[1 << 20] = 1;
        overwrite_later(&spool, &n, &changed);
        assert_eq!(spool.verify(&n, 7), None);
        assert!(!spool.contains(&n), "a bad entry must be removed");
    }

    #[test]
    fn only_an_entry_at_another_version_than_its_receipts_is_read_whole() {
        let segment = segment_starting_with(b"segment bytes");
        // At the recorded version, the crc32c is not read: a receipt with a wrong crc32c
        // but the file's version is trusted (only the worker writes receipts).
        let (_pg_wal, spool, n) = spool_with_entry(&segment);
        let text = fs::read_to_string(spool.receipt_path(&n)).unwrap();
        let mut receipt = Receipt::parse(&text).unwrap();
        assert!(receipt.version.is_some(), "{text}");
        receipt.crc32c ^= 1;
        fs::write(spool.receipt_path(&n), receipt.encode()).unwrap();
        assert_eq!(spool.verify(&n, 7).as_deref(), Some(&b"segment"[..]));
        // At another version, it is: the same wrong crc32c now throws the entry away...
        std::thread::sleep(Duration::from_millis(50));
        set_mode(&spool.entry_path(&n), 0o400);
        assert_eq!(spool.verify(&n, 7), None);
        // ... and the right one keeps it (a chmod changes the version, not the bytes).
        let (_pg_wal, spool, n) = spool_with_entry(&segment);
        std::thread::sleep(Duration::from_millis(50));
        set_mode(&spool.entry_path(&n), 0o400);
        assert_eq!(spool.verify(&n, 7).as_deref(), Some(&b"segment"[..]));
    }

    #[test]
    fn a_receipt_without_a_version_is_checked_by_its_crc32c() {
        let segment = segment_starting_with(b"segment bytes");
        let (_pg_wal, spool, n) = spool_with_entry(&segment);
        let (len, crc) = size_and_crc(&spool.entry_path(&n));
        fs::write(spool.receipt_path(&n), format!("{len} {crc:08x}\n")).unwrap();
        assert_eq!(spool.verify(&n, 7).as_deref(), Some(&b"segment"[..]));
        let (_pg_wal, spool, n) = spool_with_entry(&segment);
        fs::write(spool.receipt_path(&n), format!("{len} {:08x}\n", crc ^ 1)).unwrap();
        assert_eq!(spool.verify(&n, 7), None);
        assert!(!spool.contains(&n));
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
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

    #[test]
    fn origin_and_position() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        assert_eq!(spool.origin(), None);
        assert_eq!(spool.position(), None);
        let origin = SpoolOrigin {
            repository: "file:///repo".into(),
            identity: RepoIdentity::new(7, 15, 16 << 20),
        };
        spool.adopt_origin(&origin).unwrap();
        let n = name("000000010000000000000005");
        fs::write(spool.entry_path(&n), b"x").unwrap();
        fs::write(spool.receipt_path(&n), b"1 0").unwrap();
        spool.set_position(&n);
        assert_eq!(spool.position(), Some(n));
        // The same origin keeps the entries; another one empties the spool.
        spool.adopt_origin(&origin).unwrap();
        assert!(spool.contains(&n));
        let other = SpoolOrigin {
            repository: "file:///other".into(),
            ..origin
        };
        spool.adopt_origin(&other).unwrap();
        assert!(!spool.contains(&n), "entries of another repository must go");
        assert_eq!(spool.origin(), Some(other));
        assert_eq!(spool.position(), Some(n));
    }

    #[test]
    fn position_is_overwritten_in_place_whatever_was_there() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        let path = spool.dir().join(POSITION_FILE);
        // Something longer than a name (an older walship's, or junk) is cut to the name.
        fs::write(&path, "000000010000000000000009 and then some junk\n").unwrap();
        let n = name("000000010000000000000005");
        spool.set_position(&n);
        assert_eq!(spool.position(), Some(n));
        assert_eq!(fs::read_to_string(&path).unwrap(), n.to_string());
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = ino(&path);
        let next = name("000000010000000000000006");
        spool.set_position(&next);
        assert_eq!(spool.position(), Some(next));
        assert_eq!(ino(&path), before, "the same file, written in place");
    }

    #[test]
    fn one_worker_at_a_time() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        assert!(!spool.worker_running());
        let lock = spool.try_lock().unwrap().expect("first lock");
        assert!(spool.worker_running());
        assert!(spool.try_lock().unwrap().is_none());
        drop(lock);
        assert!(!spool.worker_running());
    }

    #[test]
    fn a_lock_stops_holding_when_the_spool_is_replaced() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        let lock = spool.try_lock().unwrap().expect("lock");
        assert!(lock.still_holds(&spool));
        std::fs::remove_dir_all(spool.dir()).unwrap();
        assert!(!lock.still_holds(&spool));
        // A spool made again at the same path (a data directory restored anew) is not
        // guarded by the old lock, and a new worker can take it.
        let new_lock = spool.try_lock().unwrap().expect("the new spool's lock");
        assert!(!lock.still_holds(&spool));
        assert!(new_lock.still_holds(&spool));
    }

    #[test]
    fn await_fetching_waits_only_for_a_marked_entry_of_a_live_worker() {
        let pg_wal = tempfile::tempdir().unwrap();
        let spool = FetchSpool::for_pg_wal(pg_wal.path(), size());
        spool.create().unwrap();
        let wal = name("000000010000000000000003");
        let limit = Duration::from_secs(5);
        // No mark: at once.
        let start = std::time::Instant::now();
        spool.await_fetching(&wal, limit);
        assert!(start.elapsed() < Duration::from_secs(1));
        // A mark but no worker holding the spool: at once (after one liveness check).
        let mark = spool.fetching(&wal);
        let start = std::time::Instant::now();
        spool.await_fetching(&wal, limit);
        assert!(start.elapsed() < Duration::from_secs(1));
        // A live worker's mark: until the mark goes.
        let lock = spool.try_lock().unwrap().expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(mark);
            lock
        });
        let start = std::time::Instant::now();
        spool.await_fetching(&wal, limit);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        drop(release.join().unwrap());
        assert!(!spool.fetching_path(&wal).exists());
    }
}
