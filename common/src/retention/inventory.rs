//! What the repository holds, read once for `expire`, `list` and `verify`: every complete
//! backup with its manifest, pin state and objects; incomplete backups; every WAL object,
//! parsed by name. One listing of `backups/` and one of `wal/`.

use std::collections::BTreeMap;

use crate::backup::{BackupError, IncompleteBackup, read_manifest};
use crate::catalog::{BackupId, BackupManifest};
use crate::pg::file_name::ArchiveFileName;
use crate::pg::history::TimelineHistory;
use crate::pg::segment::WalSegSize;
use crate::repo::layout::TailObject;
use crate::repo::{RepoError, RepoIdentity, Repository, layout, limits};
use crate::storage::{ObjectMeta, Storage, StorageError};

use super::pins::{PinError, PinRecord, current_pin, read_pin_records};
use super::plan::{BackupSummary, WalObject};

/// A complete backup as stored.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    /// Its manifest.
    pub manifest: BackupManifest,
    /// The pin record in force, if pinned.
    pub pin: Option<PinRecord>,
    /// Every object under `backups/<id>/`, the manifest included.
    pub objects: Vec<ObjectMeta>,
}

impl StoredBackup {
    /// Its id.
    pub fn id(&self) -> BackupId {
        self.manifest.id
    }

    /// Bytes stored under `backups/<id>/`.
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|m| m.size).sum()
    }

    /// The engine's view of it.
    pub fn summary(&self) -> BackupSummary {
        BackupSummary::from_manifest(&self.manifest, self.pin.is_some(), self.bytes())
    }
}

/// A WAL object as stored.
#[derive(Debug, Clone)]
pub struct StoredWal {
    /// Its parsed name.
    pub name: ArchiveFileName,
    /// Its listing entry.
    pub meta: ObjectMeta,
}

/// The repository's contents.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// `walship.json`.
    pub identity: RepoIdentity,
    /// Its segment size.
    pub seg_size: WalSegSize,
    /// Complete backups, by id.
    pub backups: Vec<StoredBackup>,
    /// Backups without a manifest, by id.
    pub incomplete: Vec<IncompleteBackup>,
    /// WAL objects whose name parses and whose key is where the layout puts that name.
    pub wal: Vec<StoredWal>,
    /// The stream's tail pieces (`<segment>.partial.<offset>`) and journals
    /// (`<segment>.partial.journal`), kept or removed with their segment's `.partial`.
    pub tail_pieces: Vec<(TailObject, ObjectMeta)>,
    /// Other objects under `wal/` (not walship's: never removed, reported by `verify`).
    pub stray_wal: Vec<ObjectMeta>,
    /// The `.history` files, parsed (with [`read_inventory_tolerant`], those that do not
    /// decode or parse are left out: `verify` reads and reports them itself).
    pub histories: Vec<TimelineHistory>,
    /// Backups whose manifest exists but cannot be read (only with
    /// [`read_inventory_tolerant`]; [`read_inventory`] fails instead): id, objects, why.
    pub unreadable: Vec<(BackupId, Vec<ObjectMeta>, String)>,
    /// Pin records that cannot be read, as `(key, why)` (only with
    /// [`read_inventory_tolerant`]; their backup counts as unpinned there).
    pub bad_pins: Vec<(String, String)>,
}

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Listing or reading failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The repository (identity, an object) failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A manifest cannot be read: `expire` never guesses what such a backup needs.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A pin record cannot be read.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A `.history` file cannot be read or parsed: `expire` never guesses a timeline's
    /// ancestry.
    #[error("timeline history {key} is unreadable: {message}")]
    History {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `walship.json` names a segment size Postgres cannot have.
    #[error("walship.json in {location}: {message}")]
    BadSegmentSize {
        /// The repository.
        location: String,
        /// What is wrong.
        message: String,
    },
}

impl Inventory {
    /// The engine's view of the complete backups.
    pub fn summaries(&self) -> Vec<BackupSummary> {
        self.backups.iter().map(StoredBackup::summary).collect()
    }

    /// The engine's view of the WAL.
    pub fn wal_objects(&self) -> Vec<WalObject> {
        self.wal
            .iter()
            .map(|w| WalObject {
                name: w.name,
                size: w.meta.size,
                tail: None,
            })
            .chain(self.tail_pieces.iter().map(|(p, meta)| WalObject {
                name: ArchiveFileName::Partial(p.segment()),
                size: meta.size,
                tail: Some(*p),
            }))
            .collect()
    }

    /// Incomplete backups older than the newest complete one: leftovers of interrupted
    /// backups or of an interrupted `expire`, never a backup in progress (which started after
    /// the newest complete one).
    pub fn leftovers(&self) -> Vec<&IncompleteBackup> {
        let newest = self.backups.iter().map(|b| b.manifest.start_time).max();
        self.incomplete
            .iter()
            .filter(|i| newest.is_some_and(|n| i.id.time() < n))
            .collect()
    }
}

/// Reads the inventory: one listing of `backups/`, every manifest and pin record, one
/// listing of `wal/`. A manifest that cannot be read is an error: `expire` never guesses what
/// such a backup needs.
pub async fn read_inventory(repo: &Repository) -> Result<Inventory, InventoryError> {
    read(repo, false).await
}

/// [`read_inventory`], but a corrupt or unparsable manifest goes into
/// [`Inventory::unreadable`] instead of failing (for `verify`, which reports it). Storage
/// failures are still errors.
pub async fn read_inventory_tolerant(repo: &Repository) -> Result<Inventory, InventoryError> {
    read(repo, true).await
}

async fn read(repo: &Repository, tolerant: bool) -> Result<Inventory, InventoryError> {
    let identity = repo.require_identity().await?;
    let seg_size = WalSegSize::new(u64::from(identity.wal_segment_size)).map_err(|e| {
        InventoryError::BadSegmentSize {
            location: repo.location().to_string(),
            message: e.to_string(),
        }
    })?;
    let mut by_id: BTreeMap<BackupId, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in repo.storage().list(layout::BACKUPS_PREFIX).await? {
        if let Some(id) = layout::backup_id_of(&meta.key) {
            by_id.entry(id).or_default().push(meta);
        }
    }
    let mut backups = Vec::new();
    let mut incomplete = Vec::new();
    let mut unreadable = Vec::new();
    let mut bad_pins = Vec::new();
    for (id, objects) in by_id {
        let manifest_key = layout::manifest_key(id);
        if objects.iter().any(|m| m.key == manifest_key) {
            let manifest = match read_manifest(repo, id).await {
                Ok(manifest) => manifest,
                Err(
                    e @ (BackupError::Manifest { .. }
                    | BackupError::Repo(RepoError::Corrupt { .. })),
                ) if tolerant => {
                    unreadable.push((id, objects, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let keys: Vec<_> = objects.iter().map(|m| m.key.clone()).collect();
            let pin = match read_pin_records(repo, &keys).await {
                Ok(records) => current_pin(&records).cloned(),
                Err(PinError::BadRecord { key, message }) if tolerant => {
                    bad_pins.push((key, message));
                    None
                }
                Err(e) => return Err(e.into()),
            };
            backups.push(StoredBackup {
                manifest,
                pin,
                objects,
            });
        } else {
            incomplete.push(IncompleteBackup {
                id,
                objects: objects.len(),
                bytes: objects.iter().map(|m| m.size).sum(),
                newest: objects.iter().filter_map(|m| m.last_modified).max(),
                keys: objects.into_iter().map(|m| m.key).collect(),
            });
        }
    }
    let mut wal = Vec::new();
    let mut stray_wal = Vec::new();
    let mut tail_pieces = Vec::new();
    for meta in repo.storage().list(layout::WAL_PREFIX).await? {
        let name = meta.key.as_str().rsplit('/').next().unwrap_or_default();
        match ArchiveFileName::parse(name, seg_size) {
            Ok(parsed) if layout::wal_key(&parsed) == meta.key => {
                wal.push(StoredWal { name: parsed, meta })
            }
            _ => match layout::tail_object_of(&meta.key, seg_size) {
                Some(piece) => tail_pieces.push((piece, meta)),
                None => stray_wal.push(meta),
            },
        }
    }
    let mut histories = Vec::new();
    for w in &wal {
        let ArchiveFileName::History(tli) = w.name else {
            continue;
        };
        let parsed = match repo.get_content(&w.meta.key, limits::HISTORY_MAX).await {
            Ok(bytes) => TimelineHistory::parse(tli, &bytes).map_err(|e| e.to_string()),
            Err(RepoError::Storage(e)) if !e.is_not_found() => return Err(e.into()),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(history) => histories.push(history),
            Err(_) if tolerant => {}
            Err(message) => {
                return Err(InventoryError::History {
                    key: w.meta.key.to_string(),
                    message,
                });
            }
        }
    }
    Ok(Inventory {
        identity,
        histories,
        seg_size,
        backups,
        incomplete,
        wal,
        tail_pieces,
        stray_wal,
        unreadable,
        bad_pins,
    })
}
