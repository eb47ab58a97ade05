//! An object file of a [`LocalStorage`] kept open for durable appends: what a stream tail
//! journal (`crate::repo::journal`) is written through, so that one `--synchronous` flush
//! costs one `pwrite` and one `fdatasync` (one file-system journal commit) instead of a new
//! file (temporary file, fsync, rename, directory fsync: two commits).
//!
//! Unlike every other object, such a file is not atomic: a reader may see it half appended,
//! and its format must make that safe (the journal's frames carry a crc32c). The file is
//! created like any object (create-only, with its first bytes, temp file and rename, both
//! fsynced), so its name never points at a file a crash could lose.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::local::{LocalStorage, blocking};
use super::{ObjectKey, StorageError, StorageOp};
use crate::fsutil;

/// An object file open for writing at chosen positions; see the module documentation.
#[derive(Debug, Clone)]
pub struct AppendFile {
    file: Arc<fs::File>,
    path: PathBuf,
}

impl LocalStorage {
    /// Creates the object `key` holding `first` followed by zeros up to `preallocate` bytes
    /// (written, so that later writes inside them change no file-system metadata),
    /// create-only (`StorageError::AlreadyExists` if it exists) and durably, and opens it for
    /// [`AppendFile::write_durable`].
    pub async fn create_append(
        &self,
        key: &ObjectKey,
        first: Bytes,
        preallocate: u64,
    ) -> Result<AppendFile, StorageError> {
        let path = self.object_path(StorageOp::Put, key)?;
        let key = key.clone();
        blocking(move || {
            let mut temp = LocalStorage::temp_for(&path)?;
            temp.write_all(&first)?;
            let zeros = vec![0u8; 256 << 10];
            let mut len = first.len() as u64;
            while len < preallocate {
                let n = (preallocate - len).min(zeros.len() as u64) as usize;
                temp.write_all(&zeros[..n])?;
                len += n as u64;
            }
            LocalStorage::place(&key, temp, &path, true)?;
            open(&path)
        })
        .await
    }

    /// Opens the existing object `key` for [`AppendFile::write_durable`].
    pub async fn open_append(&self, key: &ObjectKey) -> Result<AppendFile, StorageError> {
        let path = self.object_path(StorageOp::Put, key)?;
        let key = key.clone();
        blocking(move || match open(&path) {
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::NotFound {
                    key: key.to_string(),
                })
            }
            other => other,
        })
        .await
    }
}

impl AppendFile {
    /// Writes `bytes` at `at` and returns once they are durable (`fdatasync`).
    pub async fn write_durable(&self, at: u64, bytes: Bytes) -> Result<(), StorageError> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        blocking(move || {
            file.write_all_at(&bytes, at)
                .map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("fdatasync", &path))
        })
        .await
    }

    /// Cuts the file to `len` bytes, durably.
    pub async fn truncate_durable(&self, len: u64) -> Result<(), StorageError> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        blocking(move || {
            file.set_len(len).map_err(io_err("truncate", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))
        })
        .await
    }

    /// The file's current length.
    pub async fn size(&self) -> Result<u64, StorageError> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        blocking(move || {
            file.metadata()
                .map(|m| m.len())
                .map_err(io_err("stat", &path))
        })
        .await
    }
}

fn open(path: &std::path::Path) -> Result<AppendFile, StorageError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.is_file() {
        return Err(StorageError::Io {
            action: "open for appending",
            path: path.to_path_buf(),
            source: io::Error::other(format!(
                "not a regular file: {}",
                fsutil::describe_file_type(meta.file_type())
            )),
        });
    }
    Ok(AppendFile {
        file: Arc::new(file),
        path: path.to_path_buf(),
    })
}

fn io_err(action: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    #[tokio::test]
    async fn appends_are_durable_and_visible_to_get() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path()).unwrap();
        let key = ObjectKey::new("wal/x/journal").unwrap();
        let file = storage
            .create_append(&key, Bytes::from_static(b"abc"), 10)
            .await
            .unwrap();
        assert_eq!(file.size().await.unwrap(), 10);
        file.write_durable(3, Bytes::from_static(b"defgh"))
            .await
            .unwrap();
        file.truncate_durable(6).await.unwrap();
        assert_eq!(file.size().await.unwrap(), 6);
        let got = storage
            .get(&key)
            .await
            .unwrap()
            .read_all(100)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcdef");
        let again = storage.create_append(&key, Bytes::new(), 0).await;
        assert!(again.unwrap_err().is_already_exists());
        storage.open_append(&key).await.unwrap();
        let missing = ObjectKey::new("wal/x/other").unwrap();
        assert!(
            storage
                .open_append(&missing)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
}
