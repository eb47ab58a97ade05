//! `walship archive`: storing one file Postgres hands to `archive_command`, so that Postgres
//! can trust exit 0.
//!
//! [`archive_file`] classifies the name, checks the bytes (a segment must be exactly one
//! segment long, with page headers that match its name and the repository's cluster),
//! creates or checks `walship.json`, and stores the file idempotently: the same content
//! already archived is success without an upload, different content is a refusal and nothing
//! is overwritten. [`archive_with_read_ahead`] (`--async`) does the same while pushing the
//! next `.ready` files in parallel and leaving receipts ([`pushed`]) for them.
//!
//! Each file goes through two phases: *prepare* (read, check, compare with what the
//! repository holds, encode) and *upload* (only the encoded object is held). A segment the
//! repository does not hold yet, nearly every call, is prepared in one streaming pass of
//! 256 KiB chunks (lz4; 1 MiB for other codecs; [`segment_file`]); anything else is read
//! whole and compared byte for byte.
//! `--async` runs at most `RAW_IN_FLIGHT` (2) files in the first phase at once, so one call's
//! memory is bounded by that many files being prepared plus the encoded uploads in flight,
//! whatever the backlog. `walship.json` is read once per file.
//!
//! **Invariant:** success is returned only after the object is durably stored and the
//! backend confirmed its checksum, or after an existing object was read back, verified and
//! found byte-identical.

pub mod pushed;
pub mod ready;
mod segment_file;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::codec::{self, ObjectWriter};
use crate::pg::file_name::{ArchiveFileName, FileNameError};
use crate::pg::history::TimelineHistory;
use crate::pg::page_header::XLOG_BLCKSZ;
use crate::pg::segment::WalSegSize;
use crate::pg::segment_check::{self, SegmentError};
use crate::repo::{RepoError, RepoIdentity, Repository, StoredObject, layout, limits};
use crate::storage::{ObjectKey, PutOptions, Storage};
use crate::task::run_blocking;
use pushed::{PushedReceipts, Receipt};

/// Files one `--async` call holds whole in memory at once (reading, checking, comparing,
/// encoding), the current one included. Uploads hold only the encoded object, so more
/// uploads than this can be in flight; more raw files than cores would only cost memory.
const RAW_IN_FLIGHT: usize = 2;

/// Segment size assumed for classifying a name when neither the repository nor the file
/// says otherwise (only history and backup files reach this; their names do not depend on it).
const DEFAULT_SEG_SIZE_MIB: u64 = 16;

/// How a file came to be archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// Uploaded now.
    Stored(StoredObject),
    /// The repository already held exactly these bytes (verified); nothing uploaded.
    AlreadyArchived,
    /// An earlier `--async` call pushed exactly these bytes and left a receipt.
    PushedAhead,
}

/// A file that is now safely in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archived {
    /// The file's archive name.
    pub name: ArchiveFileName,
    /// Its size and crc32c.
    pub receipt: Receipt,
    /// How it got there.
    pub outcome: ArchiveOutcome,
}

/// `--async` settings: how many `.ready` files to push ahead, and how many uploads at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAhead {
    /// At most this many further `.ready` files are pushed per call.
    pub files: usize,
    /// Uploads in flight at once, the current file included (at least 1).
    pub parallel: usize,
}

/// Why a file was not archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The name is not a WAL archive file name.
    #[error("refusing to archive: {0}")]
    Name(#[from] FileNameError),
    /// A segment whose bytes are not the segment its name says.
    #[error("refusing to archive {name}: {source}")]
    NotTheSegment {
        /// The archive name.
        name: String,
        /// What the page-header check found.
        #[source]
        source: SegmentError,
    },
    /// Some other file whose content is not what its name says.
    #[error("refusing to archive {name}: {reason}")]
    BadContent {
        /// The archive name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The repository already holds different bytes under this name.
    #[error(
        "refusing to archive {name}: {key} in {location} already holds different content ({stored_len} bytes, crc32c {stored_crc32c:08x}; this file: {len} bytes, crc32c {crc32c:08x}); nothing was overwritten"
    )]
    Conflict {
        /// The archive name.
        name: String,
        /// The object key.
        key: String,
        /// The repository.
        location: String,
        /// Length of the archived content.
        stored_len: u64,
        /// crc32c of the archived content.
        stored_crc32c: u32,
        /// Length of this file.
        len: u64,
        /// crc32c of this file.
        crc32c: u32,
    },
    /// The repository holds a corrupt object under this name; it is left for a human.
    #[error(
        "refusing to archive {name}: the archived copy is unreadable ({source}); nothing was overwritten"
    )]
    ExistingCorrupt {
        /// The archive name.
        name: String,
        /// What reading the archived copy found.
        #[source]
        source: RepoError,
    },
    /// The repository failed, or belongs to another cluster.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl ArchiveError {
    /// True when a safety rule refused the file: retrying cannot help, a human must look.
    /// False for failures Postgres should simply retry (storage unreachable, I/O errors).
    pub fn is_refusal(&self) -> bool {
        match self {
            ArchiveError::Name(_)
            | ArchiveError::NotTheSegment { .. }
            | ArchiveError::BadContent { .. }
            | ArchiveError::Conflict { .. }
            | ArchiveError::ExistingCorrupt { .. } => true,
            ArchiveError::Repo(RepoError::OtherCluster { .. }) => true,
            ArchiveError::Read { .. } | ArchiveError::Repo(_) => false,
        }
    }
}

/// A file read and checked, ready to store.
struct Checked {
    name: ArchiveFileName,
    content: Bytes,
    receipt: Receipt,
}

/// Archives the file at `path` under `name` (default: the path's file name).
pub async fn archive_file(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
) -> Result<Archived, ArchiveError> {
    let prepared = prepare_file(repo, path, name, crate::codec::parallel_compressors()).await?;
    upload(repo, prepared).await
}

/// Compressing threads per file under `--async`: the files already run side by side, and
/// more threads would only hold more chunks in memory.
const ASYNC_COMPRESSORS: usize = 1;

/// The prepare phase for a file: the streaming pass for a new segment (with `compressors`
/// threads compressing), else the whole file.
async fn prepare_file(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
    compressors: usize,
) -> Result<Prepared, ArchiveError> {
    if let Some(prepared) = segment_file::prepare_new_segment(repo, path, name, compressors).await?
    {
        return Ok(prepared);
    }
    let checked = read_and_check(repo, path, name).await?;
    prepare(repo, checked).await
}

/// [`archive_file`] with the prepare phase (read, check, compare, encode) under a permit of
/// `raw`, released before the upload.
async fn archive_file_limited(
    repo: &Repository,
    path: &Path,
    raw: &Semaphore,
) -> Result<Archived, ArchiveError> {
    let permit = raw.acquire().await.ok();
    let prepared = prepare_file(repo, path, None, ASYNC_COMPRESSORS).await?;
    drop(permit);
    upload(repo, prepared).await
}

/// `Some` when an earlier `--async` call left a receipt for exactly the bytes at `path`.
async fn pushed_ahead(
    repo: &Repository,
    receipts: &PushedReceipts,
    path: &Path,
    name: Option<&str>,
) -> Result<Option<Archived>, ArchiveError> {
    let given = segment_file::given_name(path, name);
    let Ok(name) = ArchiveFileName::parse(&given, seg_size_of(repo).await?) else {
        return Ok(None);
    };
    let Some(recorded) = receipts.get(&name) else {
        return Ok(None);
    };
    let receipt = segment_file::file_receipt(path).await?;
    if receipt != recorded {
        return Ok(None);
    }
    receipts.remove(&name);
    Ok(Some(Archived {
        name,
        receipt,
        outcome: ArchiveOutcome::PushedAhead,
    }))
}

/// Archives `path` like [`archive_file`], and in the same call pushes up to
/// `read_ahead.files` further `.ready` files of the same `pg_wal` in parallel, leaving a
/// receipt for each one stored. If an earlier call left a receipt for exactly these bytes,
/// returns at once. Failures of the files pushed ahead are logged and left for Postgres to
/// retry; only the result for `path` is returned.
pub async fn archive_with_read_ahead(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
    read_ahead: ReadAhead,
) -> Result<Archived, ArchiveError> {
    let pg_wal = path.parent().unwrap_or(Path::new("."));
    let receipts = PushedReceipts::for_repository(pg_wal, repo.location());
    let raw = Semaphore::new(RAW_IN_FLIGHT);
    let permit = raw.acquire().await.ok();
    if let Some(done) = pushed_ahead(repo, &receipts, path, name).await? {
        return Ok(done);
    }
    let current = prepare_file(repo, path, name, ASYNC_COMPRESSORS).await?;
    let seg_size = seg_size_of(repo).await?;
    let ahead: Vec<ArchiveFileName> =
        ready::ready_files(pg_wal, seg_size, &current.name, read_ahead.files)
            .unwrap_or_default()
            .into_iter()
            .filter(|name| receipts.get(name).is_none())
            .collect();
    let store_current = async {
        drop(permit);
        upload(repo, current).await
    };
    let push_ahead = futures::stream::iter(ahead)
        .map(|name| {
            let (receipts, raw) = (&receipts, &raw);
            async move {
                let path = pg_wal.join(name.to_string());
                match archive_file_limited(repo, &path, raw).await {
                    Ok(done) => {
                        if let Err(e) = receipts.record(&done.name, done.receipt) {
                            tracing::warn!(
                                "pushed {} ahead but could not record it: {e}",
                                done.name
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!("could not push {name} ahead (Postgres will retry it): {e}")
                    }
                }
            }
        })
        .buffer_unordered(read_ahead.parallel.saturating_sub(1).max(1))
        .collect::<Vec<()>>();
    let (result, _) = tokio::join!(store_current, push_ahead);
    result
}

/// The repository's segment size, once `walship.json` exists (the current file created it).
async fn seg_size_of(repo: &Repository) -> Result<WalSegSize, ArchiveError> {
    let size = repo
        .identity()
        .await?
        .map_or(DEFAULT_SEG_SIZE_MIB << 20, |i| {
            u64::from(i.wal_segment_size)
        });
    WalSegSize::new(size).map_err(|e| {
        ArchiveError::Repo(RepoError::BadIdentity {
            location: repo.location().to_string(),
            message: e.to_string(),
        })
    })
}

/// Reads the file, classifies its name, checks its bytes, and for a segment creates or
/// checks the repository identity.
async fn read_and_check(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
) -> Result<Checked, ArchiveError> {
    let given = segment_file::given_name(path, name);
    let content = tokio::fs::read(path)
        .await
        .map_err(|source| ArchiveError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let identity = repo.identity().await?;
    let seg_size = match &identity {
        Some(identity) => WalSegSize::new(u64::from(identity.wal_segment_size)).ok(),
        None => segment_check::read_segment_header(&given, &content)
            .ok()
            .map(|h| h.seg_size),
    };
    let seg_size = seg_size.unwrap_or(WalSegSize::from_mib(DEFAULT_SEG_SIZE_MIB).map_err(|e| {
        ArchiveError::BadContent {
            name: given.clone(),
            reason: e.to_string(),
        }
    })?);
    let name = ArchiveFileName::parse(&given, seg_size)?;
    check(repo, name, Bytes::from(content), identity.as_ref()).await
}

/// Checks `content` against `name` and, for a (partial) segment, checks the repository
/// identity (`known`, when the caller has just read it) or creates it.
async fn check(
    repo: &Repository,
    name: ArchiveFileName,
    content: Bytes,
    known: Option<&RepoIdentity>,
) -> Result<Checked, ArchiveError> {
    if let Some(found) = check_content(&name, &content)? {
        match known {
            Some(existing) => repo.check_identity(existing, &found)?,
            None => {
                repo.ensure_identity(&found).await?;
            }
        }
    }
    let receipt = Receipt {
        size: content.len() as u64,
        crc32c: crate::crc::crc32c(&content),
    };
    Ok(Checked {
        name,
        content,
        receipt,
    })
}

/// Archives `content` under `name` exactly as [`archive_file`] archives a file of that name
/// and content: the same checks, the same key and encoding, create-only; identical content
/// already stored is success, different content is [`ArchiveError::Conflict`]. This is how
/// `walship stream` stores the segments and history files it receives, so that it and
/// `walship archive` can write to one repository.
pub async fn archive_content(
    repo: &Repository,
    name: ArchiveFileName,
    content: Bytes,
) -> Result<Archived, ArchiveError> {
    let checked = check(repo, name, content, None).await?;
    store(repo, checked).await
}

/// Checks that `content` is what `name` says. For a (partial) segment, returns the identity
/// of the cluster that wrote it.
fn check_content(
    name: &ArchiveFileName,
    content: &[u8],
) -> Result<Option<RepoIdentity>, ArchiveError> {
    let not_the_segment = |source| ArchiveError::NotTheSegment {
        name: name.to_string(),
        source,
    };
    let bad = |reason: String| ArchiveError::BadContent {
        name: name.to_string(),
        reason,
    };
    // What readers refuse is never stored: an object `fetch` would call too large is
    // refused here, so that the archive holds nothing it cannot hand back.
    let limit = limits::wal_content_limit(name);
    if content.len() as u64 > limit {
        return Err(bad(format!(
            "{} bytes, more than the {limit} bytes a file of this kind may hold",
            content.len()
        )));
    }
    let header = match name {
        ArchiveFileName::Segment(wal) => {
            segment_check::validate_segment(content, *wal, None)
                .map_err(not_the_segment)?
                .header
        }
        ArchiveFileName::Partial(wal) => {
            // Postgres writes full-size .partial files; a streaming receiver may stop at a page.
            let seg_bytes = wal.seg_size().as_u64();
            let len = content.len() as u64;
            if len == seg_bytes {
                segment_check::validate_segment(content, *wal, None)
                    .map_err(not_the_segment)?
                    .header
            } else if len > seg_bytes || !len.is_multiple_of(u64::from(XLOG_BLCKSZ)) || len == 0 {
                return Err(bad(format!(
                    "a partial segment must be a whole number of {XLOG_BLCKSZ}-byte pages up to {seg_bytes} bytes, found {len} bytes"
                )));
            } else {
                segment_check::validate_first_page(content, *wal, None).map_err(not_the_segment)?
            }
        }
        ArchiveFileName::History(timeline) => {
            TimelineHistory::parse(*timeline, content).map_err(|e| bad(e.to_string()))?;
            return Ok(None);
        }
        ArchiveFileName::Backup { .. } => {
            let text = std::str::from_utf8(content)
                .map_err(|_| bad("a backup history file must be text".into()))?;
            if !text.starts_with("START WAL LOCATION:") {
                return Err(bad(
                    "a backup history file starts with \"START WAL LOCATION:\"".into(),
                ));
            }
            return Ok(None);
        }
    };
    Ok(Some(RepoIdentity::new(
        header.system_identifier,
        header.major(),
        header.seg_size.bytes(),
    )))
}

/// Stores a checked file unless the repository already holds it; never overwrites.
async fn store(repo: &Repository, checked: Checked) -> Result<Archived, ArchiveError> {
    let prepared = prepare(repo, checked).await?;
    upload(repo, prepared).await
}

/// A checked file, compared with the repository and encoded: what is left to upload. The
/// raw content is gone (only the encoded object is held while uploading).
struct Prepared {
    name: ArchiveFileName,
    receipt: Receipt,
    key: ObjectKey,
    /// `Err(outcome)`: nothing to upload.
    encoded: Result<(Bytes, StoredObject), ArchiveOutcome>,
    /// True when `encoded` is already sealed for an encrypted repository (the segment fast
    /// path seals as it compresses); false when [`upload`] still passes it through
    /// [`Repository::seal_stored`] (a no-op for a plain repository).
    sealed: bool,
}

/// Compares a checked file with what the repository holds under its name and, if nothing,
/// encodes it with the repository's codec.
async fn prepare(repo: &Repository, checked: Checked) -> Result<Prepared, ArchiveError> {
    let key = layout::wal_key(&checked.name);
    let Checked {
        name,
        content,
        receipt,
    } = checked;
    let encoded = match compare_existing(repo, name, &content, receipt).await? {
        Some(outcome) => Err(outcome),
        None => Ok(encode(repo, &key, content, receipt).await?),
    };
    Ok(Prepared {
        name,
        receipt,
        key,
        encoded,
        sealed: false,
    })
}

/// Encodes `content` (whose size and crc32c are `receipt`) as one object, on the blocking
/// pool; the raw bytes are dropped there.
async fn encode(
    repo: &Repository,
    key: &ObjectKey,
    content: Bytes,
    receipt: Receipt,
) -> Result<(Bytes, StoredObject), ArchiveError> {
    let codec = repo.codec();
    let encoded = run_blocking(move || {
        let mut out = Vec::with_capacity(content.len() / 4 + codec::HEADER_LEN);
        let mut writer =
            ObjectWriter::with_declared_summary(&mut out, codec, receipt.size, receipt.crc32c)?;
        std::io::Write::write_all(&mut writer, &content)?;
        let summary = writer.finish()?;
        Ok::<_, codec::CodecError>((Bytes::from(out), summary))
    })
    .await
    .map_err(|source| corrupt(repo, key, source))?;
    let (bytes, summary) = encoded;
    Ok((
        bytes,
        StoredObject {
            raw_len: summary.raw_len,
            raw_crc32c: summary.crc32c,
            stored_len: summary.stored_len,
            stored_crc32c: summary.stored_crc32c,
        },
    ))
}

/// The error for an object of ours that the codec refused.
fn corrupt(repo: &Repository, key: &ObjectKey, source: codec::CodecError) -> RepoError {
    RepoError::Corrupt {
        key: key.to_string(),
        location: repo.location().to_string(),
        source,
    }
}

/// Uploads a prepared file create-only, with the encoded bytes' crc32c for the backend to
/// confirm. If another writer created the object first, it is compared like any existing one.
async fn upload(repo: &Repository, prepared: Prepared) -> Result<Archived, ArchiveError> {
    let Prepared {
        name,
        receipt,
        key,
        encoded,
        sealed,
    } = prepared;
    let outcome = match encoded {
        Err(outcome) => outcome,
        Ok((bytes, stored)) => {
            // Sealed here, the one place every archived file passes (no-op when unencrypted),
            // unless the segment fast path sealed it as it compressed.
            let (bytes, stored) = if sealed {
                (bytes, stored)
            } else {
                let bytes = repo.seal_stored(&key, bytes).await?;
                let stored = StoredObject {
                    stored_len: bytes.len() as u64,
                    stored_crc32c: crate::crc::crc32c(&bytes),
                    ..stored
                };
                (bytes, stored)
            };
            let opts = PutOptions {
                if_absent: true,
                crc32c: Some(stored.stored_crc32c),
                lock: repo.lock_for(&key),
            };
            // The kill -9 test (walship/tests/archive_safety.rs) reads these two lines to
            // count the kills that landed while an upload was in flight.
            tracing::debug!("uploading {name}");
            let put = repo.storage().put(&key, bytes.clone(), opts).await;
            tracing::debug!("upload of {name} ended");
            match put {
                Ok(_) => ArchiveOutcome::Stored(stored),
                // Another writer (a concurrent `walship stream`, or a retry) got there first:
                // compare with our own content, decoded again from what we tried to store.
                Err(e) if e.is_already_exists() => {
                    let limit = limits::wal_content_limit(&name);
                    let bytes = repo.open_stored(&key, bytes).await?;
                    let content = run_blocking(move || codec::decode_to_vec(&bytes, limit))
                        .await
                        .map_err(|source| corrupt(repo, &key, source))?;
                    compare_existing(repo, name, &content, receipt)
                        .await?
                        .ok_or(ArchiveError::Repo(RepoError::Storage(e)))?
                }
                Err(e) => return Err(RepoError::Storage(e).into()),
            }
        }
    };
    Ok(Archived {
        name,
        receipt,
        outcome,
    })
}

/// `Some(AlreadyArchived)` if the repository holds exactly these bytes, `None` if it holds
/// nothing under the name, a refusal if it holds anything else.
async fn compare_existing(
    repo: &Repository,
    name: ArchiveFileName,
    content: &[u8],
    receipt: Receipt,
) -> Result<Option<ArchiveOutcome>, ArchiveError> {
    let key = layout::wal_key(&name);
    let existing = match repo
        .get_content(&key, limits::wal_content_limit(&name))
        .await
    {
        Ok(existing) => existing,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e @ RepoError::Corrupt { .. }) => {
            return Err(ArchiveError::ExistingCorrupt {
                name: name.to_string(),
                source: e,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if existing == content {
        return Ok(Some(ArchiveOutcome::AlreadyArchived));
    }
    Err(ArchiveError::Conflict {
        name: name.to_string(),
        key: key.to_string(),
        location: repo.location().to_string(),
        stored_len: existing.len() as u64,
        stored_crc32c: crate::crc::crc32c(&existing),
        len: receipt.size,
        crc32c: receipt.crc32c,
    })
}
