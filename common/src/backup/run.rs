//! [`take_backup`]: one base backup from a [`BackupSource`] into the repository, in order:
//! check the repository belongs to this cluster (if `walship archive` already created its
//! identity), choose the id, stream the archives into
//! bundles (on a blocking thread, uploads in parallel), wait for the WAL, check every bundle
//! is stored, write the manifest last, then remove incomplete leftovers of earlier runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::Utc;

use crate::catalog::{
    BackupId, BackupManifest, INCREMENTAL_MANIFEST_FORMAT_VERSION, MANIFEST_FORMAT_VERSION,
};
use crate::codec::Codec;
use crate::pg::segment::WalSegSize;
use crate::repo::{RepoIdentity, Repository, layout};
use crate::storage::Storage;

use super::bundler::{Bundler, BundlerConfig};
use super::collect::{Collected, collect};
use super::error::BackupError;
use super::event::{BackupSource, ServerInfo};
use super::event_batch::event_batches;
use super::listing::{IncompleteBackup, remove_incomplete};
use super::progress::Progress;
use super::wait_for_wal::{WalRange, wait_for_wal};

/// How a backup is taken.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The label given to the server (recorded in the manifest).
    pub label: String,
    /// Raw bytes per bundle.
    pub bundle_size: u64,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// Codec of the bundles (the repository's).
    pub codec: Codec,
    /// How long to wait for the WAL from start to stop LSN to be archived.
    pub wal_timeout: Duration,
    /// Remove incomplete leftovers of earlier backups once this one is complete.
    pub remove_incomplete: bool,
    /// For an incremental (`BASE_BACKUP (INCREMENTAL)` after `UPLOAD_MANIFEST`): its parent
    /// and depth, recorded in the manifest.
    pub chain: Option<super::incremental::ChainLink>,
}

/// A completed backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// Its manifest, as stored.
    pub manifest: BackupManifest,
    /// Incomplete backups removed afterwards.
    pub removed_incomplete: Vec<IncompleteBackup>,
}

/// Picks the id for a backup starting now; never one already used (two backups in the same
/// second: the later waits for the next second).
pub async fn choose_id(repo: &Repository) -> Result<BackupId, BackupError> {
    loop {
        let id = BackupId::from_start_time(Utc::now());
        let used = repo
            .storage()
            .list_after(&layout::backup_prefix(id), None, 1)
            .await?;
        if used.is_empty() {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes one backup; see the module doc. `id` comes from [`choose_id`], called before the
/// server was asked to start, so that the id is the backup's start time.
pub async fn take_backup<S: BackupSource>(
    repo: &Repository,
    id: BackupId,
    mut source: S,
    server: ServerInfo,
    options: &BackupOptions,
    progress: Arc<Progress>,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    let start_time = Utc::now();
    let started_at = SystemTime::now();
    let seg_size = WalSegSize::new(u64::from(server.wal_segment_size))
        .map_err(|e| BackupError::Protocol(format!("wal_segment_size: {e}")))?;
    let identity = RepoIdentity::new(
        server.system_identifier,
        server.major(),
        server.wal_segment_size,
    );
    // Refuse another cluster's repository before any data moves. walship.json itself is
    // left for `walship archive` to create (as the database's OS user, with its rights).
    if let Some(existing) = repo.identity().await? {
        repo.check_identity(&existing, &identity)?;
        repo.check_encryption(&existing)?;
    }
    // Bundles stream past Repository::seal_stored: they are sealed by the compressor with
    // the same data key (none for a plain repository; refused if that mixes).
    let seal = repo.sealing_key().await?;

    let bundler = Bundler::new(
        BundlerConfig {
            bundle_size: options.bundle_size,
            parallel: options.parallel,
            codec: options.codec,
            seal,
            lock: repo.object_lock().copied(),
        },
        id,
        repo.storage().clone(),
        tokio::runtime::Handle::current(),
        progress.clone(),
    );
    let (mut tx, rx) = event_batches();
    let consumer = tokio::task::spawn_blocking({
        let progress = progress.clone();
        move || collect(rx, bundler, progress)
    });
    let pumped: Result<(), BackupError> = async {
        while let Some(event) = source.next_event().await? {
            if !tx.push(event).await {
                return Ok(()); // the consumer stopped: its error says why
            }
        }
        tx.finish().await;
        Ok(())
    }
    .await;
    let collected = match consumer.await {
        Ok(result) => result,
        Err(join) => Err(BackupError::Protocol(format!(
            "the bundler thread ended abnormally: {join}"
        ))),
    };
    // A source error explains a consumer error ("stream ended inside an archive").
    pumped?;
    let collected = collected?;

    let (Some((start_lsn, start_timeline)), Some((stop_lsn, stop_timeline))) =
        (collected.start, collected.stop)
    else {
        return Err(BackupError::Protocol(
            "the stream ended without start and stop positions".into(),
        ));
    };
    let range = WalRange {
        start_lsn,
        start_timeline,
        stop_lsn,
        stop_timeline,
        seg_size,
    };
    wait_for_wal(repo, range, options.wal_timeout).await?;
    // The WAL is there, so archiving created walship.json: it must be this cluster's.
    let existing = repo.require_identity().await?;
    repo.check_identity(&existing, &identity)?;
    check_bundles_stored(repo, id, &collected).await?;

    let manifest = build_manifest(
        id,
        options,
        server,
        &collected,
        range,
        start_time,
        started.elapsed(),
    );
    check_complete(&manifest)?;
    write_manifest(repo, &manifest).await?;

    let removed_incomplete = if options.remove_incomplete {
        match remove_incomplete(repo, Some(started_at)).await {
            Ok(removed) => removed,
            Err(e) => {
                tracing::warn!("could not remove incomplete backups: {e}");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Ok(BackupOutcome {
        manifest,
        removed_incomplete,
    })
}

/// Every bundle must still be there before the manifest names it (a concurrent cleanup of
/// "incomplete" backups could have removed a long-waiting one's).
async fn check_bundles_stored(
    repo: &Repository,
    id: BackupId,
    collected: &Collected,
) -> Result<(), BackupError> {
    for bundle in &collected.bundles {
        let key = layout::bundle_key(id, &bundle.name)?;
        let meta = repo.storage().head(&key).await?;
        if meta.size != bundle.stored_len {
            return Err(BackupError::Mismatch {
                path: key.to_string(),
                bundle: bundle.name.clone(),
                reason: format!(
                    "stored object has {} bytes, {} were written",
                    meta.size, bundle.stored_len
                ),
            });
        }
    }
    Ok(())
}

fn build_manifest(
    id: BackupId,
    options: &BackupOptions,
    server: ServerInfo,
    collected: &Collected,
    range: WalRange,
    start_time: chrono::DateTime<Utc>,
    elapsed: Duration,
) -> BackupManifest {
    let WalRange {
        start_lsn,
        start_timeline,
        stop_lsn,
        stop_timeline,
        ..
    } = range;
    BackupManifest {
        format_version: match options.chain {
            Some(_) => INCREMENTAL_MANIFEST_FORMAT_VERSION,
            None => MANIFEST_FORMAT_VERSION,
        },
        id,
        label: options.label.clone(),
        system_identifier: server.system_identifier,
        pg_major: server.major(),
        pg_version_num: server.pg_version_num,
        wal_segment_size: server.wal_segment_size,
        start_timeline,
        stop_timeline,
        start_lsn,
        stop_lsn,
        start_time,
        stop_time: Utc::now(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        backup_label: collected.small.backup_label.clone().unwrap_or_default(),
        tablespace_map: collected.small.tablespace_map.clone(),
        tablespaces: collected.tablespaces.clone(),
        pg_backup_manifest: collected.pg_manifest.clone(),
        bytes_raw: collected.bundles.iter().map(|b| b.raw_len).sum(),
        bytes_stored: collected.bundles.iter().map(|b| b.stored_len).sum(),
        walship_version: env!("CARGO_PKG_VERSION").to_string(),
        bundles: collected.bundles.clone(),
        files: collected.files.clone(),
        parent: options.chain.map(|c| c.parent),
        chain_depth: options.chain.map_or(0, |c| c.depth),
    }
}

/// A manifest restore can use has a backup label and `global/pg_control`.
fn check_complete(manifest: &BackupManifest) -> Result<(), BackupError> {
    if manifest.backup_label.is_empty() {
        return Err(BackupError::Protocol(
            "the main archive held no backup_label".into(),
        ));
    }
    if !manifest.files.iter().any(|f| f.path == "global/pg_control") {
        return Err(BackupError::Protocol(
            "the main archive held no global/pg_control".into(),
        ));
    }
    // The server marks an incremental's label; a mismatch means the server did not take
    // the kind of backup the manifest would claim.
    let marked = manifest
        .backup_label
        .lines()
        .any(|l| l.starts_with("INCREMENTAL FROM LSN:"));
    if marked != manifest.is_incremental() {
        return Err(BackupError::Protocol(format!(
            "the backup_label {} INCREMENTAL FROM LSN, but the backup was asked to be {}",
            if marked { "has" } else { "lacks" },
            if manifest.is_incremental() {
                "incremental"
            } else {
                "full"
            }
        )));
    }
    Ok(())
}

/// Stores the manifest, create-only: the moment the backup comes to exist.
async fn write_manifest(repo: &Repository, manifest: &BackupManifest) -> Result<(), BackupError> {
    let key = layout::manifest_key(manifest.id);
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Manifest {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    repo.put_content(&key, Bytes::from(json), true).await?;
    Ok(())
}
