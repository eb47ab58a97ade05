//! `walship copy`: a second repository (another region, another provider, a local disk)
//! that holds everything the first one does, so that losing the first loses nothing.
//!
//! Inputs: two storages, the source and the target. Output: a [`CopyReport`] (objects and
//! bytes copied, the copy lag). What it owns:
//! - `plan.rs`: which objects the target lacks (WAL, `keys/`, complete backups), and the
//!   retention horizon that keeps a copy from bringing back what the target's own `expire`
//!   removed;
//! - `transfer.rs`: one object streamed from source to target, checked on arrival;
//! - `lag.rs`: how far the target is behind (bytes and seconds of WAL).
//!
//! Invariants:
//! - Objects are copied **as stored**: never decoded, decompressed or decrypted, so a copy
//!   needs no key and changes no byte; an encrypted repository's `keys/` (wrapped data keys,
//!   useless without the operator's key) are copied with it.
//! - Every put is create-only; a key already on the target with the same bytes is fine, with
//!   different bytes it is [`CopyError::Conflict`] naming the key and nothing is overwritten
//!   (except a stream's `.partial` tail, which its writer replaces too). "Already there" is
//!   decided from the listings' sizes (a `head` per object every run would cost more than the
//!   copy); stored checksums are compared when sizes differ or a put meets an object that
//!   appeared meanwhile.
//! - A backup's manifest is copied after all its other objects, and backups oldest first, so
//!   an interrupted copy never leaves something that looks complete and is not. A rerun
//!   copies only what is missing.
//! - The target's `walship.json` is the source's (same cluster); a target of another
//!   cluster is refused before anything is copied.
//! - Memory is bounded: objects are streamed (at most one S3 part per object in
//!   flight) and at most [`CopyOptions::parallel`] objects move at once.

mod journal;
mod lag;
mod plan;
mod transfer;

use futures::{StreamExt, TryStreamExt};

pub use lag::CopyLag;

use crate::pg::WalSegSize;
use crate::repo::{RepoIdentity, layout, limits};
use crate::storage::{AnyStorage, ObjectKey, ObjectMeta, PutOptions, Storage, StorageError};
use transfer::Outcome;

/// Prefix of wrapped data keys (`keys/<dek-id>/<kek-id>.json`).
const KEYS_PREFIX: &str = "keys/";

/// How a copy runs.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Objects moved at once (each holds at most about one S3 part in memory).
    pub parallel: usize,
    /// Plan and report, copy nothing.
    pub dry_run: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            parallel: 16,
            dry_run: false,
        }
    }
}

/// What one copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Where from (a location, never credentials).
    pub source: String,
    /// Where to.
    pub target: String,
    /// Objects stored on the target by this run.
    pub copied_objects: u64,
    /// Their stored bytes.
    pub copied_bytes: u64,
    /// Objects found already on the target with the same bytes (a concurrent copy).
    pub already_present: u64,
    /// WAL objects copied.
    pub wal_objects: u64,
    /// Backups made complete on the target by this run (ids).
    pub backups: Vec<String>,
    /// Source objects older than what the target's own retention keeps, not copied.
    pub skipped_by_target_retention: u64,
    /// Whether the target's `walship.json` was written by this run.
    pub created_identity: bool,
    /// How far the target is behind the source after this run.
    pub lag: CopyLag,
    /// Whether nothing was copied because of `dry_run`.
    pub dry_run: bool,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A storage call failed (after retries) on the object or prefix named.
    #[error("copy {key}: {source}")]
    Storage {
        /// The key or prefix.
        key: String,
        /// What the storage said.
        #[source]
        source: StorageError,
    },
    /// The target has the key with different bytes; nothing was overwritten.
    #[error(
        "{key} exists in the target {target} with different bytes than in the source; nothing was overwritten (two repositories were mixed, or one of them was altered)"
    )]
    Conflict {
        /// The key.
        key: String,
        /// The target's location.
        target: String,
    },
    /// What arrived is not what was sent.
    #[error("{key} did not arrive intact: {detail}")]
    Mismatch {
        /// The key.
        key: String,
        /// Sizes or checksums.
        detail: String,
    },
    /// The source has no `walship.json`: nothing to copy from.
    #[error("the source {location} has no walship.json: not a walship repository, or empty")]
    NoSourceIdentity {
        /// The source's location.
        location: String,
    },
    /// A `walship.json` that cannot be read.
    #[error("walship.json in {location} is unreadable: {reason}")]
    BadIdentity {
        /// Where.
        location: String,
        /// Why.
        reason: String,
    },
    /// The target belongs to another cluster (or another encryption).
    #[error(
        "the target {target} belongs to another cluster: its walship.json says {target_identity}, the source's says {source_identity}; refusing to mix them"
    )]
    OtherCluster {
        /// The target's location.
        target: String,
        /// The target's identity, summarised.
        target_identity: String,
        /// The source's identity, summarised.
        source_identity: String,
    },
    /// Source and target are the same place.
    #[error("the source and the target are the same repository ({location})")]
    SameRepository {
        /// The location.
        location: String,
    },
}

impl CopyError {
    fn source(key: &ObjectKey) -> impl Fn(StorageError) -> CopyError + '_ {
        move |e| CopyError::Storage {
            key: key.to_string(),
            source: e,
        }
    }

    fn target(key: &ObjectKey) -> impl Fn(StorageError) -> CopyError + '_ {
        Self::source(key)
    }

    fn listing(prefix: &str) -> impl Fn(StorageError) -> CopyError + '_ {
        move |e| CopyError::Storage {
            key: prefix.to_string(),
            source: e,
        }
    }
}

fn summary(id: &RepoIdentity) -> String {
    format!(
        "system identifier {}, PostgreSQL {}, segment size {}{}",
        id.system_identifier,
        id.pg_major,
        id.wal_segment_size,
        if id.encryption.is_some() {
            ", encrypted"
        } else {
            ""
        }
    )
}

/// Makes sure the target is a repository of the source's cluster: writes the source's
/// `walship.json` bytes (create-only) when the target has none; refuses another cluster.
/// Returns the identity and whether it was written.
async fn ensure_target_identity(
    source: &AnyStorage,
    target: &AnyStorage,
    dry_run: bool,
) -> Result<(RepoIdentity, bool), CopyError> {
    let key = layout::identity_key();
    let bytes = match source.get_bytes(&key, limits::IDENTITY_MAX).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(CopyError::NoSourceIdentity {
                location: source.location().to_string(),
            });
        }
        Err(e) => return Err(CopyError::source(&key)(e)),
    };
    let parse = |bytes: &[u8], location: &str| {
        RepoIdentity::from_json(bytes).map_err(|reason| CopyError::BadIdentity {
            location: location.to_string(),
            reason,
        })
    };
    let identity = parse(&bytes, source.location())?;
    let existing = match target.get_bytes(&key, limits::IDENTITY_MAX).await {
        Ok(existing) => Some(existing),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(CopyError::target(&key)(e)),
    };
    let check = |existing: &[u8]| -> Result<(), CopyError> {
        let theirs = parse(existing, target.location())?;
        let same = theirs.system_identifier == identity.system_identifier
            && theirs.wal_segment_size == identity.wal_segment_size
            && theirs.encryption == identity.encryption;
        if same {
            Ok(())
        } else {
            Err(CopyError::OtherCluster {
                target: target.location().to_string(),
                target_identity: summary(&theirs),
                source_identity: summary(&identity),
            })
        }
    };
    if let Some(existing) = existing {
        check(&existing)?;
        return Ok((identity, false));
    }
    if dry_run {
        return Ok((identity, false));
    }
    let opts = PutOptions {
        if_absent: true,
        crc32c: Some(crate::crc::crc32c(&bytes)),
        lock: None,
    };
    match target.put(&key, bytes, opts).await {
        Ok(_) => Ok((identity, true)),
        Err(e) if e.is_already_exists() => {
            let existing = target
                .get_bytes(&key, limits::IDENTITY_MAX)
                .await
                .map_err(CopyError::target(&key))?;
            check(&existing)?;
            Ok((identity, false))
        }
        Err(e) => Err(CopyError::target(&key)(e)),
    }
}

/// Copies `objects` with at most `parallel` at once, adding up into `report`.
async fn copy_all(
    source: &AnyStorage,
    target: &AnyStorage,
    objects: &[ObjectMeta],
    parallel: usize,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let outcomes: Vec<Outcome> =
        futures::stream::iter(objects.iter().map(|meta| {
            transfer::copy_object(source, target, meta, plan::is_replaceable(&meta.key))
        }))
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await?;
    for outcome in outcomes {
        match outcome {
            Outcome::Copied(bytes) => {
                report.copied_objects += 1;
                report.copied_bytes += bytes;
            }
            Outcome::Present => report.already_present += 1,
        }
    }
    Ok(())
}

/// Copies to `target` everything of `source` it lacks; see the module documentation.
pub async fn copy(
    source: &AnyStorage,
    target: &AnyStorage,
    opts: CopyOptions,
) -> Result<CopyReport, CopyError> {
    if source.location() == target.location() {
        return Err(CopyError::SameRepository {
            location: source.location().to_string(),
        });
    }
    let mut report = CopyReport {
        source: source.location().to_string(),
        target: target.location().to_string(),
        dry_run: opts.dry_run,
        ..CopyReport::default()
    };
    let (identity, created) = ensure_target_identity(source, target, opts.dry_run).await?;
    report.created_identity = created;
    let seg_size = WalSegSize::new(u64::from(identity.wal_segment_size)).map_err(|e| {
        CopyError::BadIdentity {
            location: source.location().to_string(),
            reason: e.to_string(),
        }
    })?;

    let list = |storage: &AnyStorage, prefix: &'static str| {
        let storage = storage.clone();
        async move {
            storage
                .list(prefix)
                .await
                .map_err(CopyError::listing(prefix))
        }
    };
    // Backups before WAL: a manifest seen here had its WAL archived before it was written,
    // so the WAL listing that follows holds that WAL.
    let source_keys = list(source, KEYS_PREFIX).await?;
    let source_backups = list(source, layout::BACKUPS_PREFIX).await?;
    let source_wal = list(source, layout::WAL_PREFIX).await?;
    let target_keys = list(target, KEYS_PREFIX).await?;
    let target_backups = list(target, layout::BACKUPS_PREFIX).await?;
    let target_wal = list(target, layout::WAL_PREFIX).await?;
    let work = plan::plan(&plan::Listings {
        seg_size,
        source_keys: &source_keys,
        source_backups: &source_backups,
        source_wal: &source_wal,
        target_keys: &target_keys,
        target_backups: &target_backups,
        target_wal: &target_wal,
    });
    report.skipped_by_target_retention = work.skipped_by_target_retention as u64;
    // A size difference is settled by bytes, not by the listing alone: the object may have
    // been replaced since (a partial tail) or the listing may round.
    for key in &work.conflicts {
        if !transfer::same_bytes(source, target, key).await? {
            return Err(CopyError::Conflict {
                key: key.to_string(),
                target: target.location().to_string(),
            });
        }
    }

    let mut target_after = target_wal.clone();
    if opts.dry_run {
        target_after.extend(work.wal.iter().cloned());
        report.lag = lag::lag(seg_size, &source_wal, &target_after);
        report.copied_objects = (work.keys.len()
            + work.wal.len()
            + work.journals.len()
            + work
                .backups
                .iter()
                .map(|b| b.objects.len() + 1)
                .sum::<usize>()) as u64;
        report.backups = work.backups.iter().map(|b| b.id.to_string()).collect();
        return Ok(report);
    }
    copy_all(source, target, &work.keys, opts.parallel, &mut report).await?;
    let before = report.copied_objects;
    copy_all(source, target, &work.wal, opts.parallel, &mut report).await?;
    for meta in &work.journals {
        for outcome in journal::copy_journal(source, target, meta, seg_size).await? {
            match outcome {
                Outcome::Copied(bytes) => {
                    report.copied_objects += 1;
                    report.copied_bytes += bytes;
                }
                Outcome::Present => report.already_present += 1,
            }
        }
    }
    report.wal_objects = report.copied_objects - before;
    target_after.extend(work.wal.iter().cloned());
    for backup in &work.backups {
        copy_all(source, target, &backup.objects, opts.parallel, &mut report).await?;
        copy_all(
            source,
            target,
            std::slice::from_ref(&backup.manifest),
            1,
            &mut report,
        )
        .await?;
        tracing::info!("backup {} is complete in {}", backup.id, target.location());
        report.backups.push(backup.id.to_string());
    }
    report.lag = lag::lag(seg_size, &source_wal, &target_after);
    Ok(report)
}
