//! Reachability: read the WAL itself from a backup's start along the target timeline, as
//! recovery will, to find the record where recovery stops and the true recovery point.
//!
//! Segments are fetched a few at a time ahead of the reader (bounded memory: at most
//! [`READ_AHEAD`] segments in flight), each verified (codec crc32c, page headers of the exact
//! segment and cluster) before a record is read from it; the records themselves are checked
//! by `common::pg::WalReader` (CRC-32C, `xl_prev` chain). Postgres 13+ fails with "recovery
//! ended before configured recovery target was reached" after replaying everything when a
//! target is not in the WAL; this scan says so before any data moves.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use walship_common::Lsn;
use walship_common::pg::segment_check;
use walship_common::pg::{
    ArchiveFileName, RecordKind, SegNo, TimelineHistory, WalFileName, WalReader, WalRecord,
    WalSegSize,
};
use walship_common::repo::{Repository, layout, limits, partial};

use crate::error::RestoreError;
use crate::target::{RecoveryTarget, TargetSpec};
use crate::timeline::ArchiveListing;

/// Segments fetched ahead of the reader.
pub const READ_AHEAD: usize = 8;

/// A record recovery stops at (or a commit the archive holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalPoint {
    /// Where the record starts.
    pub lsn: Lsn,
    /// Its commit, abort or restore-point time, when it has one.
    pub time: Option<DateTime<Utc>>,
    /// Its transaction id, when it has one.
    pub xid: Option<u32>,
}

/// What reading the archive found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// The first record matching the target (see [`matches`]), if any.
    pub target_record: Option<WalPoint>,
    /// The last commit or abort the archive holds: the true recovery point.
    pub last_commit: Option<WalPoint>,
    /// Where valid WAL ends along the path.
    pub wal_end: Lsn,
    /// Why reading stopped there.
    pub end_reason: String,
    /// The segment reading needed and the archive does not have (the end of the archive, or
    /// a gap when later segments exist).
    pub missing: Option<String>,
    /// A segment that is not what its name says (another cluster's, or damaged).
    pub bad_segment: Option<(String, String)>,
    /// Segments read.
    pub segments_read: u64,
}

/// Whether recovery towards `target` stops at `record` (`recoveryStopsBefore` /
/// `recoveryStopsAfter` in `xlogrecovery.c`).
pub fn matches(target: &RecoveryTarget, exclusive: bool, record: &WalRecord) -> bool {
    match (target, &record.kind) {
        (
            RecoveryTarget::Time(t),
            RecordKind::Commit { time, .. } | RecordKind::Abort { time, .. },
        ) => {
            let Some(at) = time.to_utc() else {
                return false;
            };
            if exclusive { at >= t.time } else { at > t.time }
        }
        (RecoveryTarget::Lsn(lsn), _) => record.lsn >= *lsn,
        (
            RecoveryTarget::Xid(want),
            RecordKind::Commit { xid, .. } | RecordKind::Abort { xid, .. },
        ) => u64::from(*xid) == (*want & 0xFFFF_FFFF),
        (RecoveryTarget::Name(want), RecordKind::RestorePoint { name, .. }) => name == want,
        _ => false,
    }
}

fn point(record: &WalRecord) -> WalPoint {
    let (time, xid) = match &record.kind {
        RecordKind::Commit { xid, time, .. } | RecordKind::Abort { xid, time, .. } => {
            (time.to_utc(), Some(*xid))
        }
        RecordKind::RestorePoint { time, .. } => (time.to_utc(), None),
        _ => (None, None),
    };
    WalPoint {
        lsn: record.lsn,
        time,
        xid,
    }
}

/// One segment as the fetcher delivers it to the reader.
enum Fetched {
    Segment(SegNo, Vec<u8>),
    Missing(SegNo, String),
    Bad(SegNo, String, String),
}

/// Why the reader's loader stopped.
enum LoadStop {
    Repo(RestoreError),
    Bad(String, String),
}

/// Reads WAL from the segment holding `start` along `history` until valid WAL ends, and
/// reports the first record matching `spec`'s target and the last commit.
pub async fn scan(
    repo: &Repository,
    listing: &ArchiveListing,
    history: &TimelineHistory,
    seg_size: WalSegSize,
    system_identifier: u64,
    start: Lsn,
    spec: &TargetSpec,
) -> Result<ScanReport, RestoreError> {
    let exclusive = spec.exclusive;
    // `walship fetch` delivers a `.partial` only with --allow-partial, which restore writes
    // into restore_command for `--target latest` alone: read them only then.
    let allow_partial = matches!(spec.target, RecoveryTarget::Latest);
    let first = start.segno(seg_size);
    let last = listing
        .last_on_path(history, seg_size, allow_partial)
        .unwrap_or(first);
    let plan: Vec<(SegNo, Option<ArchiveFileName>, WalFileName)> = segnos(first, last, seg_size)
        .filter_map(|segno| {
            let tli = history.timeline_of_segment(segno, seg_size);
            let wal = WalFileName::new(tli, segno, seg_size).ok()?;
            let name = if listing.has(&wal) {
                Some(ArchiveFileName::Segment(wal))
            } else if allow_partial && listing.partials.contains_key(&(tli, segno)) {
                Some(ArchiveFileName::Partial(wal))
            } else {
                None
            };
            Some((segno, name, wal))
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Fetched, RestoreError>>(1);
    let repo_for_fetch = repo.clone();
    let fetcher = tokio::spawn(async move {
        let mut stream = futures::stream::iter(plan)
            .map(|(segno, name, wal)| {
                let repo = repo_for_fetch.clone();
                async move { fetch_segment(&repo, segno, name, wal, system_identifier).await }
            })
            .buffered(READ_AHEAD);
        while let Some(item) = stream.next().await {
            let stop = !matches!(item, Ok(Fetched::Segment(..)));
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let target = spec.target.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut report = ScanReport::default();
        let mut stop: Option<LoadStop> = None;
        let mut segments_read = 0u64;
        let mut missing: Option<String> = None;
        let loader = |segno: SegNo| -> Result<Option<Vec<u8>>, ()> {
            loop {
                match rx.blocking_recv() {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        stop = Some(LoadStop::Repo(e));
                        return Err(());
                    }
                    Some(Ok(Fetched::Segment(s, bytes))) if s == segno => {
                        segments_read += 1;
                        return Ok(Some(bytes));
                    }
                    Some(Ok(Fetched::Missing(s, name))) if s == segno => {
                        missing = Some(name);
                        return Ok(None);
                    }
                    Some(Ok(Fetched::Bad(s, name, why))) if s == segno => {
                        stop = Some(LoadStop::Bad(name, why));
                        return Err(());
                    }
                    Some(Ok(_)) => continue,
                }
            }
        };
        let mut reader = WalReader::new(start_of(first, seg_size), seg_size, loader);
        for record in reader.by_ref() {
            let Ok(record) = record else { break };
            report.wal_end = record.end;
            if report.target_record.is_none() && matches(&target, exclusive, &record) {
                report.target_record = Some(point(&record));
            }
            if matches!(
                record.kind,
                RecordKind::Commit { .. } | RecordKind::Abort { .. }
            ) {
                report.last_commit = Some(point(&record));
            }
        }
        if let Some(end) = reader.end() {
            report.wal_end = end.at;
            report.end_reason = format!("{:?}", end.reason);
        }
        drop(reader);
        report.segments_read = segments_read;
        report.missing = missing;
        match stop {
            Some(LoadStop::Repo(e)) => Err(e),
            Some(LoadStop::Bad(name, why)) => {
                report.bad_segment = Some((name, why));
                Ok(report)
            }
            None => Ok(report),
        }
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    fetcher.abort();
    report
}

fn start_of(segno: SegNo, seg_size: WalSegSize) -> Lsn {
    segno.start_lsn(seg_size)
}

fn segnos(first: SegNo, last: SegNo, seg_size: WalSegSize) -> impl Iterator<Item = SegNo> {
    let mut next = Some(first);
    std::iter::from_fn(move || {
        let current = next.filter(|s| *s <= last)?;
        next = current.next(seg_size);
        Some(current)
    })
}

/// Fetches and verifies one segment (a `.partial` is zero-padded to a full segment).
async fn fetch_segment(
    repo: &Repository,
    segno: SegNo,
    name: Option<ArchiveFileName>,
    wal: WalFileName,
    system_identifier: u64,
) -> Result<Fetched, RestoreError> {
    let Some(name) = name else {
        return Ok(Fetched::Missing(segno, wal.to_string()));
    };
    let limit = limits::wal_content_limit(&name);
    let content = match name {
        // Base `.partial` plus the stream's contiguous tail pieces, as `fetch --allow-partial`
        // delivers them.
        ArchiveFileName::Partial(_) => match partial::read_partial(repo, wal).await? {
            Some(found) if !found.content.is_empty() => found.content,
            _ => return Ok(Fetched::Missing(segno, name.to_string())),
        },
        _ => match repo.get_content(&layout::wal_key(&name), limit).await {
            Ok(content) => content,
            Err(e) if e.is_not_found() => return Ok(Fetched::Missing(segno, name.to_string())),
            Err(e) => return Err(e.into()),
        },
    };
    let seg_bytes = wal.seg_size().as_u64() as usize;
    // The first page says whose segment this is (address, timeline, system identifier);
    // the reader checks every page it reads after that, as recovery does.
    tokio::task::spawn_blocking(move || {
        let mut bytes = content.to_vec();
        let checked = match name {
            ArchiveFileName::Partial(_) if bytes.len() <= seg_bytes => {
                bytes.resize(seg_bytes, 0);
                Ok(())
            }
            _ if bytes.len() != seg_bytes => {
                Err(format!("{} bytes, expected {seg_bytes}", bytes.len()))
            }
            _ => Ok(()),
        }
        .and_then(|()| {
            segment_check::validate_first_page(&bytes, wal, Some(system_identifier))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match checked {
            Ok(()) => Fetched::Segment(segno, bytes),
            Err(why) => Fetched::Bad(segno, name.to_string(), why),
        }
    })
    .await
    .map_err(|e| std::panic::resume_unwind(e.into_panic()))
}
