//! The fast path of `walship archive` for the common case, a WAL segment the repository does
//! not hold yet: the file is read once in chunks, and each chunk is checked
//! ([`SegmentValidator`]), checksummed and compressed as it is read. A reading thread checks
//! and checksums each chunk and hands it on. With lz4 it deals the chunks ([`LZ4_BLOCK_LEN`]
//! each) round-robin to `compressors` threads, each making an independent lz4 block, and the
//! calling thread takes the blocks back in the same rotation, so they join the frame in file
//! order: a sync push (the call Postgres waits for) compresses on every core. Other codecs
//! compress [`READ_CHUNK`] pieces on the calling thread, overlapping the reader. In an
//! encrypted repository the encoded object is sealed as it is written ([`SealingWriter`]),
//! with the data key looked up while the storage answers the HEAD for the segment.
//!
//! The raw segment is never held whole: a call holds a few recycled chunks and the compressed
//! object, so no 16 MiB buffer has to be faulted in and zeroed per file, and an `--async`
//! call's memory no longer grows with the files it is preparing. The verdicts are those of the
//! whole-file path: the same length, page-header and cluster checks, with the same errors.
//! Anything else (the first segment of a repository, `.partial`, `.history`, `.backup`, an
//! object that already exists) takes the whole-file path in `mod.rs`, which compares content
//! byte for byte.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;

use super::pushed::Receipt;
use super::{ArchiveError, Prepared};
use crate::codec::{self, Codec, LZ4_BLOCK_LEN, Lz4Block, ObjectSummary, ObjectWriter};
use crate::crypto::{DekId, SealingWriter, SecretKey};
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::WalSegSize;
use crate::pg::segment_check::{SegmentError, SegmentHeaderInfo, SegmentReport, SegmentValidator};
use crate::repo::{RepoError, RepoIdentity, Repository, StoredObject, layout};
use crate::storage::Storage;
use crate::task::run_blocking;

/// Bytes read, checked and compressed at a time (a whole number of WAL pages).
pub const READ_CHUNK: usize = 1 << 20;

/// A segment file read, checked and encoded in one pass.
struct EncodedSegment {
    receipt: Receipt,
    header: SegmentHeaderInfo,
    encoded: Bytes,
    stored: StoredObject,
}

/// The file's archive name as given (`--name`) or taken from its path.
pub(super) fn given_name(path: &Path, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_string(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The archive name of a segment file, when the repository already knows its segment size
/// (`None` otherwise, or when the name is not a segment's).
async fn known_segment_name(
    repo: &Repository,
    given: &str,
) -> Result<Option<(WalFileName, RepoIdentity)>, ArchiveError> {
    let Some(identity) = repo.identity().await? else {
        return Ok(None);
    };
    let Ok(seg_size) = WalSegSize::new(u64::from(identity.wal_segment_size)) else {
        return Ok(None);
    };
    match ArchiveFileName::parse(given, seg_size)? {
        ArchiveFileName::Segment(wal) => Ok(Some((wal, identity))),
        _ => Ok(None),
    }
}

/// Prepares the segment file at `path` in one streaming pass when the repository knows its
/// cluster and holds nothing under the name, with `compressors` threads compressing; `None`
/// sends the caller to the whole-file path.
pub(super) async fn prepare_new_segment(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
    compressors: usize,
) -> Result<Option<Prepared>, ArchiveError> {
    let Some((wal, identity)) = known_segment_name(repo, &given_name(path, name)).await? else {
        return Ok(None);
    };
    let name = ArchiveFileName::Segment(wal);
    let key = layout::wal_key(&name);
    // The data key (in an encrypted repository: the key file, a listing of `keys/` and the
    // wrapped key, once per process) is looked up while the storage answers the HEAD, so the
    // segment is sealed as it is compressed, with no second pass and no second buffer.
    let (head, seal) = tokio::join!(repo.storage().head(&key), Box::pin(repo.sealing_key()));
    match head {
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(RepoError::Storage(e).into()),
        Ok(_) => return Ok(None),
    }
    // A key that cannot be had now is asked for again by `upload`, after the checks of the
    // file: a refusal of the file itself still comes first, with its own exit code.
    let seal = seal.ok().flatten().map(|(id, dek)| Seal {
        id,
        dek,
        object: key.to_string(),
    });
    let sealed = seal.is_some();
    let codec = repo.codec();
    let owned = path.to_path_buf();
    let segment =
        run_blocking(move || read_and_encode(&owned, wal, codec, compressors, seal)).await?;
    let found = RepoIdentity::new(
        segment.header.system_identifier,
        segment.header.major(),
        segment.header.seg_size.bytes(),
    );
    repo.check_identity(&identity, &found)?;
    Ok(Some(Prepared {
        name,
        receipt: segment.receipt,
        key,
        encoded: Ok((segment.encoded, segment.stored)),
        sealed,
    }))
}

/// The data key a segment is sealed with as it is encoded, and the object's key (part of
/// every chunk's AAD).
struct Seal {
    id: DekId,
    dek: SecretKey,
    object: String,
}

/// The size and crc32c of the file at `path`, read in chunks (for comparing with a receipt).
pub(super) async fn file_receipt(path: &Path) -> Result<Receipt, ArchiveError> {
    let owned = path.to_path_buf();
    run_blocking(move || {
        let mut receipt = Receipt { size: 0, crc32c: 0 };
        read_chunks(&owned, |chunk| {
            receipt.size += chunk.len() as u64;
            receipt.crc32c = crate::crc::crc32c_append(receipt.crc32c, chunk);
            Ok(())
        })?;
        Ok(receipt)
    })
    .await
}

/// Reads, checks and encodes the segment file at `path` (see the module doc) with
/// `compressors` threads compressing (lz4 only; other codecs use one), sealing the encoded
/// object as it is written when `seal` is given.
fn read_and_encode(
    path: &Path,
    wal: WalFileName,
    codec: Codec,
    compressors: usize,
    seal: Option<Seal>,
) -> Result<EncodedSegment, ArchiveError> {
    let seg_bytes = wal.seg_size().as_u64();
    let len = std::fs::metadata(path)
        .map_err(|source| read_error(path, source))?
        .len();
    if len != seg_bytes {
        return Err(not_the_segment(
            wal,
            SegmentError::WrongLength {
                file: wal.to_string(),
                expected: seg_bytes,
                found: len,
            },
        ));
    }
    let mut out = Vec::with_capacity(seg_bytes as usize / 4 + codec::HEADER_LEN);
    let (crc, report, summary) = match seal {
        None => encode_into(path, wal, codec, compressors, &mut out)?.0,
        Some(seal) => {
            let sealer = SealingWriter::new(&mut out, seal.id, &seal.dek, &seal.object)
                .map_err(|source| read_error(path, source))?;
            let ((crc, report, summary), sealer) =
                encode_into(path, wal, codec, compressors, sealer)?;
            // What is stored is the envelope: its own length and crc32c.
            let (_, stored_len, stored_crc32c) = sealer
                .finish_counted()
                .map_err(|source| read_error(path, source))?;
            let summary = ObjectSummary {
                stored_len,
                stored_crc32c,
                ..summary
            };
            (crc, report, summary)
        }
    };
    Ok(EncodedSegment {
        receipt: Receipt {
            size: summary.raw_len,
            crc32c: crc,
        },
        header: report.header,
        stored: StoredObject {
            raw_len: summary.raw_len,
            raw_crc32c: summary.crc32c,
            stored_len: summary.stored_len,
            stored_crc32c: summary.stored_crc32c,
        },
        encoded: Bytes::from(out),
    })
}

/// What encoding a segment yields: the crc32c of its bytes, the check's report and the
/// stored object's summary.
type Encoded = (u32, SegmentReport, ObjectSummary);

/// Encodes the segment into `sink` with the codec's pipeline; returns the sink.
fn encode_into<W: io::Write>(
    path: &Path,
    wal: WalFileName,
    codec: Codec,
    compressors: usize,
    sink: W,
) -> Result<(Encoded, W), ArchiveError> {
    match codec {
        Codec::Lz4 => encode_lz4_blocks(path, wal, compressors.max(1), sink),
        codec => encode_stream(path, wal, codec, sink),
    }
}

/// Encodes with one compressor, on this thread, while a reading thread checks and
/// checksums the next chunk.
fn encode_stream<W: io::Write>(
    path: &Path,
    wal: WalFileName,
    codec: Codec,
    out: W,
) -> Result<(Encoded, W), ArchiveError> {
    let mut writer = ObjectWriter::new(out, codec).map_err(|e| encode_error(path, e))?;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
    let (checked, encoded) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            read_and_check(path, wal, READ_CHUNK, &empty_rx, |chunk, filled| {
                full_tx.send((chunk, filled)).is_ok()
            })
        });
        let mut encoded = Ok(());
        for (chunk, filled) in full_rx {
            if encoded.is_ok() {
                encoded = io::Write::write_all(&mut writer, &chunk[..filled]);
            }
            let _ = empty_tx.try_send(chunk);
        }
        (join_reader(path, reader), encoded)
    });
    let (crc, report) = checked?;
    encoded.map_err(|source| read_error(path, source))?;
    let (summary, out) = writer
        .finish_into_inner()
        .map_err(|e| encode_error(path, e))?;
    Ok(((crc, report, summary), out))
}

/// A compressor's output for one chunk: the chunk (to recycle) and its block.
type Compressed = (Vec<u8>, Result<Lz4Block, codec::CodecError>);

/// Encodes as an lz4 frame of independent blocks, one per chunk of [`LZ4_BLOCK_LEN`], compressed by
/// `compressors` threads at once: the reading thread deals chunk `i` to compressor
/// `i % compressors`, and this thread takes the blocks back in the same rotation, so they
/// reach the frame in file order.
fn encode_lz4_blocks<W: io::Write>(
    path: &Path,
    wal: WalFileName,
    compressors: usize,
    out: W,
) -> Result<(Encoded, W), ArchiveError> {
    let mut writer = ObjectWriter::with_lz4_blocks(out).map_err(|e| encode_error(path, e))?;
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(2 * compressors + 1);
    let (checked, encoded) = std::thread::scope(|scope| {
        let mut deal = Vec::with_capacity(compressors);
        let mut take = Vec::with_capacity(compressors);
        for _ in 0..compressors {
            let (work_tx, work_rx) = sync_channel::<(Vec<u8>, usize)>(1);
            let (done_tx, done_rx) = sync_channel::<Compressed>(1);
            let (spare_tx, spare_rx) = sync_channel::<Lz4Block>(2);
            scope.spawn(move || compress_chunks(&work_rx, &done_tx, &spare_rx));
            deal.push(work_tx);
            take.push((done_rx, spare_tx));
        }
        let reader = scope.spawn(move || {
            let mut next = 0;
            read_and_check(path, wal, LZ4_BLOCK_LEN, &empty_rx, |chunk, filled| {
                next += 1;
                deal[(next - 1) % deal.len()].send((chunk, filled)).is_ok()
            })
        });
        let mut encoded = Ok(());
        // Ends when the compressor due next has closed its channel: the reader stopped.
        for (done_rx, spare_tx) in take.iter().cycle() {
            let Ok((chunk, block)) = done_rx.recv() else {
                break;
            };
            if encoded.is_ok() {
                encoded = block
                    .map_err(|e| io::Error::other(e.to_string()))
                    .and_then(|block| {
                        let written = writer.write_lz4_block(&block);
                        let _ = spare_tx.try_send(block);
                        written
                    });
            }
            let _ = empty_tx.try_send(chunk);
        }
        (join_reader(path, reader), encoded)
    });
    let (crc, report) = checked?;
    encoded.map_err(|source| read_error(path, source))?;
    let (summary, out) = writer
        .finish_with_crc(crc)
        .map_err(|e| encode_error(path, e))?;
    Ok(((crc, report, summary), out))
}

/// A compressing thread of [`encode_lz4_blocks`]: compresses each chunk it is dealt into a
/// block (reusing the blocks handed back) until the dealer stops.
fn compress_chunks(
    work: &Receiver<(Vec<u8>, usize)>,
    done: &SyncSender<Compressed>,
    spare: &Receiver<Lz4Block>,
) {
    for (chunk, filled) in work {
        let mut block = spare.try_recv().unwrap_or_default();
        let block = block.compress(&chunk[..filled]).map(|()| block);
        if done.send((chunk, block)).is_err() {
            return;
        }
    }
}

/// Chunks read ahead of the compressor.
const CHUNKS_IN_FLIGHT: usize = 2;

fn join_reader(
    path: &Path,
    reader: std::thread::ScopedJoinHandle<'_, Result<(u32, SegmentReport), ArchiveError>>,
) -> Result<(u32, SegmentReport), ArchiveError> {
    reader
        .join()
        .unwrap_or_else(|_| Err(read_error(path, io::Error::other("reader panicked"))))
}

/// The reading thread: reads the file in chunks of `chunk_len` into recycled buffers (from
/// `empty`),
/// checks and checksums each, and hands it to `send` (which says whether to go on); returns
/// the crc32c and the check's report. Stops at the first check that fails (dropping `send`
/// ends the compressors).
fn read_and_check(
    path: &Path,
    wal: WalFileName,
    chunk_len: usize,
    empty: &Receiver<Vec<u8>>,
    mut send: impl FnMut(Vec<u8>, usize) -> bool,
) -> Result<(u32, SegmentReport), ArchiveError> {
    let mut file = File::open(path).map_err(|source| read_error(path, source))?;
    let mut validator = SegmentValidator::new(wal, None);
    let mut crc = 0u32;
    loop {
        let mut chunk = empty.try_recv().unwrap_or_else(|_| vec![0u8; chunk_len]);
        let filled = fill(&mut file, &mut chunk).map_err(|source| read_error(path, source))?;
        if filled == 0 {
            break;
        }
        validator
            .feed(&chunk[..filled])
            .map_err(|e| not_the_segment(wal, e))?;
        crc = crate::crc::crc32c_append(crc, &chunk[..filled]);
        if !send(chunk, filled) || filled < chunk_len {
            break;
        }
    }
    let report = validator.finish().map_err(|e| not_the_segment(wal, e))?;
    Ok((crc, report))
}

/// Reads into `buf` until it is full or the file ends; returns the bytes read.
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Calls `each` with the file's bytes in order, in pieces of [`READ_CHUNK`] (the last one
/// shorter), through one buffer.
fn read_chunks(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), ArchiveError> {
    let mut file = File::open(path).map_err(|source| read_error(path, source))?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let filled = fill(&mut file, &mut buf).map_err(|source| read_error(path, source))?;
        if filled == 0 {
            return Ok(());
        }
        each(&buf[..filled]).map_err(|source| read_error(path, source))?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

fn not_the_segment(wal: WalFileName, source: SegmentError) -> ArchiveError {
    ArchiveError::NotTheSegment {
        name: wal.to_string(),
        source,
    }
}

fn read_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_error(path: &Path, source: codec::CodecError) -> ArchiveError {
    ArchiveError::Read {
        path: path.to_path_buf(),
        source: io::Error::other(format!("encoding failed: {source}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::segment_check::tests::{SYSID, name, segment};

    fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn every_codec_and_compressor_count_encodes_the_file_exactly() {
        let wal = name(1, 3);
        let bytes = segment(wal);
        let (_dir, path) = write_temp(&bytes);
        let codecs = [Codec::Lz4, Codec::None, Codec::Zstd { level: 1 }];
        for (codec, compressors) in codecs.into_iter().flat_map(|c| [(c, 1), (c, 2), (c, 3)]) {
            let encoded = read_and_encode(&path, wal, codec, compressors, None).unwrap();
            let what = format!("{codec} with {compressors} compressors");
            assert_eq!(
                codec::decode_to_vec(&encoded.encoded, u64::MAX).unwrap(),
                bytes,
                "{what}"
            );
            assert_eq!(encoded.receipt.crc32c, crate::crc::crc32c(&bytes), "{what}");
            assert_eq!(encoded.receipt.size, bytes.len() as u64, "{what}");
            assert_eq!(encoded.stored.stored_len, encoded.encoded.len() as u64);
            assert_eq!(encoded.header.system_identifier, SYSID);

            // Sealed as it is encoded: the envelope opens into the same object, and the
            // stored figures are the envelope's.
            let dek = SecretKey::generate();
            let object = "wal/0000000100000000/000000010000000000000003";
            let seal = Seal {
                id: DekId::generate(),
                dek: dek.clone(),
                object: object.into(),
            };
            let sealed = read_and_encode(&path, wal, codec, compressors, Some(seal)).unwrap();
            assert!(codec::is_envelope(&sealed.encoded), "{what}");
            assert_eq!(
                crate::crypto::open_to_vec(&sealed.encoded, &dek, object, u64::MAX).unwrap(),
                bytes,
                "{what}"
            );
            assert_eq!(sealed.stored.stored_len, sealed.encoded.len() as u64);
            assert_eq!(
                sealed.stored.stored_crc32c,
                crate::crc::crc32c(&sealed.encoded),
                "{what}"
            );
            assert_eq!(
                (sealed.stored.raw_len, sealed.stored.raw_crc32c),
                (encoded.stored.raw_len, encoded.stored.raw_crc32c)
            );
        }
    }

    #[test]
    fn a_bad_page_in_the_last_chunk_is_refused_whatever_the_compressors() {
        let wal = name(1, 3);
        let mut bytes = segment(wal);
        let last_page = bytes.len() - 8192;
        bytes[last_page..last_page + 2].copy_from_slice(&[0, 0]);
        let (_dir, path) = write_temp(&bytes);
        for compressors in [1, 2, 3] {
            let err = read_and_encode(&path, wal, Codec::Lz4, compressors, None).err();
            assert!(
                matches!(err, Some(ArchiveError::NotTheSegment { .. })),
                "{compressors} compressors: {err:?}"
            );
        }
    }

    #[test]
    fn a_short_file_is_refused_before_reading() {
        let wal = name(1, 3);
        let bytes = segment(wal);
        let (_dir, path) = write_temp(&bytes[..bytes.len() - 1]);
        let err = read_and_encode(&path, wal, Codec::Lz4, 2, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains(&wal.to_string()), "{err}");
        assert!(matches!(
            err,
            ArchiveError::NotTheSegment {
                source: SegmentError::WrongLength { .. },
                ..
            }
        ));
    }
}
