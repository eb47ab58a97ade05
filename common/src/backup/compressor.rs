//! [`BundleCompressor`]: one bundle's compression on a thread of its own, so that parsing
//! the tar stream (and the per-file crc32c) and compressing run on two cores at once, and
//! the end of one bundle compresses while the next one fills.
//!
//! The bundler hands over file data as the `Bytes` slices the network delivered (no copy),
//! gathered into batches of about [`BATCH_BYTES`], at most [`QUEUE_BATCHES`] queued: about
//! 4 MiB per bundle in flight whatever the database's size. The thread compresses into the
//! bundle's upload ([`ChannelWriter`]) and does not hash the content again: the bundler
//! already has every file's crc32c and gives the bundle's, combined from them, to
//! [`BundleCompressor::finish`] for the trailer ([`ObjectWriter::with_caller_crc`]). The
//! object is completed only on that explicit finish: a compressor dropped without it (the
//! backup stopped) abandons its upload, which then fails instead of storing a truncated
//! bundle.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::codec::{Codec, CodecError, ObjectSummary, ObjectWriter};

use super::upload::ChannelWriter;

/// Raw bytes gathered into one batch before it is handed to the thread (one thread
/// wake-up per batch, not per network message).
pub const BATCH_BYTES: usize = 1 << 20;
/// Batches queued for the thread: with the one being filled and the one being compressed,
/// the memory bound per bundle in flight (besides the upload's own).
pub const QUEUE_BATCHES: usize = 2;

enum Message {
    /// Raw content, in order.
    Batch(Vec<Bytes>),
    /// The content is complete; its crc32c.
    Finish(u32),
}

type Outcome = Result<ObjectSummary, CodecError>;

/// A bundle being compressed on its own thread; see the module doc.
pub struct BundleCompressor {
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<Outcome>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    raw_len: u64,
}

impl BundleCompressor {
    /// Starts the thread compressing with `codec` into `upload`.
    pub fn start(upload: ChannelWriter, codec: Codec) -> io::Result<BundleCompressor> {
        let (tx, rx) = sync_channel(QUEUE_BATCHES);
        let thread = std::thread::Builder::new()
            .name("walship-bundle".into())
            .spawn(move || compress(rx, upload, codec))?;
        Ok(BundleCompressor {
            tx: Some(tx),
            thread: Some(thread),
            batch: Vec::new(),
            batch_bytes: 0,
            raw_len: 0,
        })
    }

    /// Raw bytes written so far.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Appends `piece` to the content, handing the batch over once it holds
    /// [`BATCH_BYTES`]. An error means the thread stopped: [`BundleCompressor::finish`]
    /// returns its cause.
    pub fn write(&mut self, piece: Bytes) -> io::Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        self.raw_len += piece.len() as u64;
        self.batch_bytes += piece.len();
        self.batch.push(piece);
        if self.batch_bytes >= BATCH_BYTES {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Sends what is left, completes the object with `crc32c` as its content's checksum
    /// (which must be the crc32c of every byte written, in order: a wrong value makes a
    /// bundle that never reads as success) and returns the object's summary; the caller then
    /// waits for the upload itself.
    pub fn finish(mut self, crc32c: u32) -> Outcome {
        let sent = self
            .send_batch()
            .and_then(|()| self.send(Message::Finish(crc32c)));
        let outcome = self.join();
        match (sent, outcome) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(CodecError::Io(e)),
            (Ok(()), Ok(summary)) => Ok(summary),
        }
    }

    fn send_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        self.send(Message::Batch(batch))
    }

    fn send(&self, message: Message) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send(message).map_err(|_| stopped())
    }

    fn join(&mut self) -> Outcome {
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return Err(CodecError::Io(stopped()));
        };
        thread
            .join()
            .unwrap_or_else(|_| Err(CodecError::Io(io::Error::other("compression panicked"))))
    }
}

impl Drop for BundleCompressor {
    fn drop(&mut self) {
        // Abandoned: closing the queue without Finish makes the thread drop its upload
        // unfinished (the upload then fails). Wait, so that no thread outlives the backup.
        let _ = self.join();
    }
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the bundle's compression stopped (see its upload's error)",
    )
}

/// The thread: compresses every batch; completes the object only on `Finish`.
fn compress(rx: Receiver<Message>, upload: ChannelWriter, codec: Codec) -> Outcome {
    let mut writer = ObjectWriter::with_caller_crc(upload, codec)?;
    let crc32c = loop {
        match rx.recv() {
            Ok(Message::Batch(batch)) => {
                for piece in &batch {
                    writer.write_all(piece)?;
                }
            }
            Ok(Message::Finish(crc32c)) => break crc32c,
            Err(_) => return Err(CodecError::Io(stopped())),
        }
    };
    let (summary, upload) = writer.finish_with_crc(crc32c)?;
    upload.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::upload::start_upload;
    use crate::storage::{AnyStorage, LocalStorage, ObjectKey, Storage};

    fn fill(compressor: &mut BundleCompressor, data: &[u8]) {
        let data = Bytes::copy_from_slice(data);
        for at in (0..data.len()).step_by(100_000) {
            let piece = data.slice(at..(at + 100_000).min(data.len()));
            compressor.write(piece).unwrap();
        }
    }

    fn decode(path: &std::path::Path) -> Result<Vec<u8>, crate::codec::CodecError> {
        crate::codec::decode_to_vec(&std::fs::read(path).unwrap(), u64::MAX)
    }

    #[test]
    fn a_finished_bundle_decodes_to_every_byte_written_and_an_abandoned_one_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let data: Vec<u8> = (0..3 * BATCH_BYTES + 12345)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();

        let key = ObjectKey::new("bundles/00000000").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone());
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4).unwrap();
        fill(&mut compressor, &data);
        assert_eq!(compressor.raw_len(), data.len() as u64);
        let summary = compressor.finish(crc32c::crc32c(&data)).unwrap();
        assert_eq!(summary.raw_len, data.len() as u64);
        assert_eq!(summary.crc32c, crc32c::crc32c(&data));
        runtime.block_on(task).unwrap().unwrap();
        let back = decode(&dir.path().join("bundles/00000000")).unwrap();
        assert!(
            back == data,
            "the bundle does not decode to what was written"
        );

        let key = ObjectKey::new("bundles/00000001").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone());
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4).unwrap();
        fill(&mut compressor, &data[..2 * BATCH_BYTES]);
        drop(compressor);
        assert!(runtime.block_on(task).unwrap().is_err());
        assert!(runtime.block_on(storage.head(&key)).is_err());

        // A wrong crc32c is stored as given, and the bundle never reads as success.
        let key = ObjectKey::new("bundles/00000002").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone());
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4).unwrap();
        fill(&mut compressor, &data);
        compressor.finish(crc32c::crc32c(&data) ^ 1).unwrap();
        runtime.block_on(task).unwrap().unwrap();
        let err = decode(&dir.path().join("bundles/00000002")).unwrap_err();
        assert!(
            matches!(err, crate::codec::CodecError::ChecksumMismatch { .. }),
            "{err}"
        );
    }
}
