//! `walship fetch`: handing Postgres one archived file during recovery (`restore_command`).
//!
//! [`fetch`] delivers a verified file or says precisely why not, so that the binary can pick
//! the exit code Postgres needs: "definitively absent" ([`FetchError::is_not_found`], exit 1)
//! is kept apart from every failure (exit above 125: Postgres stops instead of promoting).
//! [`fetch_from_spool`] is the fast path for a segment the prefetch worker ([`prefetch`])
//! already put in the spool ([`spool`]): no runtime, no repository access, one read.
//!
//! **The `.partial` rule.** A `<segment>.partial` object (left by a promotion, or uploaded by
//! `walship stream` for the segment it is still receiving) holds only the beginning of a
//! segment. `fetch <segment>` never delivers it in place of the complete segment unless
//! asked to (`--allow-partial` / `fetch.allow_partial`, which `walship restore --target
//! latest` sets): a complete segment always wins, and without the option a lone partial is
//! "absent" (exit 1), which is what Postgres must hear at the end of a timeline.
//!
//! **Invariants:** the bytes delivered decode with a matching crc32c and carry the page
//! headers of the exact segment asked for (address, timeline, system identifier); the
//! destination appears whole (temporary file, rename) or not at all.

pub mod caller_gate;
mod decode_turns;
pub mod drop_behind;
pub mod prefetch;
mod receipt;
mod segment_file;
pub mod spool;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use crate::fsutil::{self, FsError};
use crate::pg::file_name::{ArchiveFileName, FileNameError, WalFileName};
use crate::pg::history::TimelineHistory;
use crate::pg::page_header::XLOG_BLCKSZ;
use crate::pg::segment::WalSegSize;
use crate::pg::segment_check::{self, SegmentError, SegmentHeaderInfo, SegmentReport};
use crate::repo::{RepoError, RepoIdentity, Repository, layout, limits, partial};
use crate::task::run_blocking;
use spool::{FetchSpool, SpoolOrigin};

/// How `fetch` behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Deliver `<segment>.partial`, zero-padded, when the complete segment is absent.
    pub allow_partial: bool,
    /// The prefetch spool directory; `None` means `<pg_wal>/walship/fetch` when the
    /// destination is inside a `pg_wal` directory, and no spool otherwise.
    pub spool_dir: Option<PathBuf>,
}

/// Where a delivered file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the repository now.
    Repository,
    /// Taken from the prefetch spool (verified again).
    Spool,
    /// The repository's `.partial` object, zero-padded to a full segment.
    Partial,
}

/// A file delivered to Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The file's name.
    pub name: ArchiveFileName,
    /// Where it came from.
    pub source: Source,
}

/// Why a file was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The name is not a WAL archive file name.
    #[error(transparent)]
    Name(#[from] FileNameError),
    /// The repository definitively does not hold the file.
    #[error("{name} is not in {location}{}", if *.partial_exists { " (only a .partial copy exists; pass --allow-partial to deliver it)" } else { "" })]
    NotFound {
        /// The name asked for.
        name: String,
        /// The repository.
        location: String,
        /// Whether `<name>.partial` exists.
        partial_exists: bool,
    },
    /// The object decodes but is not the file asked for (wrong page address, timeline or
    /// cluster): never delivered.
    #[error("object {key} in {location} is not {name}: {reason}")]
    WrongContent {
        /// The name asked for.
        name: String,
        /// The object's key.
        key: String,
        /// The repository.
        location: String,
        /// What the check found.
        reason: String,
    },
    /// The destination exists and is not a regular file (a device node, a directory, a
    /// FIFO, a symbolic link): `fetch` never renames over it.
    #[error(
        "refusing to deliver {name} to {}: {what} is there, and fetch only ever replaces a regular file",
        path.display()
    )]
    Destination {
        /// The name asked for.
        name: String,
        /// The destination path.
        path: PathBuf,
        /// What is there ("a device node", ...).
        what: &'static str,
    },
    /// Writing the destination failed.
    #[error("deliver {name}: {source}")]
    Write {
        /// The name asked for.
        name: String,
        /// The file-system error.
        #[source]
        source: FsError,
    },
    /// The repository failed, is not initialised, or holds a corrupt object.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl FetchError {
    /// True only when the repository definitively does not have the file (exit 1).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

/// The spool directory for a destination, following [`FetchOptions::spool_dir`]'s rule.
pub fn spool_dir_for(dest: &Path, opts: &FetchOptions) -> Option<PathBuf> {
    if let Some(dir) = &opts.spool_dir {
        return Some(dir.clone());
    }
    let parent = dest.parent()?;
    let in_pg_wal = parent.file_name().is_some_and(|n| n == "pg_wal");
    in_pg_wal.then(|| FetchSpool::dir_for_pg_wal(parent))
}

/// The spool for a destination, following [`FetchOptions::spool_dir`]'s rule.
pub fn spool_for(dest: &Path, opts: &FetchOptions, seg_size: WalSegSize) -> Option<FetchSpool> {
    spool_dir_for(dest, opts).map(|dir| FetchSpool::in_dir(dir, seg_size))
}

/// How long a `fetch` call waits for a segment the prefetch worker is fetching, before it
/// fetches the segment itself.
pub const AWAIT_PREFETCH: Duration = Duration::from_secs(20);

/// Delivers the segment `name` from the prefetch spool, if the spool holds a verified entry
/// for exactly that name, fetched from `repository` (as configured; see [`SpoolOrigin`]).
/// Synchronous and without any repository access: the entry is read once, its size and
/// crc32c checked against its receipt (written by the worker after it checked every page
/// header) and its first page against the name and the repository's identity recorded with
/// the spool, then renamed to `dest`. If the worker is fetching that segment right now, waits
/// for it (at most [`AWAIT_PREFETCH`]). `None` means "not in the spool" (anything unusable
/// there is removed): fetch it with [`fetch`].
pub fn fetch_from_spool(
    repository: &str,
    name: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Option<Delivered> {
    let dir = spool_dir_for(dest, opts)?;
    let origin = SpoolOrigin::read(&dir).filter(|o| o.repository == repository)?;
    let seg_size = origin.seg_size()?;
    let ArchiveFileName::Segment(wal) = ArchiveFileName::parse(name, seg_size).ok()? else {
        return None;
    };
    let spool = FetchSpool::in_dir(dir, seg_size);
    spool.set_position(&wal);
    spool.clean(&wal);
    spool.await_fetching(&wal, AWAIT_PREFETCH);
    // A destination that is not a regular file is left to `fetch`, which refuses it loudly.
    check_destination(ArchiveFileName::Segment(wal), dest).ok()?;
    // The crc32c binds the bytes to those the worker checked page by page before it wrote
    // the receipt; the first page binds them to this name and cluster (and its magic to the
    // repository's major).
    let first_page = spool.verify(&wal, XLOG_BLCKSZ as usize)?;
    let sysid = Some(origin.identity.system_identifier);
    let right = segment_check::validate_first_page(&first_page, wal, sysid)
        .is_ok_and(|header| check_major(&header, &origin.identity).is_ok());
    if !right || spool.deliver(&wal, dest).is_err() {
        spool.remove(&wal);
        return None;
    }
    Some(Delivered {
        name: ArchiveFileName::Segment(wal),
        source: Source::Spool,
    })
}

/// Delivers the archived file `name` to `dest` from the repository. Call
/// [`fetch_from_spool`] first for segments. `found` runs as soon as the repository has
/// returned the file, before it is checked and written (the binary starts the prefetch
/// worker there, so that it gets a head start; never for a file the repository lacks).
pub async fn fetch(
    repo: &Repository,
    name: &str,
    dest: &Path,
    opts: &FetchOptions,
    found: impl FnOnce(ArchiveFileName),
) -> Result<Delivered, FetchError> {
    let identity = repo.require_identity().await?;
    let seg_size = seg_size(repo, &identity)?;
    let name = ArchiveFileName::parse(name, seg_size)?;
    if let ArchiveFileName::Segment(wal) = name
        && let Some(spool) = spool_for(dest, opts, seg_size)
    {
        // The worker follows Postgres's requests, served from the spool or not.
        spool.set_position(&wal);
        spool.clean(&wal);
    }
    check_destination(name, dest)?;
    let Some(stored) = get_stored(repo, name).await? else {
        let content = partial_instead(repo, name, opts).await?;
        check_content(repo, name, &content, &identity)?;
        write_atomically(name, dest, content).await?;
        return Ok(Delivered {
            name,
            source: Source::Partial,
        });
    };
    found(name);
    if let ArchiveFileName::Segment(wal) = name {
        deliver_segment(repo, wal, stored, dest, &identity).await?;
    } else {
        let key = layout::wal_key(&name);
        let limit = limits::wal_content_limit(&name);
        let content = repo.decode_stored(&key, stored, limit).await?;
        check_content(repo, name, &content, &identity)?;
        write_atomically(name, dest, content).await?;
    }
    let source = Source::Repository;
    Ok(Delivered { name, source })
}

/// The bytes the repository stores for `name` (at most what an object of its kind may
/// take), or `None` when it has none.
async fn get_stored(repo: &Repository, name: ArchiveFileName) -> Result<Option<Bytes>, FetchError> {
    let key = layout::wal_key(&name);
    let limit = limits::stored_limit(limits::wal_content_limit(&name));
    match repo.storage().get_bytes(&key, limit).await {
        Ok(stored) => Ok(Some(stored)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(RepoError::Storage(e).into()),
    }
}

/// For a file the repository lacks: the `.partial` rule. A segment's zero-padded
/// `.partial` (plus the stream's contiguous tail pieces) is delivered only with
/// `allow_partial`; anything else is absent.
async fn partial_instead(
    repo: &Repository,
    name: ArchiveFileName,
    opts: &FetchOptions,
) -> Result<Bytes, FetchError> {
    let not_found = |partial_exists| FetchError::NotFound {
        name: name.to_string(),
        location: repo.location().to_string(),
        partial_exists,
    };
    let ArchiveFileName::Segment(wal) = name else {
        return Err(not_found(false));
    };
    let partial = ArchiveFileName::Partial(wal);
    let partial_key = layout::wal_key(&partial);
    if !opts.allow_partial {
        // Only look when it is cheap to explain; absence is the answer either way.
        let exists = repo.exists(&partial_key).await.unwrap_or(false)
            || partial::list_tail(repo, wal)
                .await
                .is_ok_and(|(pieces, journal)| !pieces.is_empty() || journal.is_some());
        if exists {
            tracing::warn!(
                "{name} is absent but {name}.partial exists; not delivered without --allow-partial"
            );
        }
        return Err(not_found(exists));
    }
    // The base `.partial` plus the stream's contiguous tail pieces (never past a gap).
    match partial::read_partial(repo, wal).await? {
        Some(found) if !found.content.is_empty() => {
            if let Some((at, piece)) = found.gap {
                tracing::warn!(
                    "{name}.partial: stored tail pieces stop at offset {at:#X} (the next piece starts at {piece:#X}); delivering the {at} contiguous bytes only"
                );
            }
            let mut padded = found.content.to_vec();
            padded.resize(wal.seg_size().bytes() as usize, 0);
            Ok(Bytes::from(padded))
        }
        Some(_) => Err(not_found(true)),
        None => Err(not_found(false)),
    }
}

/// Delivers the segment `wal` from `stored`, the bytes the repository holds for it: decoded
/// block by block into a temporary file beside `dest` with its pages checked as they pass
/// (no whole-segment buffer: see `segment_file`), then renamed to `dest`. An object that
/// path does not decode (another codec) or that does not verify is decoded whole, for its
/// content or the verdict.
async fn deliver_segment(
    repo: &Repository,
    wal: WalFileName,
    stored: Bytes,
    dest: &Path,
    identity: &RepoIdentity,
) -> Result<(), FetchError> {
    let name = ArchiveFileName::Segment(wal);
    let key = layout::wal_key(&name);
    let limit = limits::wal_content_limit(&name);
    let write_error = |source| FetchError::Write {
        name: name.to_string(),
        source,
    };
    let opened = repo.open_stored(&key, stored).await?;
    let temp = fsutil::temp_path_for(dest);
    let sysid = identity.system_identifier;
    let decoded = {
        let (temp, opened) = (temp.clone(), opened.clone());
        run_blocking(move || {
            segment_file::decode_to_new_file(&opened, limit, &mut Vec::new(), &temp, wal, sysid)
        })
        .await
        .map_err(write_error)?
    };
    let Some((file, _, report)) = decoded else {
        let content = repo.decode_opened(&key, opened, limit).await?;
        check_content(repo, name, &content, identity)?;
        return write_atomically(name, dest, content).await;
    };
    drop(file);
    // Checked again just before the rename: the destination may have changed meanwhile.
    let placed = check_segment_report(repo, wal, report, identity)
        .and_then(|()| check_destination(name, dest))
        .and_then(|()| fsutil::rename_unsynced(&temp, dest).map_err(write_error));
    if placed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    placed
}

fn seg_size(repo: &Repository, identity: &RepoIdentity) -> Result<WalSegSize, FetchError> {
    WalSegSize::new(u64::from(identity.wal_segment_size)).map_err(|e| {
        FetchError::Repo(RepoError::BadIdentity {
            location: repo.location().to_string(),
            message: e.to_string(),
        })
    })
}

/// Checks that `content` really is `name` of this repository's cluster.
fn check_content(
    repo: &Repository,
    name: ArchiveFileName,
    content: &[u8],
    identity: &RepoIdentity,
) -> Result<(), FetchError> {
    let result = match name {
        ArchiveFileName::Segment(wal) => {
            let report =
                segment_check::validate_segment(content, wal, Some(identity.system_identifier));
            return check_segment_report(repo, wal, report, identity);
        }
        ArchiveFileName::Partial(wal) => {
            segment_check::validate_first_page(content, wal, Some(identity.system_identifier))
                .map_err(|e| e.to_string())
                .and_then(|header| check_major(&header, identity))
        }
        ArchiveFileName::History(timeline) => TimelineHistory::parse(timeline, content)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ArchiveFileName::Backup { .. } => Ok(()),
    };
    result.map_err(|reason| wrong_content(repo, name, reason))
}

/// [`check_content`]'s verdict on a segment whose pages were validated as they arrived.
fn check_segment_report(
    repo: &Repository,
    wal: WalFileName,
    report: Result<SegmentReport, SegmentError>,
    identity: &RepoIdentity,
) -> Result<(), FetchError> {
    report
        .map_err(|e| e.to_string())
        .and_then(|report| check_major(&report.header, identity))
        .map_err(|reason| wrong_content(repo, ArchiveFileName::Segment(wal), reason))
}

/// The error for `name` found in the repository with content that is not `name`'s.
fn wrong_content(repo: &Repository, name: ArchiveFileName, reason: String) -> FetchError {
    FetchError::WrongContent {
        name: name.to_string(),
        key: layout::wal_key(&name).to_string(),
        location: repo.location().to_string(),
        reason,
    }
}

/// Refuses WAL of another major version than the repository's (`walship.json`'s `pg_major`):
/// its page magic says which server wrote it, and a server of one major cannot replay
/// another's WAL.
fn check_major(header: &SegmentHeaderInfo, identity: &RepoIdentity) -> Result<(), String> {
    if header.major() == identity.pg_major {
        return Ok(());
    }
    Err(format!(
        "its pages were written by PostgreSQL {} (page magic {:#06X}), but walship.json says the repository holds PostgreSQL {}",
        header.major(),
        header.version.xlog_page_magic,
        identity.pg_major
    ))
}

/// Refuses a destination that exists and is not a regular file: renaming over it would
/// replace a device node (run as root, `/dev/null`) or whatever else is there.
fn check_destination(name: ArchiveFileName, dest: &Path) -> Result<(), FetchError> {
    let refuse = |what| FetchError::Destination {
        name: name.to_string(),
        path: dest.to_path_buf(),
        what,
    };
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(refuse(fsutil::describe_file_type(meta.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Anything else (permissions, a file where a directory belongs) fails the write.
        Err(_) => Ok(()),
    }
}

/// Writes `content` to `dest` through a temporary file and a rename. Not fsynced: Postgres
/// reads the file at once and keeps it only as long as it needs it; what matters is that it
/// never sees half a file.
async fn write_atomically(
    name: ArchiveFileName,
    dest: &Path,
    content: Bytes,
) -> Result<(), FetchError> {
    // Checked again just before the rename: the destination may have changed meanwhile.
    check_destination(name, dest)?;
    let dest_owned = dest.to_path_buf();
    run_blocking(move || fsutil::replace_unsynced(&dest_owned, &content, 0o600))
        .await
        .map_err(|source| FetchError::Write {
            name: name.to_string(),
            source,
        })
}
