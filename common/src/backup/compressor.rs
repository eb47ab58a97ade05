//! [`BundleCompressor`]: one bundle's compression on a thread of its own, so that reading
//! the tar stream (copy, crc32c) and compressing run on two cores at once, and the end of
//! one bundle compresses while the next one fills.
//!
//! The bundler reads file data straight into a raw chunk of [`CHUNK_BYTES`], handed over
//! through a queue of [`QUEUE_CHUNKS`] and recycled once compressed; the thread compresses
//! into the bundle's upload ([`ChannelWriter`]). The object is completed only on an explicit [`BundleCompressor::finish`]:
//! a compressor dropped without it (the backup stopped) abandons its upload, which then fails
//! instead of storing a truncated bundle.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::codec::{Codec, CodecError, ObjectSummary, ObjectWriter};

use super::upload::ChannelWriter;

/// Raw bytes per chunk handed to the thread.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks queued for the thread (the memory bound per bundle in flight, besides the
/// upload's own).
pub const QUEUE_CHUNKS: usize = 4;

enum Message {
    /// A chunk and how many of its bytes are data.
    Chunk(Vec<u8>, usize),
    Finish,
}

type Outcome = Result<ObjectSummary, CodecError>;

/// A bundle being compressed on its own thread; see the module doc.
pub struct BundleCompressor {
    tx: Option<SyncSender<Message>>,
    /// Chunks the thread is done with, for reuse (no fresh pages to fault in per chunk).
    recycled: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Outcome>>,
    chunk: Vec<u8>,
    filled: usize,
    raw_len: u64,
}

impl BundleCompressor {
    /// Starts the thread compressing with `codec` into `upload`.
    pub fn start(upload: ChannelWriter, codec: Codec) -> io::Result<BundleCompressor> {
        let (tx, rx) = sync_channel(QUEUE_CHUNKS);
        let (give_back, recycled) = sync_channel(QUEUE_CHUNKS + 1);
        let thread = std::thread::Builder::new()
            .name("walship-bundle".into())
            .spawn(move || compress(rx, give_back, upload, codec))?;
        Ok(BundleCompressor {
            tx: Some(tx),
            recycled,
            thread: Some(thread),
            chunk: vec![0; CHUNK_BYTES],
            filled: 0,
            raw_len: 0,
        })
    }

    /// Raw bytes written so far.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Free space of the chunk being filled, for the caller to read into directly (no extra
    /// copy); [`BundleCompressor::commit`] then says how much was read. Never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.chunk[self.filled..]
    }

    /// Takes the `n` bytes just read into [`BundleCompressor::spare`], handing the chunk
    /// over once full. An error means the thread stopped: [`BundleCompressor::finish`]
    /// returns its cause.
    pub fn commit(&mut self, n: usize) -> io::Result<()> {
        self.filled += n;
        self.raw_len += n as u64;
        if self.filled == self.chunk.len() {
            self.send_chunk()?;
        }
        Ok(())
    }

    /// Sends what is left, completes the object (and its upload's input) and returns the
    /// object's summary; the caller then waits for the upload itself.
    pub fn finish(mut self) -> Outcome {
        let sent = self.send_chunk().and_then(|()| self.send(Message::Finish));
        let outcome = self.join();
        match (sent, outcome) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(CodecError::Io(e)),
            (Ok(()), Ok(summary)) => Ok(summary),
        }
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| vec![0; CHUNK_BYTES]);
        let full = std::mem::replace(&mut self.chunk, next);
        let filled = std::mem::take(&mut self.filled);
        self.send(Message::Chunk(full, filled))
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

/// The thread: compresses every chunk, giving each back for reuse; completes the object
/// only on `Finish`.
fn compress(
    rx: Receiver<Message>,
    give_back: SyncSender<Vec<u8>>,
    upload: ChannelWriter,
    codec: Codec,
) -> Outcome {
    let mut writer = ObjectWriter::new(upload, codec)?;
    loop {
        match rx.recv() {
            Ok(Message::Chunk(chunk, filled)) => {
                writer.write_all(&chunk[..filled])?;
                let _ = give_back.try_send(chunk);
            }
            Ok(Message::Finish) => break,
            Err(_) => return Err(CodecError::Io(stopped())),
        }
    }
    let (summary, upload) = writer.finish_into_inner()?;
    upload.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::backup::upload::start_upload;
    use crate::codec::ObjectReader;
    use crate::storage::{AnyStorage, LocalStorage, ObjectKey, Storage};

    fn fill(compressor: &mut BundleCompressor, mut data: &[u8]) {
        while !data.is_empty() {
            let spare = compressor.spare();
            let n = spare.len().min(data.len()).min(100_000);
            spare[..n].copy_from_slice(&data[..n]);
            compressor.commit(n).unwrap();
            data = &data[n..];
        }
    }

    #[test]
    fn a_finished_bundle_decodes_to_every_byte_written_and_an_abandoned_one_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let data: Vec<u8> = (0..3 * CHUNK_BYTES + 12345)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();

        let key = ObjectKey::new("bundles/00000000").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone());
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4).unwrap();
        fill(&mut compressor, &data);
        assert_eq!(compressor.raw_len(), data.len() as u64);
        let summary = compressor.finish().unwrap();
        assert_eq!(summary.raw_len, data.len() as u64);
        runtime.block_on(task).unwrap().unwrap();
        let stored = std::fs::read(dir.path().join("bundles/00000000")).unwrap();
        let mut back = Vec::new();
        ObjectReader::new(&stored[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == data,
            "the bundle does not decode to what was written"
        );

        let key = ObjectKey::new("bundles/00000001").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone());
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4).unwrap();
        fill(&mut compressor, &data[..2 * CHUNK_BYTES]);
        drop(compressor);
        assert!(runtime.block_on(task).unwrap().is_err());
        assert!(runtime.block_on(storage.head(&key)).is_err());
    }
}
