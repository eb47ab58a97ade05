//! Where streaming starts: the physical slot is created if missing, then the start is the
//! later of what the slot still holds (`READ_REPLICATION_SLOT`, PG15+) and what the repository
//! already has (the segment after its last complete one on the timeline), never past the
//! server's own position (`IDENTIFY_SYSTEM`); with neither, the segment the server is writing.
//! Streaming always starts at a segment boundary, so every segment is assembled whole.

use crate::lsn::Lsn;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::segment::WalSegSize;
use crate::pg::timeline::TimelineId;
use crate::pgconn::{ReplicationClient, SystemIdentity};
use crate::repo::{Repository, layout};
use crate::storage::Storage;

use super::error::StreamError;

/// SQLSTATE `duplicate_object`: CREATE_REPLICATION_SLOT of a slot that exists.
const DUPLICATE_OBJECT: &str = "42710";

/// Where to send START_REPLICATION, and why there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPoint {
    /// The timeline to stream.
    pub timeline: TimelineId,
    /// A segment boundary.
    pub lsn: Lsn,
    /// What decided it.
    pub reason: StartReason,
}

/// What decided the start point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    /// The slot's restart position (the repository has nothing later).
    Slot,
    /// The segment after the repository's last complete segment.
    Repository(WalFileName),
    /// Neither slot nor repository said: the segment the server is writing.
    ServerPosition,
    /// Where this process was when its connection broke.
    Resume,
}

/// Creates the physical slot `slot` reserving WAL, unless it exists. True when created.
pub async fn ensure_slot(client: &mut ReplicationClient, slot: &str) -> Result<bool, StreamError> {
    match client.create_physical_replication_slot(slot, true).await {
        Ok(_) => Ok(true),
        Err(e) if e.sqlstate() == Some(DUPLICATE_OBJECT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The last complete segment of `timeline` in the repository.
pub async fn last_complete_segment(
    repo: &Repository,
    timeline: TimelineId,
    seg_size: WalSegSize,
) -> Result<Option<WalFileName>, StreamError> {
    let prefix = format!("{}{:08X}", layout::WAL_PREFIX, timeline.0);
    let objects = repo.storage().list(&prefix).await?;
    Ok(objects
        .iter()
        .filter_map(|meta| {
            let file = meta.key.as_str().rsplit('/').next()?;
            match ArchiveFileName::parse(file, seg_size).ok()? {
                ArchiveFileName::Segment(wal) if wal.timeline() == timeline => Some(wal),
                _ => None,
            }
        })
        .max())
}

/// Decides where to start on a fresh connection (the slot exists already).
pub async fn decide(
    client: &mut ReplicationClient,
    repo: &Repository,
    slot: &str,
    system: &SystemIdentity,
    seg_size: WalSegSize,
) -> Result<StartPoint, StreamError> {
    let server_seg = segment_start(system.xlogpos, seg_size);
    let slot_start = if client.server_major() >= 15 {
        let info = client.read_replication_slot(slot).await?;
        info.restart_lsn.map(|lsn| {
            (
                info.restart_tli.unwrap_or(system.timeline),
                segment_start(lsn, seg_size),
            )
        })
    } else {
        None
    };
    let timeline = slot_start.map_or(system.timeline, |(tli, _)| tli);
    let repo_next = last_complete_segment(repo, timeline, seg_size)
        .await?
        .and_then(|last| Some((last, last.next()?.start_lsn())))
        .filter(|(_, next)| *next <= server_seg);
    let start = match (slot_start, repo_next) {
        (Some((_, slot_lsn)), Some((last, next))) if next > slot_lsn => StartPoint {
            timeline,
            lsn: next,
            reason: StartReason::Repository(last),
        },
        (Some((_, slot_lsn)), repo) => {
            if let Some((last, next)) = repo
                && next < slot_lsn
            {
                tracing::error!(
                    "the repository's last segment on timeline {} is {last}, but slot {slot} holds WAL only from {slot_lsn}: the segments between are missing unless walship archive stored them",
                    timeline.0
                );
            }
            StartPoint {
                timeline,
                lsn: slot_lsn,
                reason: StartReason::Slot,
            }
        }
        (None, Some((last, next))) => StartPoint {
            timeline,
            lsn: next,
            reason: StartReason::Repository(last),
        },
        (None, None) => StartPoint {
            timeline: system.timeline,
            lsn: server_seg,
            reason: StartReason::ServerPosition,
        },
    };
    Ok(start)
}

/// The first LSN of the segment holding `lsn`.
pub fn segment_start(lsn: Lsn, seg_size: WalSegSize) -> Lsn {
    Lsn(lsn.0 - lsn.0 % seg_size.as_u64())
}
