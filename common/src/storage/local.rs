//! `LocalStorage`: a repository in a local (or mounted) directory, written durably.
//!
//! Each object is a file at `<root>/<key>`. A put writes a temporary file in the target's
//! directory, fsyncs it, renames it into place and fsyncs the directory (see
//! [`crate::fsutil`]), so a reader or a crash never sees half an object. A create-if-absent
//! put renames with `RENAME_NOREPLACE` (or `link`), so of two racing writers exactly one
//! wins. Files are made 0640 and directories 0750 whatever the umask, so that the
//! database's OS user and an operator's account can share a repository through a group.
//!
//! Temporary files (`.walship-tmp.*`) that a crash leaves behind are invisible to `get`,
//! `head` and `list`; keys whose segments start with that prefix are refused.
//!
//! Limits compared with S3: a key cannot be both an object and a "directory" of other
//! keys (`a` and `a/b`), and `head` returns no CRC32C (nothing stores it).

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncRead;

use super::absence::{self, is_missing};
use super::key::{ObjectKey, check_prefix};
use super::stream::{ObjectReader, read_chunk};
use super::{Capabilities, ObjectMeta, PutOptions, Storage, StorageError, StorageOp};
use crate::fsutil::{self, FsError, TEMP_PREFIX, TempFile};

/// Permission bits of every object file.
pub const FILE_MODE: u32 = 0o640;
/// Permission bits of every directory the backend creates.
pub const DIR_MODE: u32 = 0o750;

/// Bytes read from a streaming body per write call: below walship's malloc mmap threshold
/// (1 MiB), so the buffer is reused from the heap instead of being mapped anew per chunk.
const STREAM_CHUNK: usize = 512 << 10;

/// A repository rooted at an absolute local directory (created on first write).
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    location: String,
}

impl From<FsError> for StorageError {
    fn from(e: FsError) -> StorageError {
        StorageError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

impl LocalStorage {
    /// A backend for the directory `root`, which must be an absolute path.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStorage, StorageError> {
        let root = root.into();
        if !root.is_absolute() {
            return Err(StorageError::InvalidUrl {
                url: root.display().to_string(),
                reason: "a local repository needs an absolute path".to_owned(),
            });
        }
        let location = format!("file://{}", root.display());
        Ok(LocalStorage { root, location })
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. Keys are validated (relative, no `..`), so the path stays under
    /// the root; keys naming our temporary files are refused.
    fn path_of(&self, op: StorageOp, key: &ObjectKey) -> Result<PathBuf, StorageError> {
        if key.segments().any(fsutil::is_temp_name) {
            return Err(StorageError::Permanent {
                op,
                key: key.to_string(),
                endpoint: self.location.clone(),
                message: format!(
                    "key segments starting with {TEMP_PREFIX:?} are reserved for temporary files"
                ),
            });
        }
        Ok(self.root.join(key.as_str()))
    }

    /// The file of `key` (see `path_of`), for [`super::local_append`].
    pub(super) fn object_path(
        &self,
        op: StorageOp,
        key: &ObjectKey,
    ) -> Result<PathBuf, StorageError> {
        self.path_of(op, key)
    }

    fn corrupt(key: &ObjectKey, expected: u32, actual: u32) -> StorageError {
        StorageError::Corrupt {
            key: key.to_string(),
            message: format!("caller expected CRC32C {expected:08x}, body has {actual:08x}"),
        }
    }

    /// A new temporary file beside the object file `path`, its parent directories created
    /// durably: the first step of every object written.
    pub(super) fn temp_for(path: &Path) -> Result<TempFile, StorageError> {
        fsutil::create_dir_all_durable(parent(path), DIR_MODE)?;
        Ok(TempFile::create_for(path, FILE_MODE)?)
    }

    /// Renames the fully written `temp` to the object file `path`, durably; with
    /// `if_absent`, an existing object is [`StorageError::AlreadyExists`], never replaced.
    pub(super) fn place(
        key: &ObjectKey,
        temp: TempFile,
        path: &Path,
        if_absent: bool,
    ) -> Result<(), StorageError> {
        temp.persist(path, if_absent).map_err(|e| {
            if e.is_already_exists() {
                StorageError::AlreadyExists {
                    key: key.to_string(),
                }
            } else {
                e.into()
            }
        })
    }

    /// Moves a fully written temporary file into place and returns the new object's
    /// metadata.
    fn persist(
        key: &ObjectKey,
        temp: TempFile,
        path: &Path,
        opts: PutOptions,
        size: u64,
        crc: u32,
    ) -> Result<ObjectMeta, StorageError> {
        if let Some(expected) = opts.crc32c.filter(|&e| e != crc) {
            return Err(Self::corrupt(key, expected, crc));
        }
        if opts.lock.is_some() {
            // Nothing is visible yet: the temporary file is removed when dropped.
            return Err(StorageError::Permanent {
                op: StorageOp::Put,
                key: key.to_string(),
                endpoint: path.display().to_string(),
                message: "a local repository cannot hold S3 Object Lock retention".to_owned(),
            });
        }
        Self::place(key, temp, path, opts.if_absent)?;
        // Stored and flushed: the next object reuses this one's memory (see
        // `drop_cached_pages`); a later read of it comes from disk.
        fsutil::drop_cached_pages(path);
        let last_modified = fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            crc32c: Some(crc),
            last_modified,
        })
    }

    /// Metadata of the object file at `path` (symbolic links followed). `NotFound` only when
    /// the key has no entry at all (see [`Self::missing`]); anything there that is not a
    /// regular file is an error, never "absent".
    fn stat(
        &self,
        op: StorageOp,
        key: &ObjectKey,
        path: &Path,
    ) -> Result<fs::Metadata, StorageError> {
        match fs::metadata(path) {
            Ok(meta) => self.regular(op, key, meta),
            Err(e) if is_missing(&e) => Err(self.missing(op, key)),
            Err(source) => Err(StorageError::Io {
                action: "stat",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// `meta` if it is a regular file's; otherwise the refusal naming what is there.
    fn regular(
        &self,
        op: StorageOp,
        key: &ObjectKey,
        meta: fs::Metadata,
    ) -> Result<fs::Metadata, StorageError> {
        absence::regular(&self.location, op, key, meta)
    }

    /// Why the file of `key` could not be found, when the OS said "no such file" (see
    /// [`absence::missing`]).
    fn missing(&self, op: StorageOp, key: &ObjectKey) -> StorageError {
        absence::missing(&self.root, &self.location, op, key)
    }

    /// Opens the object file of `key` and checks, on the open file, that it is a regular
    /// file. Non-blocking open, so that a FIFO put there cannot hang the reader.
    fn open_regular(
        &self,
        key: &ObjectKey,
        path: &Path,
    ) -> Result<(fs::File, fs::Metadata), StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io_err = |action, source| StorageError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Err(self.missing(StorageOp::Get, key)),
            Err(source) => return Err(io_err("open", source)),
        };
        let meta = file.metadata().map_err(|e| io_err("stat", e))?;
        let meta = self.regular(StorageOp::Get, key, meta)?;
        Ok((file, meta))
    }

    async fn open(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StorageError> {
        let path = match self.path_of(StorageOp::Get, key) {
            Ok(path) => path,
            Err(_) => {
                return Err(StorageError::NotFound {
                    key: key.to_string(),
                });
            }
        };
        let (file, meta) = {
            let (this, key, path) = (self.clone(), key.clone(), path.clone());
            blocking(move || this.open_regular(&key, &path)).await?
        };
        let Some(range) = range else {
            return Ok(ObjectReader::from_file(file, meta.len()));
        };
        let start = range.start.min(meta.len());
        let end = range.end.clamp(start, meta.len());
        let file = blocking(move || {
            let mut file = file;
            io::Seek::seek(&mut file, io::SeekFrom::Start(start))
                .map(|_| file)
                .map_err(|source| StorageError::Io {
                    action: "seek in",
                    path,
                    source,
                })
        })
        .await?;
        Ok(ObjectReader::from_file(file, end - start))
    }
}

/// Runs blocking file-system work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Io {
            action: "run blocking file-system task for",
            path: PathBuf::new(),
            source: io::Error::other(e),
        })?
}

impl Storage for LocalStorage {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_create: true,
            crc32c_in_head: false,
            multipart: false,
            local_files: true,
        }
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let path = self.path_of(StorageOp::Put, key)?;
        let key = key.clone();
        blocking(move || {
            let crc = crate::crc::crc32c(&body);
            if let Some(expected) = opts.crc32c.filter(|&e| e != crc) {
                return Err(Self::corrupt(&key, expected, crc));
            }
            let mut temp = Self::temp_for(&path)?;
            temp.write_all(&body)?;
            Self::persist(&key, temp, &path, opts, body.len() as u64, crc)
        })
        .await
    }

    async fn put_stream<R>(
        &self,
        key: &ObjectKey,
        mut body: R,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let path = self.path_of(StorageOp::Put, key)?;
        let temp = {
            let path = path.clone();
            blocking(move || Self::temp_for(&path)).await?
        };
        let io_err = |action: &'static str, source: io::Error| StorageError::Io {
            action,
            path: temp.path().to_path_buf(),
            source,
        };
        let mut file = temp.file()?.try_clone().map_err(|e| io_err("reopen", e))?;
        let (mut size, mut crc) = (0u64, 0u32);
        loop {
            let chunk = read_chunk(&mut body, STREAM_CHUNK)
                .await
                .map_err(|source| StorageError::Io {
                    action: "read the body to store as",
                    path: path.clone(),
                    source,
                })?;
            if chunk.is_empty() {
                break;
            }
            crc = crate::crc::crc32c_append(crc, &chunk);
            size += chunk.len() as u64;
            // A plain write of the chunk itself on the blocking pool (tokio's File would
            // copy it into a buffer of its own first).
            let temp_path = temp.path().to_path_buf();
            file = blocking(move || {
                std::io::Write::write_all(&mut file, &chunk)
                    .map(|()| file)
                    .map_err(|source| StorageError::Io {
                        action: "write",
                        path: temp_path,
                        source,
                    })
            })
            .await?;
        }
        drop(file);
        let key = key.clone();
        blocking(move || Self::persist(&key, temp, &path, opts, size, crc)).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
        self.open(key, None).await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ObjectReader, StorageError> {
        self.open(key, Some(range)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let path = match self.path_of(StorageOp::Head, key) {
            Ok(path) => path,
            Err(_) => {
                return Err(StorageError::NotFound {
                    key: key.to_string(),
                });
            }
        };
        let (this, key) = (self.clone(), key.clone());
        blocking(move || {
            let meta = this.stat(StorageOp::Head, &key, &path)?;
            Ok(ObjectMeta {
                key,
                size: meta.len(),
                crc32c: None,
                last_modified: meta.modified().ok(),
            })
        })
        .await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        check_prefix(prefix)?;
        let (dir_part, name_filter) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let walk = Walk {
            start_after: start_after.map(|k| k.as_str().to_owned()),
            limit,
        };
        let dir = self.root.join(dir_part);
        let key_prefix = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let name_filter = name_filter.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            walk.dir(&dir, &key_prefix, &name_filter, &mut out)?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = self.path_of(StorageOp::Delete, key)?;
        blocking(move || {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(source) => {
                    return Err(StorageError::Io {
                        action: "stat",
                        path,
                        source,
                    });
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => Ok(fsutil::fsync_dir(parent(&path))?),
                Err(e) if is_missing(&e) => Ok(()),
                Err(source) => Err(StorageError::Io {
                    action: "remove",
                    path,
                    source,
                }),
            }
        })
        .await
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// An ordered walk of the repository tree for `list_after`.
///
/// Entries of a directory are visited in the byte order of their keys: a subdirectory `d`
/// sorts as `d/` (every key below it starts so), which makes a depth-first walk yield keys
/// in exactly S3's order, stop after `limit` and skip subtrees that lie wholly at or before
/// `start_after`.
struct Walk {
    start_after: Option<String>,
    limit: usize,
}

impl Walk {
    fn dir(
        &self,
        dir: &Path,
        key_prefix: &str,
        name_filter: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> Result<(), StorageError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(source) => {
                return Err(StorageError::Io {
                    action: "read directory",
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::Io {
                action: "read directory",
                path: dir.to_path_buf(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %dir.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if !name.starts_with(name_filter) || fsutil::is_temp_name(&name) {
                continue;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let key = format!("{key_prefix}{name}");
            if file_type.is_dir() {
                children.push((format!("{key}/"), true));
            } else if file_type.is_file() {
                children.push((key, false));
            }
        }
        children.sort();
        for (sort_key, is_dir) in children {
            if out.len() >= self.limit {
                return Ok(());
            }
            if is_dir {
                // Skip a subtree that lies wholly at or before start_after.
                if let Some(after) = &self.start_after
                    && after.as_str() >= sort_key.as_str()
                    && !after.starts_with(&sort_key)
                {
                    continue;
                }
                let name = &sort_key[key_prefix.len()..sort_key.len() - 1];
                self.dir(&dir.join(name), &sort_key, "", out)?;
                continue;
            }
            if self
                .start_after
                .as_deref()
                .is_some_and(|after| sort_key.as_str() <= after)
            {
                continue;
            }
            let key = match ObjectKey::new(sort_key) {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "skipping a file that is not a valid key: {e}");
                    continue;
                }
            };
            let path = dir.join(key.file_name());
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if is_missing(&e) => continue, // deleted while listing
                Err(source) => {
                    return Err(StorageError::Io {
                        action: "stat",
                        path,
                        source,
                    });
                }
            };
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                crc32c: None,
                last_modified: meta.modified().ok(),
            });
        }
        Ok(())
    }
}
