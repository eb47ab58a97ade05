//! The fast path of `walship archive` for the common case, a WAL segment the repository does
//! not hold yet: the file is read once in [`READ_CHUNK`] pieces into one reused buffer, and
//! each piece is checked ([`SegmentValidator`]), checksummed and compressed as it is read.
//!
//! The raw segment is never held whole: a call holds one chunk and the compressed object, so
//! no 16 MiB buffer has to be faulted in and zeroed per file (most of a call's CPU besides
//! lz4), and an `--async` call's memory no longer grows with the files it is preparing. The
//! verdicts are those of the whole-file path: the same length, page-header and cluster
//! checks, in the same order, with the same errors. Anything else (the first segment of a
//! repository, `.partial`, `.history`, `.backup`, an object that already exists) takes the
//! whole-file path in `mod.rs`, which compares content byte for byte.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;

use super::pushed::Receipt;
use super::{ArchiveError, Prepared};
use crate::codec::{self, Codec, ObjectWriter};
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::WalSegSize;
use crate::pg::segment_check::{SegmentError, SegmentHeaderInfo, SegmentValidator};
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
pub(super) async fn known_segment_name(
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

/// Reads, checks and encodes the segment file at `path` (see the module doc).
fn read_and_encode(
    path: &Path,
    wal: WalFileName,
    codec: Codec,
) -> Result<EncodedSegment, ArchiveError> {
    let not_the_segment = |source| ArchiveError::NotTheSegment {
        name: wal.to_string(),
        source,
    };
    let seg_bytes = wal.seg_size().as_u64();
    let len = std::fs::metadata(path)
        .map_err(|source| read_error(path, source))?
        .len();
    if len != seg_bytes {
        return Err(not_the_segment(SegmentError::WrongLength {
            file: wal.to_string(),
            expected: seg_bytes,
            found: len,
        }));
    }
    let mut validator = SegmentValidator::new(wal, None);
    let mut out = Vec::with_capacity(seg_bytes as usize / 4 + codec::HEADER_LEN);
    let mut writer = ObjectWriter::new(&mut out, codec).map_err(|e| encode_error(path, e))?;
    let mut crc = 0u32;
    let mut check_failed = None;
    read_chunks(path, |chunk| {
        if let Err(e) = validator.feed(chunk) {
            check_failed = Some(e);
            return Err(io::Error::other("segment check failed"));
        }
        crc = crc32c::crc32c_append(crc, chunk);
        io::Write::write_all(&mut writer, chunk)
    })
    .map_err(|e| match check_failed.take() {
        Some(source) => not_the_segment(source),
        None => e,
    })?;
    let report = validator.finish().map_err(not_the_segment)?;
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

/// Calls `each` with the file's bytes in order, in pieces of [`READ_CHUNK`] (the last one
/// shorter), through one buffer.
fn read_chunks(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), ArchiveError> {
    let mut file = File::open(path).map_err(|source| read_error(path, source))?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(read_error(path, source)),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        each(&buf[..filled]).map_err(|source| read_error(path, source))?;
        if filled < buf.len() {
            return Ok(());
        }
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
