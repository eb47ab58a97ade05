//! Reading one object and checking it: a WAL object (decodes, checksums match, page headers
//! right for its name and the repository's system identifier; a `.history` parses), or one
//! bundle of a backup (decodes, and every file the manifest places in it is there at its
//! offset with its size and crc32c). Segments and bundles are streamed through a fixed buffer,
//! so memory does not grow with their size; `.history` and `.backup` files are read whole.
//!
//! Storage failures are errors (the caller stops: "could not check" is never "sound"); what
//! is wrong with the bytes is a [`Problem`].

use std::io::{BufRead, Read};

use crate::catalog::{BackupManifest, FileKind};
use crate::codec::{self, CodecError, HEADER_LEN, ObjectHeader};
use crate::pg::file_name::ArchiveFileName;
use crate::pg::history::TimelineHistory;
use crate::pg::segment_check::{SegmentValidator, validate_first_page};
use crate::pg::timeline::TimelineId;
use crate::repo::{Repository, layout, limits};
use crate::retention::StoredWal;
use crate::storage::{ObjectKey, Storage, StorageError};
use crate::task::run_blocking;

use super::Problem;

/// The first page of a segment: what `.partial` objects are checked on.
const XLOG_BLCKSZ: usize = 8192;

/// What checking one object found.
#[derive(Debug, Default)]
pub(super) struct Checked {
    pub(super) problems: Vec<Problem>,
    /// Stored bytes read.
    pub(super) bytes: u64,
    /// A parsed `.history`.
    pub(super) history: Option<(TimelineId, TimelineHistory)>,
}

fn corrupt(key: &ObjectKey, message: impl ToString) -> Problem {
    Problem::CorruptObject {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// Reads the object at `key` whole; `None` with a problem when it vanished.
async fn read_whole(
    repo: &Repository,
    key: &ObjectKey,
    max_stored: u64,
    out: &mut Checked,
) -> Result<Option<bytes::Bytes>, StorageError> {
    match repo.storage().get_bytes(key, max_stored).await {
        Ok(bytes) => {
            out.bytes += bytes.len() as u64;
            Ok(Some(bytes))
        }
        Err(e) if e.is_not_found() => {
            out.problems.push(Problem::MissingObject {
                key: key.to_string(),
            });
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads and checks only the object's header (`--quick`).
async fn check_header(
    repo: &Repository,
    key: &ObjectKey,
    out: &mut Checked,
) -> Result<(), StorageError> {
    let reader = match repo.storage().get_range(key, 0..HEADER_LEN as u64).await {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => {
            out.problems.push(Problem::MissingObject {
                key: key.to_string(),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let bytes = reader
        .read_all(HEADER_LEN as u64)
        .await
        .map_err(|e| StorageError::from_read_error(e, key, repo.location()))?;
    out.bytes += bytes.len() as u64;
    match <&[u8; HEADER_LEN]>::try_from(&bytes[..]) {
        Ok(header) => {
            if let Err(e) = ObjectHeader::decode(header) {
                out.problems.push(corrupt(key, e));
            }
        }
        Err(_) => out.problems.push(corrupt(
            key,
            format!("only {} bytes: truncated", bytes.len()),
        )),
    }
    Ok(())
}

/// Checks one WAL object.
pub(super) async fn check_wal(
    repo: &Repository,
    wal: &StoredWal,
    sysid: u64,
    quick: bool,
) -> Result<Checked, StorageError> {
    let key = &wal.meta.key;
    let mut out = Checked::default();
    let is_history = matches!(wal.name, ArchiveFileName::History(_));
    if quick && !is_history {
        check_header(repo, key, &mut out).await?;
        return Ok(out);
    }
    if let ArchiveFileName::Segment(segment) | ArchiveFileName::Partial(segment) = wal.name {
        // Segments (up to 1 GiB each) are streamed through a fixed buffer.
        let stream = match repo.storage().get(key).await {
            Ok(stream) => stream,
            Err(e) if e.is_not_found() => {
                out.problems.push(Problem::MissingObject {
                    key: key.to_string(),
                });
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let runtime = tokio::runtime::Handle::current();
        let counted = CountingRead {
            inner: stream.into_blocking(&runtime),
            count: count.clone(),
        };
        let partial = matches!(wal.name, ArchiveFileName::Partial(_));
        let location = repo.location().to_string();
        let (opener, object) = (repo.clone(), key.clone());
        let (read, verdict) = tokio::task::spawn_blocking(move || {
            // A sealed object is opened (decrypted) first; refused as the codec would be.
            let verdict = match opener.open_blocking(&object, counted, &runtime) {
                Ok(input) => scan_segment(input, segment, partial, sysid),
                Err(e) => Err(SegmentVerdict::Wal(format!("cannot open: {e}"))),
            };
            (count.load(std::sync::atomic::Ordering::Relaxed), verdict)
        })
        .await
        .map_err(|e| StorageError::Transient {
            op: crate::storage::StorageOp::Get,
            key: key.to_string(),
            endpoint: location.clone(),
            message: format!("checking thread failed: {e}"),
        })?;
        out.bytes += read;
        match verdict {
            Ok(()) => {}
            Err(SegmentVerdict::Codec(CodecError::Io(io))) => {
                return Err(StorageError::from_read_error(io, key, &location));
            }
            Err(SegmentVerdict::Codec(e)) => out.problems.push(corrupt(key, e)),
            Err(SegmentVerdict::Wal(message)) => out.problems.push(Problem::BadWal {
                key: key.to_string(),
                message,
            }),
        }
        return Ok(out);
    }
    let limit = limits::wal_content_limit(&wal.name);
    let Some(stored) = read_whole(repo, key, limits::stored_limit(limit), &mut out).await? else {
        return Ok(out);
    };
    // A sealed object is opened (decrypted) first.
    let stored = match repo.open_stored(key, stored).await {
        Ok(opened) => opened,
        Err(e) => {
            out.problems.push(corrupt(key, format!("cannot open: {e}")));
            return Ok(out);
        }
    };
    let name = wal.name;
    let verdict = run_blocking(
        move || -> Result<Option<(TimelineId, TimelineHistory)>, String> {
            let content =
                codec::decode_to_vec(&stored, limit).map_err(|e| format!("corrupt: {e}"))?;
            if let ArchiveFileName::History(tli) = name {
                let history = TimelineHistory::parse(tli, &content).map_err(|e| e.to_string())?;
                return Ok(Some((tli, history)));
            }
            Ok(None)
        },
    )
    .await;
    match verdict {
        Ok(history) => out.history = history,
        Err(message) if message.starts_with("corrupt: ") => out
            .problems
            .push(corrupt(key, &message["corrupt: ".len()..])),
        Err(message) => out.problems.push(Problem::BadWal {
            key: key.to_string(),
            message,
        }),
    }
    Ok(out)
}

/// What is wrong with a segment object: its encoding (the root cause whenever the codec
/// objects, even if a page looked wrong first) or its WAL.
enum SegmentVerdict {
    Codec(CodecError),
    Wal(String),
}

/// Streams a segment (or `.partial`) object through the codec and the page checks: a whole
/// segment page by page ([`SegmentValidator`]), a `.partial` by its first page. The pages are
/// checked in the decoder's own buffer (no copy). Reads to the end in every case, so that the
/// codec's checksums have the last word.
fn scan_segment<R: Read>(
    input: R,
    segment: crate::pg::file_name::WalFileName,
    partial: bool,
    sysid: u64,
) -> Result<(), SegmentVerdict> {
    let codec_error = |e: std::io::Error| SegmentVerdict::Codec(CodecError::from(e));
    let mut reader = codec::ObjectReader::new(input).map_err(SegmentVerdict::Codec)?;
    let mut validator = (!partial).then(|| SegmentValidator::new(segment, Some(sysid)));
    let mut first_page: Vec<u8> = Vec::with_capacity(XLOG_BLCKSZ);
    // A page split between two of the decoder's blocks.
    let mut split_page: Vec<u8> = Vec::with_capacity(XLOG_BLCKSZ);
    let mut wal_error: Option<String> = None;
    loop {
        let available = reader.fill_buf().map_err(codec_error)?;
        if available.is_empty() {
            break;
        }
        if first_page.len() < XLOG_BLCKSZ {
            let take = (XLOG_BLCKSZ - first_page.len()).min(available.len());
            first_page.extend_from_slice(&available[..take]);
        }
        if wal_error.is_none()
            && let Some(v) = validator.as_mut()
            && let Err(e) = feed_pages(v, &mut split_page, available)
        {
            wal_error = Some(e.to_string());
        }
        let n = available.len();
        reader.consume(n);
    }
    if wal_error.is_none()
        && let Some(v) = validator.as_mut()
        && let Err(e) = v.feed(&split_page)
    {
        // A last piece shorter than a page: `finish` reports the length.
        wal_error = Some(e.to_string());
    }
    if let Some(message) = wal_error {
        return Err(SegmentVerdict::Wal(message));
    }
    match validator {
        Some(v) => v
            .finish()
            .map(|_| ())
            .map_err(|e| SegmentVerdict::Wal(e.to_string())),
        None if first_page.len() < XLOG_BLCKSZ => {
            Err(SegmentVerdict::Wal("shorter than one page".into()))
        }
        None => validate_first_page(&first_page, segment, Some(sysid))
            .map(|_| ())
            .map_err(|e| SegmentVerdict::Wal(e.to_string())),
    }
}

/// Feeds `bytes` to `validator` in whole pages; a page that `bytes` ends inside waits in
/// `split_page` for the rest of it.
fn feed_pages(
    validator: &mut SegmentValidator,
    split_page: &mut Vec<u8>,
    mut bytes: &[u8],
) -> Result<(), crate::pg::segment_check::SegmentError> {
    if !split_page.is_empty() {
        let take = (XLOG_BLCKSZ - split_page.len()).min(bytes.len());
        split_page.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if split_page.len() < XLOG_BLCKSZ {
            return Ok(());
        }
        validator.feed(split_page)?;
        split_page.clear();
    }
    let whole = bytes.len() - bytes.len() % XLOG_BLCKSZ;
    validator.feed(&bytes[..whole])?;
    split_page.extend_from_slice(&bytes[whole..]);
    Ok(())
}

/// Checks bundle `index` of `manifest` against the files the manifest places in it.
pub(super) async fn check_bundle(
    repo: &Repository,
    manifest: &BackupManifest,
    index: usize,
    quick: bool,
) -> Result<Checked, StorageError> {
    let mut out = Checked::default();
    let Some(bundle) = manifest.bundles.get(index) else {
        return Ok(out);
    };
    let backup = manifest.id.to_string();
    let Ok(key) = layout::bundle_key(manifest.id, &bundle.name) else {
        out.problems.push(Problem::BadManifest {
            backup,
            message: format!("bundle name {:?} is not a valid key", bundle.name),
        });
        return Ok(out);
    };
    if quick {
        check_header(repo, &key, &mut out).await?;
        return Ok(out);
    }
    let stream = match repo.storage().get(&key).await {
        Ok(stream) => stream,
        Err(e) if e.is_not_found() => {
            out.problems.push(Problem::MissingObject {
                key: key.to_string(),
            });
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut files: Vec<(u64, u64, u32, String)> = manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::File && f.bundle == Some(index as u32))
        .map(|f| {
            (
                f.offset.unwrap_or(0),
                f.size,
                f.crc32c.unwrap_or(0),
                f.path.clone(),
            )
        })
        .collect();
    files.sort();
    let raw_len = bundle.raw_len;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let runtime = tokio::runtime::Handle::current();
    let counted = CountingRead {
        inner: stream.into_blocking(&runtime),
        count: count.clone(),
    };
    let location = repo.location().to_string();
    let key2 = key.clone();
    let opener = repo.clone();
    let result = tokio::task::spawn_blocking(move || {
        // A sealed bundle is opened (decrypted) first; one that cannot be is a problem of
        // that object, never a storage failure.
        let verdict = match opener.open_blocking(&key2, counted, &runtime) {
            Ok(input) => scan_files(input, &files, raw_len),
            Err(e) => Err(CodecError::CorruptPayload {
                offset: 0,
                detail: format!("cannot open: {e}"),
            }),
        };
        (count.load(std::sync::atomic::Ordering::Relaxed), verdict)
    })
    .await
    .map_err(|e| StorageError::Transient {
        op: crate::storage::StorageOp::Get,
        key: key.to_string(),
        endpoint: location.clone(),
        message: format!("checking thread failed: {e}"),
    })?;
    let (read, verdict) = result;
    out.bytes += read;
    match verdict {
        Ok(mismatches) => {
            for (path, message) in mismatches {
                out.problems.push(Problem::FileMismatch {
                    backup: backup.clone(),
                    bundle: bundle.name.clone(),
                    path,
                    message,
                });
            }
        }
        Err(CodecError::Io(io)) => return Err(StorageError::from_read_error(io, &key, &location)),
        Err(e) => out.problems.push(corrupt(&key, e)),
    }
    Ok(out)
}

/// Streams a bundle's content past its files (sorted by offset), deriving each one's crc32c
/// from the decoder's running crc32c of the content ([`codec::crc_of_piece`]): each byte is
/// decoded once and hashed once, for the object's checksum and its file's at the same time;
/// returns the files that disagree.
fn scan_files<R: Read>(
    input: R,
    files: &[(u64, u64, u32, String)],
    raw_len: u64,
) -> Result<Vec<(String, String)>, CodecError> {
    let mut scan = Scan {
        reader: codec::ObjectReader::new(input)?,
        pos: 0,
    };
    let mut mismatches = Vec::new();
    for (offset, size, expected, path) in files {
        if *offset < scan.pos {
            mismatches.push((
                path.clone(),
                format!("offset {offset} overlaps the previous file"),
            ));
            continue;
        }
        scan.advance_to(*offset)?;
        let before = scan.reader.content_crc32c();
        let got = scan.advance_to(offset + size)?;
        let crc = codec::crc_of_piece(before, scan.reader.content_crc32c(), got);
        if got != *size {
            mismatches.push((
                path.clone(),
                format!("the bundle ends after {got} of its {size} bytes (offset {offset})"),
            ));
        } else if crc != *expected {
            mismatches.push((
                path.clone(),
                format!(
                    "crc32c {crc:08x} where the manifest says {expected:08x} (offset {offset}, {size} bytes)"
                ),
            ));
        }
    }
    // Read to the end: the codec checks the trailer, total length and checksums there.
    scan.advance_to(u64::MAX)?;
    if scan.pos != raw_len {
        mismatches.push((
            String::new(),
            format!(
                "the bundle holds {} bytes, the manifest says {raw_len}",
                scan.pos
            ),
        ));
    }
    Ok(mismatches)
}

/// A position in a bundle's decoded content.
struct Scan<R: Read> {
    reader: codec::ObjectReader<R>,
    pos: u64,
}

impl<R: Read> Scan<R> {
    /// Takes the content up to offset `end` (or its end) out of the decoder's buffer, which
    /// checksums it; returns how many bytes that was.
    fn advance_to(&mut self, end: u64) -> Result<u64, CodecError> {
        let start = self.pos;
        while self.pos < end {
            let available = self.reader.fill_buf().map_err(CodecError::from)?;
            if available.is_empty() {
                break;
            }
            let n = (available.len() as u64).min(end - self.pos);
            // n <= available.len(), a usize.
            self.reader.consume(n as usize);
            self.pos += n;
        }
        Ok(self.pos - start)
    }
}

/// Counts the stored bytes read, into a counter the caller keeps (the reader itself moves
/// into the repository's opener, which decrypts a sealed object).
struct CountingRead<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
