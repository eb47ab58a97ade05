//! Waiting, bounded, until every WAL segment a backup needs is in the repository, so that
//! the backup alone restores to consistency. A backup's manifest is written only after this
//! succeeds; otherwise the error names the first missing segment.
//!
//! The segments needed hold the WAL from the start LSN to (exclusively) the stop LSN. When
//! the backup crossed a timeline switch (a standby promoted meanwhile), each segment may be
//! on the start or the stop timeline; either counts.

use std::time::{Duration, Instant};

use crate::lsn::Lsn;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::WalSegSize;
use crate::pg::timeline::TimelineId;
use crate::repo::{Repository, layout};

use super::error::BackupError;

/// What to wait for.
#[derive(Debug, Clone, Copy)]
pub struct WalRange {
    /// Backup start.
    pub start_lsn: Lsn,
    /// Timeline at the start.
    pub start_timeline: TimelineId,
    /// Backup stop.
    pub stop_lsn: Lsn,
    /// Timeline at the stop.
    pub stop_timeline: TimelineId,
    /// The cluster's segment size.
    pub seg_size: WalSegSize,
}

/// Pause before the repository is asked again: the last segment is usually archived within
/// a few tens to hundreds of milliseconds of the backup's end, and every pause past that
/// moment is time the backup takes for nothing.
const FIRST_POLL: Duration = Duration::from_millis(25);
/// How long the pause stays [`FIRST_POLL`] before it starts doubling (an archiver that is
/// behind gets asked less often).
const STEADY_POLLING: Duration = Duration::from_secs(2);
/// Longest pause between two looks while waiting.
const MAX_POLL: Duration = Duration::from_millis(500);

/// Returns once every segment of `range` is in `repo`, or fails with
/// [`BackupError::MissingWal`] naming the first one still missing after `timeout`.
pub async fn wait_for_wal(
    repo: &Repository,
    range: WalRange,
    timeout: Duration,
) -> Result<(), BackupError> {
    let started = Instant::now();
    let end = if range.stop_lsn > range.start_lsn {
        range.stop_lsn
    } else {
        // A backup always spans at least the segment of its start.
        Lsn(range.start_lsn.0 + 1)
    };
    let segments: Vec<WalFileName> =
        WalFileName::covering(range.stop_timeline, range.start_lsn, end, range.seg_size)
            .map_err(|e| BackupError::Protocol(format!("WAL range of the backup: {e}")))?
            .collect();
    let mut poll = FIRST_POLL;
    for segment in segments {
        loop {
            if segment_archived(repo, segment, range).await? {
                break;
            }
            if started.elapsed() >= timeout {
                return Err(BackupError::MissingWal {
                    segment: segment.to_string(),
                    start_lsn: range.start_lsn,
                    stop_lsn: range.stop_lsn,
                    waited: started.elapsed(),
                });
            }
            tracing::debug!("waiting for WAL segment {segment} to be archived");
            tokio::time::sleep(poll).await;
            if started.elapsed() >= STEADY_POLLING {
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }
    Ok(())
}

async fn segment_archived(
    repo: &Repository,
    segment: WalFileName,
    range: WalRange,
) -> Result<bool, BackupError> {
    let mut timelines = vec![range.stop_timeline];
    if range.start_timeline != range.stop_timeline {
        timelines.push(range.start_timeline);
    }
    for tli in timelines {
        let name = segment
            .on_timeline(tli)
            .map_err(|e| BackupError::Protocol(format!("WAL segment name: {e}")))?;
        if repo
            .exists(&layout::wal_key(&ArchiveFileName::Segment(name)))
            .await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}
