//! Streaming one bundle into its files: the bundle object is fetched and decoded as a
//! stream (bounded memory: one decoder and a 256 KiB buffer), each file's bytes are cut out
//! at its manifest offset, written 0600 with its mtime, fsynced, and checked against the
//! manifest's crc32c. A file that does not match is an error naming it; the bundle's own
//! trailer (length and crc32c of everything) is checked by reading to its end.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use walship_common::catalog::BackupId;
use walship_common::codec::{CodecError, ObjectReader};
use walship_common::fsutil::FsError;
use walship_common::repo::{Repository, layout};
use walship_common::storage::{Storage, StorageError};

use crate::error::RestoreError;
use crate::owner::Owner;

const BUFFER: usize = 256 * 1024;

/// Reports restored bytes as they are written (a progress bar, a counter).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// What to do with one file of a bundle.
#[derive(Debug, Clone)]
pub struct FileJob {
    /// Manifest path (for messages).
    pub path: String,
    /// Where to write it; `None` keeps the bytes in memory (`global/pg_control`, written last).
    pub dest: Option<PathBuf>,
    /// Skip it (`--delta` found it already correct): read past its bytes.
    pub skip: bool,
    /// Offset in the bundle's raw content.
    pub offset: u64,
    /// Size.
    pub size: u64,
    /// Expected crc32c.
    pub crc32c: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Who owns the file (root restores).
    pub owner: Option<Owner>,
}

/// One bundle and its files, sorted by offset.
#[derive(Debug, Clone)]
pub struct BundleJob {
    /// The bundle's object name.
    pub name: String,
    /// Its raw length in the manifest: the most content its object may decode to, so that a
    /// tampered bundle cannot make restore decompress without end.
    pub raw_len: u64,
    /// Its files.
    pub files: Vec<FileJob>,
}

/// What restoring a bundle did.
#[derive(Debug, Default)]
pub struct BundleOutcome {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files held in memory (path, bytes): `global/pg_control`.
    pub held: Vec<(String, Vec<u8>)>,
}

/// Restores the files of `job` from bundle `job.name` of backup `backup`.
pub async fn restore_bundle(
    repo: &Repository,
    backup: BackupId,
    job: BundleJob,
    progress: ProgressFn,
) -> Result<BundleOutcome, RestoreError> {
    let key = layout::bundle_key(backup, &job.name).map_err(|e| RestoreError::BadManifest {
        backup: backup.to_string(),
        message: e.to_string(),
    })?;
    let stream = repo.storage().get(&key).await?;
    let location = repo.location().to_string();
    let runtime = tokio::runtime::Handle::current();
    let bridge = stream.into_blocking(&runtime);
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        // The encoded bundle: opened first when the repository is encrypted.
        let bridge = repo.open_blocking(&key, bridge, &runtime)?;
        let fail = |file: &str, err: io::Error| -> RestoreError {
            match CodecError::from(err) {
                CodecError::Io(io) => {
                    RestoreError::Storage(StorageError::from_read_error(io, &key, &location))
                }
                codec => RestoreError::CorruptBundle {
                    backup: backup.to_string(),
                    bundle: job.name.clone(),
                    file: file.to_string(),
                    message: codec.to_string(),
                },
            }
        };
        let first = job.files.first().map_or("(none)", |f| f.path.as_str());
        let mut reader = ObjectReader::new(bridge)
            .and_then(|reader| reader.with_limit(job.raw_len))
            .map_err(|e| RestoreError::CorruptBundle {
                backup: backup.to_string(),
                bundle: job.name.clone(),
                file: first.to_string(),
                message: e.to_string(),
            })?;
        let mut outcome = BundleOutcome::default();
        let mut pos = 0u64;
        let mut buf = vec![0u8; BUFFER];
        for file in &job.files {
            if file.offset < pos {
                return Err(RestoreError::BadManifest {
                    backup: backup.to_string(),
                    message: format!(
                        "file {} at offset {} overlaps the previous file in bundle {}",
                        file.path, file.offset, job.name
                    ),
                });
            }
            let gap = file.offset.saturating_sub(pos);
            let skipped = io::copy(&mut (&mut reader).take(gap), &mut io::sink())
                .map_err(|e| fail(&file.path, e))?;
            if skipped < gap {
                return Err(short(&backup, &job.name, &file.path));
            }
            pos = file.offset;
            let mut sink = Sink::open(file)?;
            let mut crc = 0u32;
            let mut left = file.size;
            while left > 0 {
                let want = left.min(BUFFER as u64) as usize;
                let n = reader
                    .read(&mut buf[..want])
                    .map_err(|e| fail(&file.path, e))?;
                if n == 0 {
                    return Err(short(&backup, &job.name, &file.path));
                }
                crc = walship_common::crc::crc32c_append(crc, &buf[..n]);
                sink.write(&buf[..n])?;
                left -= n as u64;
                if !file.skip {
                    progress(n as u64);
                }
            }
            pos = pos.saturating_add(file.size);
            if crc != file.crc32c {
                return Err(RestoreError::CorruptBundle {
                    backup: backup.to_string(),
                    bundle: job.name.clone(),
                    file: file.path.clone(),
                    message: format!(
                        "crc32c of the restored bytes is {crc:08x}, the manifest says {:08x}",
                        file.crc32c
                    ),
                });
            }
            match sink.finish(file)? {
                Some(bytes) => outcome.held.push((file.path.clone(), bytes)),
                None if !file.skip => {
                    outcome.files += 1;
                    outcome.bytes += file.size;
                }
                None => {}
            }
        }
        let last = job.files.last().map_or("(none)", |f| f.path.as_str());
        io::copy(&mut reader, &mut io::sink()).map_err(|e| fail(last, e))?;
        Ok(outcome)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn short(backup: &BackupId, bundle: &str, file: &str) -> RestoreError {
    RestoreError::CorruptBundle {
        backup: backup.to_string(),
        bundle: bundle.to_string(),
        file: file.to_string(),
        message: "the bundle ends before this file's bytes".to_string(),
    }
}

/// Where a file's bytes go.
enum Sink {
    File(File, PathBuf),
    Memory(Vec<u8>),
    Discard,
}

fn fs_err(action: &'static str, path: &std::path::Path, source: io::Error) -> RestoreError {
    RestoreError::Fs(FsError {
        action,
        path: path.to_path_buf(),
        source,
    })
}

impl Sink {
    fn open(file: &FileJob) -> Result<Sink, RestoreError> {
        if file.skip {
            return Ok(Sink::Discard);
        }
        let Some(dest) = &file.dest else {
            // Only global/pg_control is held (8192 bytes, checked by the plan): never
            // reserve what a manifest claims.
            return Ok(Sink::Memory(Vec::with_capacity(
                file.size.min(8192) as usize
            )));
        };
        let handle = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| fs_err("create", dest, e))?;
        if let Some(owner) = file.owner {
            owner.apply_to_file(&handle, dest)?;
        }
        Ok(Sink::File(handle, dest.clone()))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        match self {
            Sink::File(f, path) => f.write_all(bytes).map_err(|e| fs_err("write", path, e)),
            Sink::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Discard => Ok(()),
        }
    }

    /// Sets mode and mtime and fsyncs a file; returns the bytes of a held one.
    fn finish(self, job: &FileJob) -> Result<Option<Vec<u8>>, RestoreError> {
        match self {
            Sink::File(f, path) => {
                set_mode_and_mtime(&f, &path, job.mtime)?;
                walship_common::fsutil::sync_and_release(&f, &path)?;
                Ok(None)
            }
            Sink::Memory(v) => Ok(Some(v)),
            Sink::Discard => Ok(None),
        }
    }
}

/// Mode 0600 and the backup's mtime on an open file.
pub fn set_mode_and_mtime(
    f: &File,
    path: &std::path::Path,
    mtime: i64,
) -> Result<(), RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fs_err("set permissions of", path, e))?;
    let time = if mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        UNIX_EPOCH
    };
    f.set_times(
        std::fs::FileTimes::new()
            .set_modified(time)
            .set_accessed(SystemTime::now()),
    )
    .map_err(|e| fs_err("set mtime of", path, e))
}
