//! Reading the backup catalog: complete backups (those with a manifest), incomplete ones
//! (objects under `backups/<id>/` but no manifest: interrupted backups, or one still
//! running), finding `latest` or an id, and removing incomplete leftovers.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::catalog::{
    BackupId, BackupManifest, INCREMENTAL_MANIFEST_FORMAT_VERSION, MANIFEST_FORMAT_VERSION,
};
use crate::repo::{Repository, layout, limits};
use crate::storage::{ObjectKey, ObjectMeta, Storage};

use super::error::BackupError;

/// The objects of a backup that has no manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncompleteBackup {
    /// Its id.
    pub id: BackupId,
    /// How many objects it left.
    pub objects: usize,
    /// Their total stored size.
    pub bytes: u64,
    /// When the newest of them was written, when storage says.
    #[serde(skip)]
    pub newest: Option<SystemTime>,
    /// Their keys.
    #[serde(skip)]
    pub keys: Vec<ObjectKey>,
}

/// A backup whose `manifest.json` exists but cannot be used: it does not decode, is not
/// JSON of the manifest format, names another backup, or holds an unsafe path. It is
/// reported and skipped, so that one bad (or planted) manifest never hides the good ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableBackup {
    /// Its id (from the key).
    pub id: BackupId,
    /// Why it cannot be used.
    pub reason: String,
}

/// Every backup id in the repository, split into complete, unreadable and incomplete.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete backups, oldest first.
    pub complete: Vec<BackupManifest>,
    /// Backups whose manifest exists but is corrupt or foreign, oldest first.
    pub unreadable: Vec<UnreadableBackup>,
    /// Backups without a manifest, oldest first.
    pub incomplete: Vec<IncompleteBackup>,
}

impl Catalog {
    /// Why backup `id` is unreadable, when it is.
    pub fn unreadable_reason(&self, id: BackupId) -> Option<&str> {
        self.unreadable
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.reason.as_str())
    }
}

/// Lists `backups/` and reads every manifest. A manifest whose content is wrong (see
/// [`UnreadableBackup`]) is listed in `unreadable`; only a failing storage is an error.
pub async fn read_catalog(repo: &Repository) -> Result<Catalog, BackupError> {
    let objects = repo.storage().list(layout::BACKUPS_PREFIX).await?;
    let mut by_id: BTreeMap<BackupId, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in objects {
        if let Some(id) = layout::backup_id_of(&meta.key) {
            by_id.entry(id).or_default().push(meta);
        }
    }
    let mut catalog = Catalog::default();
    for (id, metas) in by_id {
        let manifest_key = layout::manifest_key(id);
        if metas.iter().any(|m| m.key == manifest_key) {
            match read_manifest(repo, id).await {
                Ok(manifest) => catalog.complete.push(manifest),
                Err(e) if is_bad_content(&e) => {
                    catalog.unreadable.push(UnreadableBackup {
                        id,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        } else {
            catalog.incomplete.push(IncompleteBackup {
                id,
                objects: metas.len(),
                bytes: metas.iter().map(|m| m.size).sum(),
                newest: metas.iter().filter_map(|m| m.last_modified).max(),
                keys: metas.into_iter().map(|m| m.key).collect(),
            });
        }
    }
    Ok(catalog)
}

/// True when reading a manifest failed on its content (corrupt object, not a manifest of
/// this format, another backup's), not on the storage.
fn is_bad_content(error: &BackupError) -> bool {
    matches!(
        error,
        BackupError::Manifest { .. } | BackupError::Repo(crate::repo::RepoError::Corrupt { .. })
    )
}

/// Reads and checks the manifest of backup `id`.
pub async fn read_manifest(repo: &Repository, id: BackupId) -> Result<BackupManifest, BackupError> {
    let key = layout::manifest_key(id);
    let bytes = match repo.get_content(&key, limits::MANIFEST_MAX).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Err(BackupError::NotFound(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    let bad = |message: String| BackupError::Manifest {
        key: key.to_string(),
        message,
    };
    let version: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let format = version.get("format_version").and_then(|v| v.as_u64());
    let known = [MANIFEST_FORMAT_VERSION, INCREMENTAL_MANIFEST_FORMAT_VERSION];
    if !format.is_some_and(|f| known.iter().any(|k| u64::from(*k) == f)) {
        return Err(bad(format!(
            "format_version {format:?} is not one this build reads ({known:?})"
        )));
    }
    let manifest: BackupManifest =
        serde_json::from_value(version).map_err(|e| bad(e.to_string()))?;
    // Version 2 is exactly the incremental one: a parent, a depth, and never a full's version.
    let incremental = manifest.format_version == INCREMENTAL_MANIFEST_FORMAT_VERSION;
    if incremental != manifest.parent.is_some() || incremental != (manifest.chain_depth > 0) {
        return Err(bad(format!(
            "format_version {} with parent {:?} and chain_depth {}",
            manifest.format_version, manifest.parent, manifest.chain_depth
        )));
    }
    if manifest.parent.is_some_and(|p| p >= id) {
        return Err(bad(format!(
            "its parent {:?} is not older than the backup",
            manifest.parent
        )));
    }
    if manifest.id != id {
        return Err(bad(format!("it names backup {}", manifest.id)));
    }
    for file in &manifest.files {
        super::entry_path::check_backup_path(&file.path)
            .map_err(|reason| bad(format!("file {:?}: {reason}", file.path)))?;
    }
    Ok(manifest)
}

/// The manifest of `which`: `latest` (the newest complete backup) or a backup id.
pub async fn find_backup(repo: &Repository, which: &str) -> Result<BackupManifest, BackupError> {
    if which == "latest" {
        let catalog = read_catalog(repo).await?;
        return catalog
            .complete
            .into_iter()
            .last()
            .ok_or_else(|| BackupError::NotFound("(latest: the repository has none)".into()));
    }
    let id: BackupId = which
        .parse()
        .map_err(|e: crate::catalog::BackupIdError| BackupError::NotFound(e.to_string()))?;
    read_manifest(repo, id).await
}

/// Deletes the objects of incomplete backups. With `idle_since`, only those whose newest
/// object is older than it (so a backup still being written by another process is left
/// alone). Returns what was removed.
pub async fn remove_incomplete(
    repo: &Repository,
    idle_since: Option<SystemTime>,
) -> Result<Vec<IncompleteBackup>, BackupError> {
    let catalog = read_catalog(repo).await?;
    let mut removed = Vec::new();
    for backup in catalog.incomplete {
        let idle = match (idle_since, backup.newest) {
            (None, _) => true,
            (Some(limit), Some(newest)) => newest < limit,
            (Some(_), None) => false,
        };
        if !idle {
            continue;
        }
        for key in &backup.keys {
            repo.storage().delete(key).await?;
        }
        removed.push(backup);
    }
    Ok(removed)
}
