//! Carrying out a [`Plan`]: the only code that removes backups and WAL.
//!
//! Order, so that a crash at any point leaves a sound repository the next run finishes:
//! 1. each removed backup, oldest first: its pin state is read again (a pin written since the
//!    plan wins), then its manifest is deleted (the backup stops existing at once), then its
//!    other objects, in batches;
//! 2. leftovers (incomplete backups older than the newest complete one, such as those a
//!    crash in step 1 leaves), in batches;
//! 3. WAL, in batches of [`DELETE_BATCH`], only after every manifest that needed it is gone.
//!
//! An object the storage refuses to delete (Object Lock, legal hold, permissions) is
//! reported and skipped, never forced; a refused manifest keeps its whole backup. Under
//! `s3.object_lock` every version of a removed key is deleted (not only hidden behind a
//! delete marker), so a refused version keeps its key listed and a later run, once the
//! lock has passed, removes it.

use crate::backup::IncompleteBackup;
use crate::catalog::BackupId;
use crate::repo::{Repository, layout};
use crate::storage::{DELETE_BATCH, DeleteRefusal, ObjectKey, Storage, StorageError};

use super::inventory::Inventory;
use super::pins::{PinError, current_pin, read_pin_records};
use super::plan::Plan;

/// What an `expire` run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExpireReport {
    /// Backups removed (their manifests are gone).
    pub backups_removed: Vec<BackupId>,
    /// Backups the plan removed but that were pinned meanwhile, or whose manifest the storage
    /// refused to delete: kept.
    pub backups_kept_after_all: Vec<BackupId>,
    /// Incomplete leftovers removed.
    pub leftovers_removed: Vec<BackupId>,
    /// WAL objects removed.
    pub wal_objects_removed: usize,
    /// Objects removed in all.
    pub objects_removed: usize,
    /// Their stored bytes.
    pub bytes_removed: u64,
    /// Objects the storage refused to delete: skipped.
    pub refused: Vec<DeleteRefusal>,
}

/// Why carrying out a plan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    /// Storage failed (after retries); what was removed so far is consistent.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A pin record could not be read again: the backup is not removed.
    #[error(transparent)]
    Pin(#[from] PinError),
}

/// Removes what `plan` removes from the repository `inventory` was read from.
pub async fn execute(
    repo: &Repository,
    inventory: &Inventory,
    plan: &Plan,
) -> Result<ExpireReport, ExpireError> {
    let mut report = ExpireReport::default();
    for removed in &plan.removed {
        let Some(stored) = inventory.backups.iter().find(|b| b.id() == removed.id) else {
            continue;
        };
        let id = stored.id();
        let pins: Vec<ObjectKey> = repo
            .storage()
            .list(&layout::pins_prefix(id))
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        if current_pin(&read_pin_records(repo, &pins).await?).is_some() {
            tracing::warn!(backup = %id, "pinned since the plan was made: kept");
            report.backups_kept_after_all.push(id);
            continue;
        }
        let manifest = layout::manifest_key(id);
        let refused = remove(repo, std::slice::from_ref(&manifest)).await?;
        if !refused.is_empty() {
            report.refused.extend(refused);
            report.backups_kept_after_all.push(id);
            continue;
        }
        report.backups_removed.push(id);
        count(
            &mut report,
            stored
                .objects
                .iter()
                .filter(|m| m.key == manifest)
                .map(|m| m.size),
        );
        let rest: Vec<(ObjectKey, u64)> = stored
            .objects
            .iter()
            .filter(|m| m.key != manifest)
            .map(|m| (m.key.clone(), m.size))
            .collect();
        delete_batches(repo, &rest, &mut report).await?;
    }
    for leftover in inventory.leftovers() {
        let IncompleteBackup { id, keys, .. } = leftover;
        let sized: Vec<(ObjectKey, u64)> = keys.iter().map(|k| (k.clone(), 0)).collect();
        delete_batches(repo, &sized, &mut report).await?;
        report.bytes_removed += leftover.bytes;
        report.leftovers_removed.push(*id);
    }
    // A backup kept after all keeps its WAL: remove WAL only when every removal went as
    // planned; otherwise the next run (with a fresh plan) removes it.
    if report.backups_kept_after_all.is_empty() {
        let wal: Vec<(ObjectKey, u64)> =
            plan.wal_removed.iter().map(|w| (w.key(), w.size)).collect();
        let before = report.objects_removed;
        delete_batches(repo, &wal, &mut report).await?;
        report.wal_objects_removed = report.objects_removed - before;
    }
    Ok(report)
}

fn count(report: &mut ExpireReport, sizes: impl Iterator<Item = u64>) {
    for size in sizes {
        report.objects_removed += 1;
        report.bytes_removed += size;
    }
}

async fn delete_batches(
    repo: &Repository,
    objects: &[(ObjectKey, u64)],
    report: &mut ExpireReport,
) -> Result<(), StorageError> {
    for batch in objects.chunks(DELETE_BATCH) {
        let keys: Vec<ObjectKey> = batch.iter().map(|(k, _)| k.clone()).collect();
        let refused = remove(repo, &keys).await?;
        count(
            report,
            batch
                .iter()
                .filter(|(k, _)| !refused.iter().any(|r| &r.key == k))
                .map(|(_, s)| *s),
        );
        report.refused.extend(refused);
    }
    Ok(())
}

/// Removes `keys`. Under Object Lock the bucket is versioned, and a plain delete would only
/// hide an object behind a delete marker (its locked bytes stay, unreported): there every
/// version of each key is removed, and a version the lock keeps is refused, reported and
/// left for a later run.
async fn remove(repo: &Repository, keys: &[ObjectKey]) -> Result<Vec<DeleteRefusal>, StorageError> {
    if repo.object_lock().is_some() {
        repo.storage().delete_all_versions(keys).await
    } else {
        repo.storage().delete_many(keys).await
    }
}
