//! The repository's WAL as restore sees it: one listing of `wal/`, the history file of the
//! target timeline, and which backups lie on the path to it.
//!
//! Postgres decides which timeline's copy of each segment to read from the `.history`
//! files; this module uses the same rules (`TimelineHistory::timeline_of_segment`), so the
//! chain walship checks is the chain recovery will read.

use std::collections::{BTreeSet, HashMap};

use walship_common::catalog::BackupManifest;
use walship_common::pg::{
    ArchiveFileName, SegNo, TimelineHistory, TimelineId, WalFileName, WalSegSize,
};
use walship_common::repo::{Repository, layout, limits};
use walship_common::storage::Storage;

use crate::error::RestoreError;

/// What `wal/` holds, from one listing.
#[derive(Debug, Clone, Default)]
pub struct ArchiveListing {
    /// Complete segments and their stored sizes.
    pub segments: HashMap<(TimelineId, SegNo), u64>,
    /// `.partial` segments and their stored sizes.
    pub partials: HashMap<(TimelineId, SegNo), u64>,
    /// Timelines with a `.history` file.
    pub histories: BTreeSet<TimelineId>,
}

impl ArchiveListing {
    /// Lists `wal/` once. Keys that are not archive file names are ignored.
    pub async fn load(repo: &Repository, seg_size: WalSegSize) -> Result<Self, RestoreError> {
        let mut listing = ArchiveListing::default();
        for meta in repo.storage().list(layout::WAL_PREFIX).await? {
            if let Some(tail) = layout::tail_object_of(&meta.key, seg_size) {
                // A piece or journal of a stream's tail: the segment's beginning is stored
                // (base or not).
                let w = tail.segment();
                *listing
                    .partials
                    .entry((w.timeline(), w.segno()))
                    .or_insert(0) += meta.size;
                continue;
            }
            let Ok(name) = ArchiveFileName::parse(meta.key.file_name(), seg_size) else {
                continue;
            };
            match name {
                ArchiveFileName::Segment(w) => {
                    listing
                        .segments
                        .insert((w.timeline(), w.segno()), meta.size);
                }
                ArchiveFileName::Partial(w) => {
                    *listing
                        .partials
                        .entry((w.timeline(), w.segno()))
                        .or_insert(0) += meta.size;
                }
                ArchiveFileName::History(tli) => {
                    listing.histories.insert(tli);
                }
                _ => {}
            }
        }
        Ok(listing)
    }

    /// The newest timeline the archive knows (its highest `.history`, else 1).
    pub fn latest_timeline(&self) -> TimelineId {
        self.histories
            .iter()
            .next_back()
            .copied()
            .unwrap_or(TimelineId(1))
    }

    /// Whether the complete segment is archived.
    pub fn has(&self, name: &WalFileName) -> bool {
        self.segments.contains_key(&(name.timeline(), name.segno()))
    }

    /// The last segment recovery along `history` could read: the highest segment number
    /// whose copy on the timeline `history` picks for it is archived (complete or partial).
    /// `.partial` copies count only `with_partials`.
    pub fn last_on_path(
        &self,
        history: &TimelineHistory,
        seg_size: WalSegSize,
        with_partials: bool,
    ) -> Option<SegNo> {
        let partials = self.partials.keys().filter(|_| with_partials);
        self.segments
            .keys()
            .chain(partials)
            .filter(|(tli, segno)| history.timeline_of_segment(*segno, seg_size) == *tli)
            .map(|(_, segno)| *segno)
            .max()
    }
}

/// Reads the history of `timeline` from the repository (`None` if it has no file; timeline
/// 1 needs none).
pub async fn load_history(
    repo: &Repository,
    timeline: TimelineId,
) -> Result<Option<TimelineHistory>, RestoreError> {
    if timeline.0 == 1 {
        return Ok(Some(TimelineHistory::first()));
    }
    let name = ArchiveFileName::History(timeline);
    let key = layout::wal_key(&name);
    match repo
        .get_content(&key, limits::wal_content_limit(&name))
        .await
    {
        Ok(bytes) => match TimelineHistory::parse(timeline, &bytes) {
            Ok(history) => Ok(Some(history)),
            Err(e) => Err(RestoreError::BadManifest {
                backup: format!("history of timeline {timeline}"),
                message: e.to_string(),
            }),
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether recovery along `history` can start from `backup`: its timeline is on the path,
/// and it became consistent before that timeline branched off.
pub fn backup_on_path(history: &TimelineHistory, backup: &BackupManifest) -> bool {
    history.contains_timeline(backup.stop_timeline)
        && history
            .switch_point(backup.stop_timeline)
            .is_none_or(|switch| backup.stop_lsn <= switch)
}
