//! [`BundleCompressor`]: one bundle's compression on threads of its own, so that parsing
//! the tar stream (and the per-file crc32c) and compressing run on different cores at once.
//!
//! The bundler hands over file data as the `Bytes` slices the network delivered (no copy).
//! They are cut into batches of exactly [`BATCH_BYTES`] raw bytes (the last one shorter)
//! and, for lz4, dealt round-robin to [`parallel_compressors`] worker threads, each making
//! independent lz4 blocks ([`Lz4Block`], [`LZ4_BLOCK_LEN`] each) of its batch; a collecting
//! thread takes the blocks back in the same rotation, so they reach the frame in content
//! order, and writes them into the bundle's upload ([`ChannelWriter`], through
//! [`ObjectWriter::with_lz4_blocks`]). Other codecs have no workers: the batches go straight
//! to the collector, which compresses them as one stream. Every channel holds at most
//! [`QUEUE_BATCHES`], so about `(3 × workers + 2)` batches (a few MiB) are in flight per
//! bundle whatever the database's size. A batch is several blocks because each hand-over
//! costs a thread wake-up on either side: with one block per batch, a 0.9 GiB backup made
//! 14 000 more context switches and ran slower.
//!
//! Nothing hashes the content again: the bundler already has every file's crc32c and gives
//! the bundle's, combined from them, to [`BundleCompressor::finish`] for the trailer. The
//! object is completed only on that explicit finish: a compressor dropped without it (the
//! backup stopped) abandons its upload, which then fails instead of storing a truncated
//! bundle.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::codec::{
    Codec, CodecError, LZ4_BLOCK_LEN, Lz4Block, ObjectSummary, ObjectWriter, parallel_compressors,
};

use super::upload::ChannelWriter;
use crate::crypto::{DekId, SealingWriter, SecretKey};
use crate::storage::ObjectKey;

/// Raw bytes per batch: whole lz4 blocks, so that only a bundle's last block is short.
pub const BATCH_BYTES: usize = 4 * LZ4_BLOCK_LEN;
/// Batches each channel holds: with the one being filled, the one being compressed and the
/// one being written, the memory bound per bundle (besides the upload's own).
pub const QUEUE_BATCHES: usize = 1;

/// What travels towards the collector, in content order.
enum Piece {
    /// Raw content: at most [`BATCH_BYTES`], as slices.
    Raw(Vec<Bytes>),
    /// The same content compressed into lz4 blocks by a worker.
    Blocks(Vec<Lz4Block>),
}

/// The collector's end of one lane: its pieces, and (for a worker's lane) where spent
/// blocks go back to be reused.
struct LaneEnd {
    pieces: Receiver<Piece>,
    spare: Option<SyncSender<Vec<Lz4Block>>>,
}

type Outcome = Result<ObjectSummary, CodecError>;

/// A bundle being compressed on threads of its own; see the module doc.
pub struct BundleCompressor {
    /// Where batches go, dealt in rotation: workers' inputs (lz4) or the collector's.
    lanes: Vec<SyncSender<Piece>>,
    next_lane: usize,
    /// Carries the content's crc32c to the collector: sent only by [`Self::finish`].
    finish: Option<SyncSender<u32>>,
    collector: Option<JoinHandle<Outcome>>,
    workers: Vec<JoinHandle<()>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    raw_len: u64,
}

impl BundleCompressor {
    /// Starts the threads compressing with `codec` into `upload`.
    pub fn start(
        upload: ChannelWriter,
        codec: Codec,
        seal: Option<BundleSeal>,
    ) -> io::Result<BundleCompressor> {
        let mut lanes = Vec::new();
        let mut ends = Vec::new();
        let mut workers = Vec::new();
        let lane_count = if codec == Codec::Lz4 {
            parallel_compressors()
        } else {
            1
        };
        for _ in 0..lane_count {
            let (raw_tx, raw_rx) = sync_channel(QUEUE_BATCHES);
            if codec != Codec::Lz4 {
                lanes.push(raw_tx);
                ends.push(LaneEnd {
                    pieces: raw_rx,
                    spare: None,
                });
                continue;
            }
            let (block_tx, block_rx) = sync_channel(QUEUE_BATCHES);
            let (spare_tx, spare_rx) = sync_channel(QUEUE_BATCHES + 1);
            workers.push(
                std::thread::Builder::new()
                    .name("walship-lz4".into())
                    .spawn(move || compress_batches(&raw_rx, &block_tx, &spare_rx))?,
            );
            lanes.push(raw_tx);
            ends.push(LaneEnd {
                pieces: block_rx,
                spare: Some(spare_tx),
            });
        }
        let (finish_tx, finish_rx) = sync_channel(1);
        let collector = std::thread::Builder::new()
            .name("walship-bundle".into())
            .spawn(move || collect(ends, &finish_rx, upload, codec, seal))?;
        Ok(BundleCompressor {
            lanes,
            next_lane: 0,
            finish: Some(finish_tx),
            collector: Some(collector),
            workers,
            batch: Vec::new(),
            batch_bytes: 0,
            raw_len: 0,
        })
    }

    /// Raw bytes written so far.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Appends `piece` to the content, handing each batch over once it holds
    /// [`BATCH_BYTES`]. An error means the threads stopped:
    /// [`BundleCompressor::finish`] returns its cause.
    pub fn write(&mut self, mut piece: Bytes) -> io::Result<()> {
        self.raw_len += piece.len() as u64;
        while !piece.is_empty() {
            let room = BATCH_BYTES - self.batch_bytes;
            let part = if piece.len() > room {
                piece.split_to(room)
            } else {
                std::mem::take(&mut piece)
            };
            self.batch_bytes += part.len();
            self.batch.push(part);
            if self.batch_bytes == BATCH_BYTES {
                self.send_batch()?;
            }
        }
        Ok(())
    }

    /// Sends what is left, completes the object with `crc32c` as its content's checksum
    /// (which must be the crc32c of every byte written, in order: a wrong value makes a
    /// bundle that never reads as success) and returns the object's summary; the caller then
    /// waits for the upload itself.
    pub fn finish(mut self, crc32c: u32) -> Outcome {
        let sent = self.send_batch().and_then(|()| {
            let finish = self.finish.as_ref().ok_or_else(stopped)?;
            finish.send(crc32c).map_err(|_| stopped())
        });
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
        let lane = self.lanes.get(self.next_lane).ok_or_else(stopped)?;
        self.next_lane = (self.next_lane + 1) % self.lanes.len();
        lane.send(Piece::Raw(batch)).map_err(|_| stopped())
    }

    /// Closes the lanes (the collector then ends: with the object completed if the crc32c
    /// was sent, abandoned otherwise) and waits for every thread.
    fn join(&mut self) -> Outcome {
        self.lanes.clear();
        self.finish = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let Some(collector) = self.collector.take() else {
            return Err(CodecError::Io(stopped()));
        };
        collector
            .join()
            .unwrap_or_else(|_| Err(CodecError::Io(io::Error::other("compression panicked"))))
    }
}

impl Drop for BundleCompressor {
    fn drop(&mut self) {
        // Abandoned: closing the lanes without the crc32c makes the collector drop its
        // upload unfinished (the upload then fails). Wait, so that no thread outlives the
        // backup.
        let _ = self.join();
    }
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the bundle's compression stopped (see its upload's error)",
    )
}

/// A worker: compresses each batch it is dealt into blocks (reusing the blocks handed back)
/// until its lane closes or the collector stops.
fn compress_batches(
    raw: &Receiver<Piece>,
    blocks: &SyncSender<Piece>,
    spare: &Receiver<Vec<Lz4Block>>,
) {
    let mut joined = Vec::with_capacity(LZ4_BLOCK_LEN);
    for piece in raw {
        let Piece::Raw(batch) = piece else { return };
        let mut out = spare.try_recv().unwrap_or_default();
        let mut used = 0;
        // Only an oversized block fails, and blocks are never oversized: stop the lane,
        // and the collector reports the bundle as stopped.
        let compressed = for_each_block(&batch, &mut joined, |content| {
            if used == out.len() {
                out.push(Lz4Block::default());
            }
            used += 1;
            out[used - 1].compress(content).is_ok()
        });
        out.truncate(used);
        if !compressed || blocks.send(Piece::Blocks(out)).is_err() {
            return;
        }
    }
}

/// Calls `f` on each [`LZ4_BLOCK_LEN`] of `batch`'s content in order (the last one
/// shorter): in place when a block lies within one slice, else gathered in `joined`. Stops
/// at the first `false`, and says whether every call returned `true`.
fn for_each_block(batch: &[Bytes], joined: &mut Vec<u8>, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    joined.clear();
    for piece in batch {
        let mut rest: &[u8] = piece;
        while !rest.is_empty() {
            if joined.is_empty() && rest.len() >= LZ4_BLOCK_LEN {
                let (block, after) = rest.split_at(LZ4_BLOCK_LEN);
                if !f(block) {
                    return false;
                }
                rest = after;
                continue;
            }
            let take = (LZ4_BLOCK_LEN - joined.len()).min(rest.len());
            joined.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if joined.len() == LZ4_BLOCK_LEN {
                if !f(joined) {
                    return false;
                }
                joined.clear();
            }
        }
    }
    joined.is_empty() || f(joined)
}

/// The collecting thread: writes the pieces of every lane, in rotation, into the object;
/// completes it only if the crc32c arrived before the lanes closed.
fn collect(
    lanes: Vec<LaneEnd>,
    finish: &Receiver<u32>,
    upload: ChannelWriter,
    codec: Codec,
    seal: Option<BundleSeal>,
) -> Outcome {
    let upload = match seal {
        None => Sink::Plain(upload),
        Some(seal) => Sink::Sealed(SealingWriter::new(
            upload,
            seal.dek_id,
            &seal.dek,
            seal.key.as_ref(),
        )?),
    };
    let mut writer = if codec == Codec::Lz4 {
        ObjectWriter::with_lz4_blocks(upload)?
    } else {
        ObjectWriter::with_caller_crc(upload, codec)?
    };
    // Ends when the lane due next has closed: every piece before it is written.
    for lane in lanes.iter().cycle() {
        let Ok(piece) = lane.pieces.recv() else {
            break;
        };
        match piece {
            Piece::Raw(batch) => batch.iter().try_for_each(|p| writer.write_all(p))?,
            Piece::Blocks(blocks) => {
                blocks.iter().try_for_each(|b| writer.write_lz4_block(b))?;
                if let Some(spare) = &lane.spare {
                    let _ = spare.try_send(blocks);
                }
            }
        }
    }
    let crc32c = finish.try_recv().map_err(|_| stopped())?;
    let (summary, upload) = writer.finish_with_crc(crc32c)?;
    match upload {
        Sink::Plain(upload) => {
            upload.finish()?;
            Ok(summary)
        }
        Sink::Sealed(sealer) => {
            let (upload, stored_len, stored_crc32c) = sealer.finish_counted()?;
            upload.finish()?;
            Ok(ObjectSummary {
                stored_len,
                stored_crc32c,
                ..summary
            })
        }
    }
}

/// The data key and object key that seal a bundle of an encrypted repository.
pub struct BundleSeal {
    /// The data key's id.
    pub dek_id: DekId,
    /// The data key.
    pub dek: SecretKey,
    /// The bundle's repository key (bound into every chunk).
    pub key: ObjectKey,
}

/// Where a bundle's object bytes go: the upload itself, or an envelope around it.
enum Sink {
    Plain(ChannelWriter),
    Sealed(SealingWriter<ChannelWriter>),
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(data),
            Sink::Sealed(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Sealed(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::upload::start_upload;
    use crate::storage::{AnyStorage, LocalStorage, ObjectKey, Storage};

    /// Writes `data` in pieces of `piece_len`, which need not divide the block length.
    fn fill(compressor: &mut BundleCompressor, data: &[u8], piece_len: usize) {
        let data = Bytes::copy_from_slice(data);
        for at in (0..data.len()).step_by(piece_len) {
            let piece = data.slice(at..(at + piece_len).min(data.len()));
            compressor.write(piece).unwrap();
        }
    }

    fn decode(path: &std::path::Path) -> Result<Vec<u8>, crate::codec::CodecError> {
        crate::codec::decode_to_vec(&std::fs::read(path).unwrap(), u64::MAX)
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn a_finished_bundle_decodes_to_every_byte_written_whatever_the_codec_and_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let data = content(13 * LZ4_BLOCK_LEN + 12345);
        let cases = [
            (Codec::Lz4, 100_000),
            (Codec::Lz4, 3 * LZ4_BLOCK_LEN + 1),
            (Codec::Lz4, 5 * BATCH_BYTES),
            (Codec::Lz4, LZ4_BLOCK_LEN),
            (Codec::None, 100_000),
            (Codec::Zstd { level: 1 }, 70_001),
        ];
        for (n, (codec, piece_len)) in cases.into_iter().enumerate() {
            let key = ObjectKey::new(format!("bundles/{n:08}")).unwrap();
            let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone(), None);
            let mut compressor = BundleCompressor::start(upload, codec, None).unwrap();
            fill(&mut compressor, &data, piece_len);
            assert_eq!(compressor.raw_len(), data.len() as u64);
            let summary = compressor.finish(crate::crc::crc32c(&data)).unwrap();
            assert_eq!(summary.raw_len, data.len() as u64);
            assert_eq!(summary.crc32c, crate::crc::crc32c(&data));
            runtime.block_on(task).unwrap().unwrap();
            let back = decode(&dir.path().join(format!("bundles/{n:08}"))).unwrap();
            assert!(
                back == data,
                "{codec} in pieces of {piece_len}: the bundle does not decode to what was written"
            );
        }
    }

    #[test]
    fn an_abandoned_bundle_is_not_stored_and_a_wrong_crc_never_reads_as_success() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let data = content(5 * LZ4_BLOCK_LEN + 7);

        let key = ObjectKey::new("bundles/00000001").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone(), None);
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4, None).unwrap();
        fill(&mut compressor, &data, 100_000);
        drop(compressor);
        assert!(runtime.block_on(task).unwrap().is_err());
        assert!(runtime.block_on(storage.head(&key)).is_err());

        let key = ObjectKey::new("bundles/00000002").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone(), None);
        let mut compressor = BundleCompressor::start(upload, Codec::Lz4, None).unwrap();
        fill(&mut compressor, &data, 100_000);
        compressor.finish(crate::crc::crc32c(&data) ^ 1).unwrap();
        runtime.block_on(task).unwrap().unwrap();
        let err = decode(&dir.path().join("bundles/00000002")).unwrap_err();
        assert!(
            matches!(err, crate::codec::CodecError::ChecksumMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_empty_bundle_is_a_valid_empty_object() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let key = ObjectKey::new("bundles/00000000").unwrap();
        let (upload, task) = start_upload(runtime.handle(), storage.clone(), key.clone(), None);
        let compressor = BundleCompressor::start(upload, Codec::Lz4, None).unwrap();
        let summary = compressor.finish(0).unwrap();
        assert_eq!(summary.raw_len, 0);
        runtime.block_on(task).unwrap().unwrap();
        assert!(
            decode(&dir.path().join("bundles/00000000"))
                .unwrap()
                .is_empty()
        );
    }
}
