//! Crash-safe file-system primitives: the one place that knows how to make a file durable.
//!
//! A file is written durably by writing a temporary file in the same directory, fsyncing
//! it, renaming it over the target and fsyncing the directory, so that after a crash the
//! target holds either the old or the new content, never a mix. The local storage backend
//! and restore both build on these functions; nothing else should call `std::fs::rename`.
//!
//! Temporary files are named `.walship-tmp.<name>.<pid>.<n>` ([`TEMP_PREFIX`]); a crash can
//! leave one behind, and readers skip such names ([`is_temp_name`]).
//!
//! All functions here block; call them from `spawn_blocking` in async code.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name prefix of every temporary file made here.
pub const TEMP_PREFIX: &str = ".walship-tmp.";

/// A file-system call that failed, with the path and a present-tense action.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done ("create", "write", "fsync", "rename", ...).
    pub action: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// True when the OS said the path does not exist.
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }

    /// True when the OS said the target already exists (a no-replace rename or link).
    pub fn is_already_exists(&self) -> bool {
        self.source.kind() == io::ErrorKind::AlreadyExists
    }
}

/// Builds a closure that wraps an `io::Error` into an [`FsError`] naming `path`.
fn at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a file type is, for messages: "a directory", "a FIFO", "a device node", ...
pub fn describe_file_type(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device node"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// True when `name` (a single path component) is one of our temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// A fresh temporary path beside `target`, in the same directory (so a rename is atomic).
pub fn temp_path_for(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    target.with_file_name(format!("{TEMP_PREFIX}{name}.{pid}.{n}"))
}

/// The directory holding `path` ("." for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (creations, renames, removals) to stable storage.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    let handle = File::open(dir).map_err(at("open directory", dir))?;
    handle.sync_all().map_err(at("fsync directory", dir))
}

/// Creates `dir` and any missing parents with permission bits `mode` (applied exactly,
/// whatever the umask), and fsyncs the parent of each directory it created so that the
/// new entries survive a crash. Existing directories are left as they are.
pub fn create_dir_all_durable(dir: &Path, mode: u32) -> Result<(), FsError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(FsError {
                action: "create directory",
                path: dir.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at("stat", dir)(e)),
    }
    let parent = parent_of(dir);
    create_dir_all_durable(parent, mode)?;
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(at("set permissions of", dir))?;
            fsync_dir(parent)
        }
        // Another writer created it between our stat and mkdir: fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(at("create directory", dir)(e)),
    }
}

/// Renames `from` to `to` (same file system) and fsyncs the directories involved, so the
/// rename survives a crash. Replaces `to` if it exists.
pub fn durable_rename(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(at("rename", to))?;
    sync_rename_dirs(from, to)
}

/// Renames `from` to `to` only if `to` does not exist, atomically: of two writers racing
/// for the same name exactly one wins, the other gets an error for which
/// [`FsError::is_already_exists`] is true. Then fsyncs the directories involved.
///
/// Uses `renameat2(RENAME_NOREPLACE)`; on file systems without it, `link` + `unlink`
/// (also atomic with respect to the target name).
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<(), FsError> {
    rename_noreplace_raw(from, to).map_err(at("rename (no replace) to", to))?;
    sync_rename_dirs(from, to)
}

fn rename_noreplace_raw(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{RenameFlags, renameat2};
        match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {} // fall back to link
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

fn sync_rename_dirs(from: &Path, to: &Path) -> Result<(), FsError> {
    let to_dir = parent_of(to);
    fsync_dir(to_dir)?;
    let from_dir = parent_of(from);
    if from_dir != to_dir {
        fsync_dir(from_dir)?;
    }
    Ok(())
}

/// A temporary file beside its final path, removed on drop unless [`TempFile::persist`]
/// moved it into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a new, empty temporary file for `target` with permission bits `mode`
    /// (exactly, whatever the umask). The target's directory must exist.
    pub fn create_for(target: &Path, mode: u32) -> Result<TempFile, FsError> {
        let path = temp_path_for(target);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(at("create", &path))?;
        let temp = TempFile {
            path,
            file: Some(file),
        };
        temp.file()?
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(at("set permissions of", &temp.path))?;
        Ok(temp)
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writing.
    pub fn file(&self) -> Result<&File, FsError> {
        self.file.as_ref().ok_or_else(|| FsError {
            action: "write",
            path: self.path.clone(),
            source: io::Error::other("temporary file already closed"),
        })
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        let path = self.path.clone();
        let mut file = self.file()?;
        file.write_all(bytes).map_err(at("write", &path))
    }

    /// Fsyncs the content, closes the file, and moves it to `target`: replacing it, or
    /// with `no_replace` failing ([`FsError::is_already_exists`]) if `target` exists.
    /// Fsyncs the directory afterwards. On error the temporary file is removed.
    pub fn persist(mut self, target: &Path, no_replace: bool) -> Result<(), FsError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(at("fsync", &self.path))?;
        }
        let result = if no_replace {
            rename_noreplace(&self.path, target)
        } else {
            durable_rename(&self.path, target)
        };
        if result.is_ok() {
            self.path = PathBuf::new(); // nothing left to clean up
        }
        result
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            // Best effort: a leftover temp file is harmless, readers skip it.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` durably (temp file, fsync, rename, fsync directory) with
/// permission bits `mode`, replacing any previous content. The directory must exist.
pub fn durable_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut temp = TempFile::create_for(path, mode)?;
    temp.write_all(bytes)?;
    temp.persist(path, false)
}

/// Like [`durable_write`] but never replaces: if `path` exists the call fails with
/// [`FsError::is_already_exists`] and `path` is untouched.
pub fn durable_write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut temp = TempFile::create_for(path, mode)?;
    temp.write_all(bytes)?;
    temp.persist(path, true)
}

/// Asks the kernel to drop the clean cached pages of the file at `path`
/// (`posix_fadvise(POSIX_FADV_DONTNEED)`), for files walship wrote or handed over and will
/// not read soon: their memory is then reused for the next file instead of the kernel taking
/// memory it has not used recently, which on a VM whose host reclaims freed guest memory
/// made writing a new file 3 to 4 times slower. Advice only: nothing about the file changes,
/// and errors are ignored.
pub fn drop_cached_pages(path: &Path) {
    if let Ok(file) = File::open(path) {
        drop_cached_pages_of(&file);
    }
}

/// [`drop_cached_pages`] for a file already open (after its `fsync`, so that every page is
/// clean and can go).
pub fn drop_cached_pages_of(file: &File) {
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(file),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Makes a file walship has finished writing durable (`fsync`) and then releases its cached
/// pages ([`drop_cached_pages_of`]): how restore ends every file it writes, which Postgres
/// reads again only where replay needs it.
pub fn sync_and_release(file: &File, path: &Path) -> Result<(), FsError> {
    file.sync_all().map_err(at("fsync", path))?;
    drop_cached_pages_of(file);
    Ok(())
}

/// Writeback of a file written front to back, kept to about one `chunk` in flight
/// (`sync_file_range`): each time another chunk has been written, the writeback started for
/// the chunks before it is waited for and the new chunk's is started. Left to the kernel, or
/// to one `fdatasync` at the end, a whole 16 MiB segment reaches the disk queue at once, and
/// any flush another process issues meanwhile (Postgres's fsync of `pg_control` or of a
/// restored segment, in its startup process) waits behind all of it; paced, it waits for at
/// most a chunk (BENCHMARKS.md, "Replay through fetch: a quieter worker"). Pacing is advice
/// about timing only: its errors are ignored, and the caller's final flush reports any.
#[derive(Debug)]
pub struct PacedWriteback {
    chunk: u64,
    /// Bytes written so far, up to where writeback has been started, and up to where it
    /// has been waited for (`waited <= started <= written`).
    written: u64,
    started: u64,
    waited: u64,
}

impl PacedWriteback {
    /// Paces the writeback of a file just created, `chunk` bytes at a time.
    pub fn new(chunk: u64) -> PacedWriteback {
        PacedWriteback {
            chunk: chunk.max(1),
            written: 0,
            started: 0,
            waited: 0,
        }
    }

    /// Records that `len` more bytes were written to the end of `file`.
    pub fn wrote(&mut self, file: &File, len: usize) {
        self.written += len as u64;
        if self.written - self.started < self.chunk {
            return;
        }
        // The previous chunk: everything before it was waited for already.
        if self.started > self.waited {
            let previous = self.started - self.waited;
            sync_file_range(file, self.waited, previous, SyncRange::WaitForStarted);
            self.waited = self.started;
        }
        sync_file_range(
            file,
            self.started,
            self.written - self.started,
            SyncRange::Start,
        );
        self.started = self.written;
    }
}

/// What [`sync_file_range`] does with its range.
#[derive(Debug, Clone, Copy)]
enum SyncRange {
    /// Start writeback of the dirty pages (`SYNC_FILE_RANGE_WRITE`).
    Start,
    /// Wait for writeback already under way (`SYNC_FILE_RANGE_WAIT_BEFORE | WAIT_AFTER`).
    WaitForStarted,
}

/// `sync_file_range(2)` over `len` (> 0) bytes at `offset` of `file`; errors are ignored
/// (see [`PacedWriteback`]). Neither nix nor rustix wraps it.
#[allow(unsafe_code)]
fn sync_file_range(file: &File, offset: u64, len: u64, what: SyncRange) {
    use std::os::fd::AsRawFd;
    let flags = match what {
        SyncRange::Start => libc::SYNC_FILE_RANGE_WRITE,
        SyncRange::WaitForStarted => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the call reads no memory of this process; the descriptor is borrowed from an
    // open `File` for the duration of the call.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
}

/// Renames `from` to `to` atomically (same directory or file system), without any fsync:
/// for files whose durability does not matter, only that no reader sees half of them
/// (`restore_command` output, the prefetch spool).
pub fn rename_unsynced(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(at("rename", from))
}

/// Gives the file `from` the second name `to` (a hard link), replacing a file already at
/// `to` atomically through a link beside it renamed over it; without any fsync (see
/// [`rename_unsynced`]). Fails where the file system refuses links, or across file systems.
pub fn link_unsynced(from: &Path, to: &Path) -> Result<(), FsError> {
    match fs::hard_link(from, to) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let temp = temp_path_for(to);
            fs::hard_link(from, &temp).map_err(at("link", &temp))?;
            fs::rename(&temp, to).map_err(|e| {
                let _ = fs::remove_file(&temp);
                at("rename", &temp)(e)
            })
        }
        other => other.map_err(at("link", to)),
    }
}

/// Writes `bytes` to `path` through a temporary file and an atomic rename, without fsync
/// (see [`rename_unsynced`] for when that is right). Replaces any previous content.
pub fn replace_unsynced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut temp = TempFile::create_for(path, mode)?;
    temp.write_all(bytes)?;
    temp.file.take();
    rename_unsynced(&temp.path, path)?;
    temp.path = PathBuf::new();
    Ok(())
}

/// Writes `bytes` to `target` atomically (a temporary file beside it, fsynced, renamed over
/// it): a reader sees the old content or the new, never a part. For reports and metrics
/// text files that other programs read while walship writes them.
pub fn write_file_atomic(target: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let mut temp = TempFile::create_for(target, 0o644)?;
    temp.write_all(bytes)?;
    temp.persist(target, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn paced_writeback_leaves_the_content_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
        // Chunks smaller than, equal to and larger than the writes, and larger than the file.
        for (n, chunk) in [1u64, 4096, 65_536, 1 << 20, 8 << 20]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("paced-{n}"));
            let mut file = File::create(&path).unwrap();
            let mut writeback = PacedWriteback::new(chunk);
            for piece in content.chunks(65_536) {
                file.write_all(piece).unwrap();
                writeback.wrote(&file, piece.len());
            }
            file.sync_data().unwrap();
            assert_eq!(fs::read(&path).unwrap(), content, "chunk {chunk}");
        }
    }

    #[test]
    fn link_unsynced_names_the_same_file_and_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("entry"), dir.path().join("dest"));
        fs::write(&from, b"segment").unwrap();
        link_unsynced(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"segment");
        // An unrelated file at `to` (not a write through the link, which would change both).
        fs::remove_file(&to).unwrap();
        fs::write(&to, b"older").unwrap();
        link_unsynced(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"segment");
        assert_eq!(fs::read(&from).unwrap(), b"segment", "the first name stays");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary link left behind");
        let err = link_unsynced(&dir.path().join("absent"), &to).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn durable_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        durable_write(&path, b"one", 0o640).unwrap();
        durable_write(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o640);
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn durable_write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        durable_write_new(&path, b"first", 0o640).unwrap();
        let err = durable_write_new(&path, b"second", 0o640).unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn create_dir_all_durable_sets_mode_on_new_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep, 0o750).unwrap();
        assert_eq!(mode_of(&dir.path().join("a")), 0o750);
        assert_eq!(mode_of(&deep), 0o750);
        create_dir_all_durable(&deep, 0o700).unwrap();
        assert_eq!(mode_of(&deep), 0o750);
        fs::write(dir.path().join("file"), b"").unwrap();
        assert!(create_dir_all_durable(&dir.path().join("file"), 0o750).is_err());
    }

    #[test]
    fn temp_names_are_recognised_and_dropped_temps_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("obj");
        let temp = TempFile::create_for(&target, 0o640).unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_temp_name(&name), "{name}");
        assert!(!is_temp_name("obj"));
        assert!(temp.path().exists());
        let path = temp.path().to_path_buf();
        drop(temp);
        assert!(!path.exists());
    }

    #[test]
    fn rename_noreplace_races_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("seg");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let target = target.clone();
                std::thread::spawn(move || {
                    durable_write_new(&target, format!("{i}").as_bytes(), 0o640)
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|r| match r {
                Ok(()) => true,
                Err(e) => {
                    assert!(e.is_already_exists(), "{e}");
                    false
                }
            })
            .count();
        assert_eq!(wins, 1);
    }
}
