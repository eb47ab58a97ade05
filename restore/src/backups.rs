//! The backups in a repository: every `backups/<id>/manifest.json`, read and checked.
//!
//! A backup exists only once its manifest does (the manifest is written last); a manifest
//! of an unknown format version is refused, never guessed at.

use walship_common::catalog::{BackupId, BackupManifest, MANIFEST_FORMAT_VERSION};
use walship_common::repo::{Repository, layout};
use walship_common::storage::Storage;

use crate::error::RestoreError;

/// The ids of every backup with a manifest, oldest first.
pub async fn list_backup_ids(repo: &Repository) -> Result<Vec<BackupId>, RestoreError> {
    let mut ids: Vec<BackupId> = repo
        .storage()
        .list(layout::BACKUPS_PREFIX)
        .await?
        .iter()
        .filter_map(|meta| {
            layout::backup_id_of(&meta.key).filter(|id| meta.key == layout::manifest_key(*id))
        })
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Reads and checks the manifest of backup `id`.
pub async fn load_manifest(
    repo: &Repository,
    id: &BackupId,
) -> Result<BackupManifest, RestoreError> {
    let bytes = repo.get_content(&layout::manifest_key(*id)).await?;
    let bad = |message: String| RestoreError::BadManifest {
        backup: id.to_string(),
        message,
    };
    let manifest: BackupManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format_version != MANIFEST_FORMAT_VERSION {
        return Err(bad(format!(
            "format version {} is not one this walship reads ({MANIFEST_FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    if manifest.id != *id {
        return Err(bad(format!("it names backup {}", manifest.id)));
    }
    Ok(manifest)
}

/// Every backup's manifest, oldest first.
pub async fn load_all(repo: &Repository) -> Result<Vec<BackupManifest>, RestoreError> {
    let mut all = Vec::new();
    for id in list_backup_ids(repo).await? {
        all.push(load_manifest(repo, &id).await?);
    }
    Ok(all)
}
