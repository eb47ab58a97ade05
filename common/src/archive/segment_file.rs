//! The fast path of `walship archive` for the common case, a WAL segment the repository does
//! not hold yet: the file is read once in [`READ_CHUNK`] pieces, and each piece is checked
//! ([`SegmentValidator`]), checksummed and compressed as it is read; a reading thread checks
//! and checksums each chunk while the calling thread compresses the one before, so the two
//! halves of the work overlap on two cores.
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
use crate::codec::{self, Codec, ObjectWriter};
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
/// cluster and holds nothing under the name; `None` sends the caller to the whole-file path.
pub(super) async fn prepare_new_segment(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
) -> Result<Option<Prepared>, ArchiveError> {
    let Some((wal, identity)) = known_segment_name(repo, &given_name(path, name)).await? else {
        return Ok(None);
    };
    let name = ArchiveFileName::Segment(wal);
    let key = layout::wal_key(&name);
    match repo.storage().head(&key).await {
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(RepoError::Storage(e).into()),
        Ok(_) => return Ok(None),
    }
    let codec = repo.codec();
    let owned = path.to_path_buf();
    let segment = run_blocking(move || read_and_encode(&owned, wal, codec)).await?;
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
    }))
}

/// The size and crc32c of the file at `path`, read in chunks (for comparing with a receipt).
pub(super) async fn file_receipt(path: &Path) -> Result<Receipt, ArchiveError> {
    let owned = path.to_path_buf();
    run_blocking(move || {
        let mut receipt = Receipt { size: 0, crc32c: 0 };
        read_chunks(&owned, |chunk| {
            receipt.size += chunk.len() as u64;
            receipt.crc32c = crc32c::crc32c_append(receipt.crc32c, chunk);
            Ok(())
        })?;
        Ok(receipt)
    })
    .await
}

/// Reads, checks and encodes the segment file at `path` (see the module doc). Reading,
/// checking and checksumming run on a thread of their own while this one compresses the
/// chunk read before, so the two halves of the work overlap on two cores.
fn read_and_encode(
    path: &Path,
    wal: WalFileName,
    codec: Codec,
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
    let mut writer = ObjectWriter::new(&mut out, codec).map_err(|e| encode_error(path, e))?;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
    let (checked, encoded) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_and_check(path, wal, &full_tx, &empty_rx));
        let mut encoded = Ok(());
        for (chunk, filled) in full_rx {
            if encoded.is_ok() {
                encoded = io::Write::write_all(&mut writer, &chunk[..filled]);
            }
            let _ = empty_tx.try_send(chunk);
        }
        let checked = reader
            .join()
            .unwrap_or_else(|_| Err(read_error(path, io::Error::other("reader panicked"))));
        (checked, encoded)
    });
    let (crc, report) = checked?;
    encoded.map_err(|source| read_error(path, source))?;
    let summary = writer.finish().map_err(|e| encode_error(path, e))?;
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

/// Chunks read ahead of the compressor.
const CHUNKS_IN_FLIGHT: usize = 2;

/// The reading thread of [`read_and_encode`]: reads the file chunk by chunk into recycled
/// buffers, checks and checksums each, and hands it on; returns the crc32c and the check's
/// report. Stops at the first check that fails (closing the channel ends the compressor).
fn read_and_check(
    path: &Path,
    wal: WalFileName,
    full: &SyncSender<(Vec<u8>, usize)>,
    empty: &Receiver<Vec<u8>>,
) -> Result<(u32, SegmentReport), ArchiveError> {
    let mut file = File::open(path).map_err(|source| read_error(path, source))?;
    let mut validator = SegmentValidator::new(wal, None);
    let mut crc = 0u32;
    loop {
        let mut chunk = empty.try_recv().unwrap_or_else(|_| vec![0u8; READ_CHUNK]);
        let filled = fill(&mut file, &mut chunk).map_err(|source| read_error(path, source))?;
        if filled == 0 {
            break;
        }
        validator
            .feed(&chunk[..filled])
            .map_err(|e| not_the_segment(wal, e))?;
        crc = crc32c::crc32c_append(crc, &chunk[..filled]);
        if full.send((chunk, filled)).is_err() || filled < READ_CHUNK {
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
