//! What a copy must move: the two listings compared, in the order that keeps the target
//! truthful (backups listed before WAL, a backup's manifest after its other objects).
//!
//! The target may run its own retention (`expire --repo TARGET`). So that a copy does not
//! bring back what the target's retention removed, once the target holds a complete backup
//! a copy skips source backups older than the target's oldest complete backup, and source
//! WAL segments before the target's oldest segment. Backups are copied one at a time, oldest
//! first, so an interrupted copy never leaves an older backup behind a newer complete one.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::BackupId;
use crate::pg::{ArchiveFileName, WalSegSize};
use crate::repo::layout;
use crate::storage::{ObjectKey, ObjectMeta};

/// One backup to copy: its objects (manifest excluded) and then its manifest.
#[derive(Debug, Clone)]
pub(crate) struct BackupCopy {
    /// The backup.
    pub(crate) id: BackupId,
    /// Bundles and any other object of the backup but its manifest and pin records.
    pub(crate) objects: Vec<ObjectMeta>,
    /// The manifest, copied last.
    pub(crate) manifest: ObjectMeta,
}

/// The work of one copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyPlan {
    /// `keys/` objects the target lacks (wrapped data keys of an encrypted repository).
    pub(crate) keys: Vec<ObjectMeta>,
    /// WAL objects the target lacks, plus `.partial` tails whose size differs.
    pub(crate) wal: Vec<ObjectMeta>,
    /// The source's stream tail journals: copied as piece objects, one per frame
    /// (`super::journal`), every time.
    pub(crate) journals: Vec<ObjectMeta>,
    /// Complete backups the target lacks, oldest first.
    pub(crate) backups: Vec<BackupCopy>,
    /// Objects present on both sides with different sizes (never overwritten).
    pub(crate) conflicts: Vec<ObjectKey>,
    /// Source objects skipped because the target's retention already removed their age.
    pub(crate) skipped_by_target_retention: usize,
}

/// The listings a plan is made from.
pub(crate) struct Listings<'a> {
    pub(crate) seg_size: WalSegSize,
    pub(crate) source_keys: &'a [ObjectMeta],
    pub(crate) source_backups: &'a [ObjectMeta],
    pub(crate) source_wal: &'a [ObjectMeta],
    pub(crate) target_keys: &'a [ObjectMeta],
    pub(crate) target_backups: &'a [ObjectMeta],
    pub(crate) target_wal: &'a [ObjectMeta],
}

/// Whether `key` is a stream's `.partial` tail, which its writer replaces in place.
pub(crate) fn is_replaceable(key: &ObjectKey) -> bool {
    key.as_str().ends_with(".partial")
}

/// Complete backups in a listing of `backups/`: id and the objects under it.
fn complete_backups(listing: &[ObjectMeta]) -> BTreeMap<BackupId, (Vec<ObjectMeta>, ObjectMeta)> {
    let mut objects: BTreeMap<BackupId, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in listing {
        if let Some(id) = layout::backup_id_of(&meta.key) {
            objects.entry(id).or_default().push(meta.clone());
        }
    }
    objects
        .into_iter()
        .filter_map(|(id, metas)| {
            let manifest_key = layout::manifest_key(id);
            let pins = layout::pins_prefix(id);
            let manifest = metas.iter().find(|m| m.key == manifest_key)?.clone();
            let rest = metas
                .into_iter()
                .filter(|m| m.key != manifest_key && !m.key.as_str().starts_with(&pins))
                .collect();
            Some((id, (rest, manifest)))
        })
        .collect()
}

/// Position of a WAL object for the retention horizon: the number of its segment (a
/// `.partial`'s or tail piece's, a backup history file's start segment), `None` for timeline history files,
/// which retention keeps.
fn segment_position(key: &ObjectKey, seg_size: WalSegSize) -> Option<u64> {
    if let Some(tail) = crate::repo::layout::tail_object_of(key, seg_size) {
        // A stream tail piece or journal goes with its segment's `.partial`.
        return Some(tail.segment().segno().0);
    }
    let name = key.as_str().rsplit('/').next()?;
    ArchiveFileName::parse(name, seg_size)
        .ok()?
        .segment()
        .map(|w| w.segno().0)
}

/// Compares the listings.
pub(crate) fn plan(l: &Listings<'_>) -> CopyPlan {
    let mut plan = CopyPlan::default();
    let by_key = |metas: &[ObjectMeta]| -> BTreeMap<ObjectKey, u64> {
        metas.iter().map(|m| (m.key.clone(), m.size)).collect()
    };
    let target_keys = by_key(l.target_keys);
    for meta in l.source_keys {
        match target_keys.get(&meta.key) {
            None => plan.keys.push(meta.clone()),
            Some(&size) if size != meta.size => plan.conflicts.push(meta.key.clone()),
            Some(_) => {}
        }
    }

    let target_complete = complete_backups(l.target_backups);
    let oldest_target_backup = target_complete.keys().next().copied();
    let wal_horizon = oldest_target_backup.and_then(|_| {
        l.target_wal
            .iter()
            .filter_map(|m| segment_position(&m.key, l.seg_size))
            .min()
    });

    let target_wal = by_key(l.target_wal);
    for meta in l.source_wal {
        if layout::tail_journal_of(&meta.key, l.seg_size).is_some() {
            let below = wal_horizon
                .is_some_and(|h| segment_position(&meta.key, l.seg_size).is_some_and(|p| p < h));
            if below {
                plan.skipped_by_target_retention += 1;
            } else {
                plan.journals.push(meta.clone());
            }
            continue;
        }
        match target_wal.get(&meta.key) {
            Some(&size) if size == meta.size => {}
            Some(_) if is_replaceable(&meta.key) => plan.wal.push(meta.clone()),
            Some(_) => plan.conflicts.push(meta.key.clone()),
            None => {
                let below = wal_horizon.is_some_and(|h| {
                    segment_position(&meta.key, l.seg_size).is_some_and(|p| p < h)
                });
                if below {
                    plan.skipped_by_target_retention += 1;
                } else {
                    plan.wal.push(meta.clone());
                }
            }
        }
    }

    let target_backup_objects: BTreeSet<&ObjectKey> =
        l.target_backups.iter().map(|m| &m.key).collect();
    for (id, (objects, manifest)) in complete_backups(l.source_backups) {
        if target_complete.contains_key(&id) {
            continue;
        }
        if oldest_target_backup.is_some_and(|oldest| id < oldest) {
            plan.skipped_by_target_retention += 1;
            continue;
        }
        let objects = objects
            .into_iter()
            .filter(|m| !target_backup_objects.contains(&m.key))
            .collect();
        plan.backups.push(BackupCopy {
            id,
            objects,
            manifest,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::new(key).unwrap(),
            size,
            crc32c: None,
            last_modified: None,
        }
    }

    const SEG: u64 = 16 << 20;

    fn wal(seg: u32) -> ObjectMeta {
        meta(
            &format!("wal/0000000100000000/0000000100000000{seg:08X}"),
            100,
        )
    }

    fn backup(id: &str, with_manifest: bool) -> Vec<ObjectMeta> {
        let mut v = vec![meta(&format!("backups/{id}/bundles/000001"), 10)];
        v.push(meta(&format!("backups/{id}/pins/00000001.json"), 10));
        if with_manifest {
            v.push(meta(&format!("backups/{id}/manifest.json"), 5));
        }
        v
    }

    #[test]
    fn copies_what_is_missing_complete_backups_only_and_skips_pins() {
        let seg_size = WalSegSize::new(SEG).unwrap();
        let source_wal = vec![wal(1), wal(2), wal(3)];
        let target_wal = vec![wal(1)];
        let mut source_backups = backup("20261201T000000Z", true);
        source_backups.extend(backup("20261202T000000Z", false));
        let p = plan(&Listings {
            seg_size,
            source_keys: &[],
            source_backups: &source_backups,
            source_wal: &source_wal,
            target_keys: &[],
            target_backups: &[],
            target_wal: &target_wal,
        });
        assert_eq!(p.wal.len(), 2);
        assert_eq!(p.backups.len(), 1, "only the complete backup");
        assert_eq!(p.backups[0].objects.len(), 1, "the bundle, not the pin");
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn respects_what_the_targets_retention_removed() {
        let seg_size = WalSegSize::new(SEG).unwrap();
        let source_wal = vec![wal(1), wal(2), wal(3), wal(4)];
        let target_wal = vec![wal(3)];
        let mut source_backups = backup("20261201T000000Z", true);
        source_backups.extend(backup("20261202T000000Z", true));
        source_backups.extend(backup("20261203T000000Z", true));
        let target_backups = backup("20261202T000000Z", true);
        let p = plan(&Listings {
            seg_size,
            source_keys: &[],
            source_backups: &source_backups,
            source_wal: &source_wal,
            target_keys: &[],
            target_backups: &target_backups,
            target_wal: &target_wal,
        });
        assert_eq!(
            p.wal.iter().map(|m| m.key.to_string()).collect::<Vec<_>>(),
            [wal(4).key.to_string()]
        );
        assert_eq!(p.backups.len(), 1);
        assert_eq!(p.backups[0].id.to_string(), "20261203T000000Z");
        assert_eq!(p.skipped_by_target_retention, 3);
    }

    #[test]
    fn a_different_size_is_a_conflict_except_for_a_partial_tail() {
        let seg_size = WalSegSize::new(SEG).unwrap();
        let partial = meta("wal/0000000100000000/000000010000000000000002.partial", 7);
        let source_wal = vec![wal(1), partial.clone()];
        let target_wal = vec![meta(wal(1).key.as_str(), 99), meta(partial.key.as_str(), 3)];
        let p = plan(&Listings {
            seg_size,
            source_keys: &[],
            source_backups: &[],
            source_wal: &source_wal,
            target_keys: &[],
            target_backups: &[],
            target_wal: &target_wal,
        });
        assert_eq!(p.conflicts, vec![wal(1).key]);
        assert_eq!(p.wal, vec![partial]);
    }
}
