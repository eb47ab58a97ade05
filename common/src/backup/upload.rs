//! Uploading one bundle while it is being written: a synchronous `Write` end
//! ([`ChannelWriter`], fed by the bundler on a blocking thread) joined by a small bounded
//! channel to an async task that streams the bytes into storage with `put_stream`
//! (multipart on S3). The writer gathers [`CHUNK_BYTES`] before sending (one thread wake-up
//! per chunk, not per compressed block). Memory per bundle in flight: [`CHANNEL_CHUNKS`] + 1
//! chunks plus what the storage backend buffers for one part.
//!
//! A writer dropped before [`ChannelWriter::finish`] sends an error down the channel, so the
//! upload fails instead of storing a truncated object.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use crate::storage::{
    AnyStorage, ObjectKey, ObjectLock, ObjectMeta, PutOptions, Storage, StorageError,
};

/// Chunks queued between the writer and the upload task.
pub const CHANNEL_CHUNKS: usize = 4;
/// Most bytes the writer gathers into one chunk: its buffer stays below walship's malloc
/// mmap threshold (1 MiB), so that chunk buffers are reused from the heap rather than mapped
/// (and faulted in) anew for every chunk.
pub const CHUNK_BYTES: usize = 768 << 10;

type Chunk = io::Result<Bytes>;

/// The writing end of a bundle upload.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: Option<mpsc::Sender<Chunk>>,
    buf: BytesMut,
}

/// The upload task of one bundle; resolves when the object is stored.
pub type UploadTask = JoinHandle<Result<ObjectMeta, StorageError>>;

/// Starts uploading `key` on `runtime` and returns the writer that feeds it. Must be called
/// from a thread that may block (the bundler's), not from async code.
pub fn start_upload(
    runtime: &tokio::runtime::Handle,
    storage: AnyStorage,
    key: ObjectKey,
    lock: Option<ObjectLock>,
) -> (ChannelWriter, UploadTask) {
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
    .boxed();
    let task = runtime.spawn(async move {
        let reader = StreamReader::new(stream);
        storage
            .put_stream(&key, reader, PutOptions::if_absent().with_lock(lock))
            .await
    });
    let writer = ChannelWriter {
        tx: Some(tx),
        buf: BytesMut::new(),
    };
    (writer, task)
}

impl ChannelWriter {
    /// Ends the object: sends what is gathered, then the upload task sees the end of its
    /// input and completes the upload. An error means the upload stopped (its task says why).
    pub fn finish(mut self) -> io::Result<()> {
        self.send_gathered()?;
        self.tx = None;
        Ok(())
    }

    fn send_gathered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.send(Ok(chunk))
    }

    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("bundle upload already finished"))?;
        tx.blocking_send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the bundle upload stopped (see its storage error)",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Never grow the buffer past CHUNK_BYTES (growing would reallocate, and map).
        if !self.buf.is_empty() && self.buf.len() + buf.len() > CHUNK_BYTES {
            self.send_gathered()?;
        }
        if self.buf.is_empty() {
            self.buf.reserve(CHUNK_BYTES.max(buf.len()));
        }
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK_BYTES {
            self.send_gathered()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Abandoned mid-object: make the upload fail rather than store a truncated object.
            let _ = self.send(Err(io::Error::other("the backup was abandoned")));
        }
    }
}
