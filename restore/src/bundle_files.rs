//! Reading chosen files out of one bundle on a blocking thread, each handed to a callback as
//! a reader of exactly its bytes: what chain reconstruction needs from the older members of
//! an incremental chain (a few blocks of some files), in bounded memory (one decoder, the
//! callback's buffers). Every file is read to its end and checked against its crc32c, and
//! the bundle to its end (its trailer), as [`crate::bundle`] does for whole files.

use std::io::{self, Read};

use walship_common::catalog::BackupId;
use walship_common::codec::{CodecError, ObjectReader};
use walship_common::repo::{Repository, layout};
use walship_common::storage::{Storage, StorageError};

use crate::error::RestoreError;

/// One file to read from a bundle.
#[derive(Debug, Clone)]
pub struct WantedFile {
    /// Manifest path (for messages).
    pub path: String,
    /// Offset in the bundle's raw content.
    pub offset: u64,
    /// Size.
    pub size: u64,
    /// Expected crc32c.
    pub crc32c: u32,
}

/// Why a callback stopped: reading the bundle failed (mapped here to a storage error or a
/// corrupt bundle, naming the file), or something else did.
#[derive(Debug)]
pub enum CallbackError {
    /// Reading from the [`FileReader`] failed.
    Read(io::Error),
    /// Anything else (writing the output).
    Other(RestoreError),
}

impl From<io::Error> for CallbackError {
    fn from(e: io::Error) -> Self {
        CallbackError::Read(e)
    }
}

impl From<RestoreError> for CallbackError {
    fn from(e: RestoreError) -> Self {
        CallbackError::Other(e)
    }
}

/// A reader of one file's bytes inside the bundle stream, counting and checksumming them.
pub struct FileReader<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    crc: u32,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bundle ends before this file's bytes",
            ));
        }
        self.crc = walship_common::crc::crc32c_append(self.crc, &buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Streams bundle `name` (raw length `raw_len`) of backup `backup` and calls `each(i, reader)`
/// for each of `files` (sorted by offset, not overlapping). Must run on a blocking thread of
/// `runtime`. The callback's errors pass through; it may stop reading early (the rest of the
/// file is then read and checked here).
pub fn read_files_blocking(
    repo: &Repository,
    runtime: &tokio::runtime::Handle,
    backup: BackupId,
    name: &str,
    raw_len: u64,
    files: &[WantedFile],
    mut each: impl FnMut(usize, &mut FileReader<'_>) -> Result<(), CallbackError>,
) -> Result<(), RestoreError> {
    let key = layout::bundle_key(backup, name).map_err(|e| RestoreError::BadManifest {
        backup: backup.to_string(),
        message: e.to_string(),
    })?;
    let location = repo.location().to_string();
    let corrupt = |file: &str, message: String| RestoreError::CorruptBundle {
        backup: backup.to_string(),
        bundle: name.to_string(),
        file: file.to_string(),
        message,
    };
    let fail = |file: &str, err: io::Error| -> RestoreError {
        match CodecError::from(err) {
            CodecError::Io(io) => {
                RestoreError::Storage(StorageError::from_read_error(io, &key, &location))
            }
            codec => corrupt(file, codec.to_string()),
        }
    };
    let stream = runtime.block_on(repo.storage().get(&key))?;
    let bridge = stream.into_blocking(runtime);
    let opened = repo.open_blocking(&key, bridge, runtime)?;
    let first = files.first().map_or("(none)", |f| f.path.as_str());
    let mut reader = ObjectReader::new(opened)
        .and_then(|r| r.with_limit(raw_len))
        .map_err(|e| corrupt(first, e.to_string()))?;
    let mut pos = 0u64;
    for (i, file) in files.iter().enumerate() {
        if file.offset < pos {
            return Err(RestoreError::BadManifest {
                backup: backup.to_string(),
                message: format!(
                    "file {} at offset {} overlaps the previous file in bundle {name}",
                    file.path, file.offset
                ),
            });
        }
        let gap = file.offset - pos;
        let skipped = io::copy(&mut (&mut reader).take(gap), &mut io::sink())
            .map_err(|e| fail(&file.path, e))?;
        if skipped < gap {
            return Err(corrupt(
                &file.path,
                "the bundle ends before this file".into(),
            ));
        }
        let mut fr = FileReader {
            inner: &mut reader,
            left: file.size,
            crc: 0,
        };
        match each(i, &mut fr) {
            Ok(()) => {}
            Err(CallbackError::Read(e)) => return Err(fail(&file.path, e)),
            Err(CallbackError::Other(e)) => return Err(e),
        }
        io::copy(&mut fr, &mut io::sink()).map_err(|e| fail(&file.path, e))?;
        if fr.crc != file.crc32c {
            return Err(corrupt(
                &file.path,
                format!(
                    "crc32c of the bytes read is {:08x}, the manifest says {:08x}",
                    fr.crc, file.crc32c
                ),
            ));
        }
        pos = file.offset + file.size;
    }
    let last = files.last().map_or("(none)", |f| f.path.as_str());
    io::copy(&mut reader, &mut io::sink()).map_err(|e| fail(last, e))?;
    Ok(())
}
