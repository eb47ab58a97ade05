//! [`Bundler`]: packs files back to back into compressed bundle objects of about
//! `backup.bundle_size` raw bytes, each streamed to storage while it is written, at most
//! `backup.parallel` uploads in flight.
//!
//! A file is never split: it goes whole into the current bundle, which is closed once it
//! holds at least the target size, so a bundle exceeds the target by less than one file
//! (relation segments are at most 1 GiB). A file arrives as [`Bundler::start_file`], its
//! data as `Bytes` slices ([`Bundler::write`], passed on without a copy), then
//! [`Bundler::end_file`]. Each file's crc32c (computed here, over those slices) and offset
//! in the bundle's raw content are recorded for the manifest; the bundle's own crc32c is
//! combined from its files' (`crc32c_combine`), so no byte is hashed twice. Runs on a
//! blocking thread; each bundle compresses on a thread of its own ([`BundleCompressor`])
//! and uploads on the async runtime.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::catalog::{BackupId, BundleInfo};
use crate::codec::Codec;
use crate::repo::layout;
use crate::storage::AnyStorage;

use super::compressor::{BundleCompressor, BundleSeal};
use super::error::BackupError;
use super::progress::Progress;
use super::upload::{UploadTask, start_upload};

/// Name of the `index`-th bundle (`00000000`, `00000001`, ...): fixed width, so names sort.
pub fn bundle_name(index: u32) -> String {
    format!("{index:08}")
}

/// Where a file's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Index of the bundle.
    pub bundle: u32,
    /// Offset in the bundle's raw content.
    pub offset: u64,
    /// crc32c of the file's bytes.
    pub crc32c: u32,
    /// Bytes of the file.
    pub len: u64,
}

/// How the bundler is set up.
#[derive(Debug, Clone)]
pub struct BundlerConfig {
    /// Close a bundle once it holds this many raw bytes.
    pub bundle_size: u64,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// Codec of the bundle objects.
    pub codec: Codec,
    /// The data key bundles are sealed with, when the repository is encrypted.
    pub seal: Option<(crate::crypto::DekId, crate::crypto::SecretKey)>,
    /// The Object Lock policy bundles are stored under, when `[s3] object_lock` is on.
    pub lock: Option<crate::repo::lock::LockPolicy>,
}

struct OpenBundle {
    index: u32,
    writer: BundleCompressor,
    /// crc32c of the raw content of the files completed so far.
    crc32c: u32,
}

/// The file being added.
#[derive(Debug, Clone, Copy)]
struct OpenFile {
    bundle: u32,
    offset: u64,
    crc32c: u32,
    len: u64,
}

/// Packs files into bundles; see the module doc.
pub struct Bundler {
    config: BundlerConfig,
    id: BackupId,
    storage: AnyStorage,
    runtime: tokio::runtime::Handle,
    progress: std::sync::Arc<Progress>,
    current: Option<OpenBundle>,
    file: Option<OpenFile>,
    in_flight: VecDeque<(u32, UploadTask)>,
    bundles: Vec<BundleInfo>,
}

impl Bundler {
    /// A bundler writing `backups/<id>/bundles/*` to `storage`.
    pub fn new(
        config: BundlerConfig,
        id: BackupId,
        storage: AnyStorage,
        runtime: tokio::runtime::Handle,
        progress: std::sync::Arc<Progress>,
    ) -> Bundler {
        Bundler {
            config,
            id,
            storage,
            runtime,
            progress,
            current: None,
            file: None,
            in_flight: VecDeque::new(),
            bundles: Vec::new(),
        }
    }

    /// Begins a file in the current bundle (closing it first if it is full); its data
    /// follows through [`Bundler::write`], then [`Bundler::end_file`].
    pub fn start_file(&mut self) -> Result<(), BackupError> {
        if self.file.is_some() {
            return Err(BackupError::Protocol(
                "a file began before the last one ended".into(),
            ));
        }
        if self
            .current
            .as_ref()
            .is_some_and(|b| b.writer.raw_len() >= self.config.bundle_size)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            self.open_next()?;
        }
        let Some(open) = self.current.as_ref() else {
            return Err(BackupError::Protocol("no open bundle".into()));
        };
        self.file = Some(OpenFile {
            bundle: open.index,
            offset: open.writer.raw_len(),
            crc32c: 0,
            len: 0,
        });
        Ok(())
    }

    /// The next bytes of the current file, handed to the bundle's compressor as they are.
    pub fn write(&mut self, piece: Bytes) -> Result<(), BackupError> {
        let (Some(file), Some(open)) = (self.file.as_mut(), self.current.as_mut()) else {
            return Err(BackupError::Protocol("file data outside a file".into()));
        };
        file.crc32c = crate::crc::crc32c_append(file.crc32c, &piece);
        let n = piece.len() as u64;
        file.len += n;
        if let Err(e) = open.writer.write(piece) {
            let index = open.index;
            let key = self.key(index);
            return Err(self.upload_failure(key, e));
        }
        self.progress.add_raw(n);
        Ok(())
    }

    /// Ends the current file, which must have held `expected_len` bytes; returns where it
    /// went.
    pub fn end_file(&mut self, path: &str, expected_len: u64) -> Result<Placed, BackupError> {
        let (Some(file), Some(open)) = (self.file.take(), self.current.as_mut()) else {
            return Err(BackupError::Protocol(format!("{path}: no file to end")));
        };
        if file.len != expected_len {
            return Err(BackupError::Protocol(format!(
                "{path}: the archive announced {expected_len} bytes but held {}",
                file.len
            )));
        }
        let len = usize::try_from(file.len)
            .map_err(|_| BackupError::Protocol(format!("{path}: too large")))?;
        open.crc32c = crc32c::crc32c_combine(open.crc32c, file.crc32c, len);
        Ok(Placed {
            bundle: file.bundle,
            offset: file.offset,
            crc32c: file.crc32c,
            len: file.len,
        })
    }

    /// Closes the last bundle and waits for every upload; returns the bundles in index order.
    pub fn finish(mut self) -> Result<Vec<BundleInfo>, BackupError> {
        if self.file.is_some() {
            return Err(BackupError::Protocol(
                "the backup ended inside a file".into(),
            ));
        }
        if self.current.is_some() {
            self.close_current()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(std::mem::take(&mut self.bundles))
    }

    fn key(&self, index: u32) -> String {
        format!(
            "{}bundles/{}",
            layout::backup_prefix(self.id),
            bundle_name(index)
        )
    }

    fn open_next(&mut self) -> Result<(), BackupError> {
        while self.in_flight.len() >= self.config.parallel.max(1) {
            self.wait_oldest()?;
        }
        let index = u32::try_from(self.bundles.len())
            .map_err(|_| BackupError::Protocol("too many bundles".into()))?;
        let name = bundle_name(index);
        let key = layout::bundle_key(self.id, &name)?;
        let lock = self
            .config
            .lock
            .and_then(|policy| policy.lock_for(&key, std::time::SystemTime::now()));
        let (channel, task) = start_upload(&self.runtime, self.storage.clone(), key.clone(), lock);
        let seal = self.config.seal.as_ref().map(|(dek_id, dek)| BundleSeal {
            dek_id: *dek_id,
            dek: dek.clone(),
            key: key.clone(),
        });
        let writer = BundleCompressor::start(channel, self.config.codec, seal).map_err(|e| {
            BackupError::Codec {
                key: key.to_string(),
                source: crate::codec::CodecError::Io(e),
            }
        })?;
        self.bundles.push(BundleInfo {
            name,
            raw_len: 0,
            stored_len: 0,
        });
        self.in_flight.push_back((index, task));
        self.current = Some(OpenBundle {
            index,
            writer,
            crc32c: 0,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), BackupError> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let key = self.key(open.index);
        let summary = match open.writer.finish(open.crc32c) {
            Ok(done) => done,
            Err(source) => {
                let io = std::io::Error::other(source.to_string());
                return Err(self.upload_failure(key, io));
            }
        };
        if let Some(info) = self.bundles.get_mut(open.index as usize) {
            info.raw_len = summary.raw_len;
            info.stored_len = summary.stored_len;
        }
        self.progress.add_stored(summary.stored_len);
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), BackupError> {
        let Some((index, task)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.runtime.block_on(task) {
            Ok(Ok(_meta)) => Ok(()),
            Ok(Err(e)) => Err(BackupError::Storage(e)),
            Err(join) => Err(BackupError::Protocol(format!(
                "upload of bundle {} ended abnormally: {join}",
                bundle_name(index)
            ))),
        }
    }

    /// A write into a bundle failed: the storage error of the upload that stopped is the
    /// real cause, when there is one.
    fn upload_failure(&mut self, key: String, io: std::io::Error) -> BackupError {
        self.current = None;
        self.file = None;
        while let Some((_, task)) = self.in_flight.pop_front() {
            if let Ok(Err(e)) = self.runtime.block_on(task) {
                return BackupError::Storage(e);
            }
        }
        BackupError::Codec {
            key,
            source: crate::codec::CodecError::Io(io),
        }
    }
}
