//! The repository's state on one screen (`walship status`): the oldest and newest complete
//! backups, the PITR window along the newest timeline ([`crate::window`]: from the oldest
//! backup to the newest commit the archive holds, found by the restore plan's WAL scan), the WAL per
//! timeline, the newest archived WAL and its age (the RPO right now), gaps, the size of
//! everything, and the last drill.
//!
//! Read-only: one listing of the whole repository, the catalog, the plan of a restore to
//! `latest`, the newest drill report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use walship_common::pg::{ArchiveFileName, TimelineId, WalSegSize};
use walship_common::repo::{Repository, layout};
use walship_common::storage::Storage;

use crate::RestoreError;
use crate::drill::report::{self, DrillReport};
pub use crate::window::PitrWindow;

/// One backup, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct BackupBrief {
    /// Its id.
    pub id: String,
    /// When it became consistent.
    pub stop_time: DateTime<Utc>,
    /// Timeline it ended on.
    pub timeline: TimelineId,
    /// Stored bytes.
    pub bytes_stored: u64,
}

/// The WAL of one timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineWal {
    /// The timeline.
    pub timeline: TimelineId,
    /// Its first and last archived segments.
    pub first: String,
    /// Its last archived segment.
    pub last: String,
    /// Complete segments archived.
    pub segments: u64,
}

/// What `walship status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    /// The repository.
    pub repository: String,
    /// Its cluster.
    pub system_identifier: String,
    /// Its major version.
    pub pg_major: u32,
    /// Complete backups of this cluster.
    pub backups: usize,
    /// The oldest complete backup.
    pub oldest_backup: Option<BackupBrief>,
    /// The newest complete backup.
    pub newest_backup: Option<BackupBrief>,
    /// Seconds since the newest backup became consistent.
    pub backup_age_seconds: Option<f64>,
    /// WAL per timeline.
    pub timelines: Vec<TimelineWal>,
    /// The newest archived WAL object (segment or partial).
    pub newest_wal: Option<String>,
    /// When it was written.
    pub newest_wal_time: Option<DateTime<Utc>>,
    /// Seconds since then: the RPO if the primary were lost now.
    pub wal_age_seconds: Option<f64>,
    /// The PITR window.
    pub pitr_window: Option<PitrWindow>,
    /// Segments missing between the newest backup's start and the newest segment.
    pub gaps: Vec<String>,
    /// Why a restore to `latest` would be refused now.
    pub problems: Vec<String>,
    /// Bytes stored, all objects.
    pub repository_bytes: u64,
    /// WAL bytes stored.
    pub wal_bytes: u64,
    /// The newest drill report.
    pub last_drill: Option<DrillReport>,
    /// When `walship verify` last found the repository sound (its audit record's time).
    pub last_verify: Option<DateTime<Utc>>,
}

/// Reads the repository's state as of `now`.
pub async fn status(repo: &Repository, now: DateTime<Utc>) -> Result<RepoStatus, RestoreError> {
    let identity = repo.require_identity().await?;
    let seg_size = WalSegSize::new(u64::from(identity.wal_segment_size)).map_err(|e| {
        RestoreError::BadManifest {
            backup: "walship.json".to_string(),
            message: e.to_string(),
        }
    })?;
    let objects = repo.storage().list("").await?;
    let repository_bytes = objects.iter().map(|m| m.size).sum();
    let mut wal_bytes = 0;
    let mut per_timeline: BTreeMap<TimelineId, (String, String, u64)> = BTreeMap::new();
    let mut newest: Option<(DateTime<Utc>, String)> = None;
    for meta in &objects {
        let Some(name) = meta.key.as_str().strip_prefix(layout::WAL_PREFIX) else {
            continue;
        };
        wal_bytes += meta.size;
        let file = meta.key.file_name();
        let parsed = ArchiveFileName::parse(file, seg_size);
        if let Ok(ArchiveFileName::Segment(w)) = &parsed {
            let text = w.to_string();
            let entry = per_timeline
                .entry(w.timeline())
                .or_insert_with(|| (text.clone(), text.clone(), 0));
            entry.0 = entry.0.clone().min(text.clone());
            entry.1 = entry.1.clone().max(text);
            entry.2 += 1;
        }
        if matches!(
            parsed,
            Ok(ArchiveFileName::Segment(_) | ArchiveFileName::Partial(_))
        ) && let Some(t) = meta.last_modified.map(DateTime::<Utc>::from)
            && newest.as_ref().is_none_or(|(n, _)| t > *n)
        {
            newest = Some((t, name.to_string()));
        }
    }
    let walk = crate::window::walk(repo).await?;
    let complete = &walk.complete;
    let latest = &walk.latest;
    let brief = |b: &walship_common::catalog::BackupManifest| BackupBrief {
        id: b.id.to_string(),
        stop_time: b.stop_time,
        timeline: b.stop_timeline,
        bytes_stored: b.bytes_stored,
    };
    let age = |t: DateTime<Utc>| (now - t).num_milliseconds() as f64 / 1000.0;
    Ok(RepoStatus {
        repository: repo.location().to_string(),
        system_identifier: identity.system_identifier.to_string(),
        pg_major: identity.pg_major,
        backups: complete.len(),
        oldest_backup: complete.first().map(&brief),
        newest_backup: complete.last().map(brief),
        backup_age_seconds: complete.last().map(|b| age(b.stop_time)),
        timelines: per_timeline
            .into_iter()
            .map(|(timeline, (first, last, segments))| TimelineWal {
                timeline,
                first,
                last,
                segments,
            })
            .collect(),
        newest_wal_time: newest.as_ref().map(|(t, _)| *t),
        wal_age_seconds: newest.as_ref().map(|(t, _)| age(*t)),
        newest_wal: newest.map(|(_, n)| n),
        pitr_window: walk.window.clone(),
        gaps: latest.missing_segments.clone(),
        problems: latest.problems.iter().map(|p| p.message.clone()).collect(),
        repository_bytes,
        wal_bytes,
        last_drill: report::newest(repo).await?,
        last_verify: walship_common::audit::newest_success(repo, "verify")
            .await?
            .map(|r| r.time),
    })
}
