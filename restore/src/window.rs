//! The PITR window: from the oldest complete backup's consistency point to the newest commit
//! the archive holds along the newest timeline (found by the plan of a restore to `latest`,
//! whose WAL scan reads the last commit). One walk, shared by `walship status` (which shows
//! the window, and the plan's gaps and problems) and the drill's `--target random` (which
//! picks a moment inside it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use walship_common::catalog::BackupManifest;
use walship_common::pg::TimelineId;
use walship_common::repo::Repository;

use crate::RestoreError;
use crate::plan::{self, PlanRequest, RestorePlan};
use crate::target::{RecoveryTarget, TargetSpec, TimelineChoice};

/// The PITR window along the newest timeline.
#[derive(Debug, Clone, Serialize)]
pub struct PitrWindow {
    /// The timeline.
    pub timeline: TimelineId,
    /// The earliest recoverable moment: the oldest complete backup became consistent.
    pub earliest: DateTime<Utc>,
    /// The latest: the newest commit the archive holds (`None`: no commit after the newest
    /// backup; its consistency point is then the latest).
    pub latest: Option<DateTime<Utc>>,
    /// `latest - earliest`, in seconds.
    pub seconds: f64,
}

/// What the walk read: the cluster's complete backups and the plan to `latest` the window
/// comes from.
#[derive(Debug, Clone)]
pub struct PitrWalk {
    /// The complete backups of the repository's cluster, oldest consistency point first.
    pub complete: Vec<BackupManifest>,
    /// The plan of a restore to `latest` along the newest timeline (gaps, problems, last
    /// commit).
    pub latest: RestorePlan,
    /// The window; `None` when the repository holds no complete backup of its cluster.
    pub window: Option<PitrWindow>,
}

/// Reads the catalog and plans a restore to `latest` (no LSN resolution, no placement
/// checks): read-only.
pub async fn walk(repo: &Repository) -> Result<PitrWalk, RestoreError> {
    let identity = repo.require_identity().await?;
    let catalog = walship_common::backup::read_catalog(repo).await?;
    let mut complete: Vec<BackupManifest> = catalog
        .complete
        .into_iter()
        .filter(|b| b.system_identifier == identity.system_identifier)
        .collect();
    complete.sort_by_key(|b| b.stop_time);
    let latest = plan::plan(
        repo,
        &PlanRequest {
            spec: TargetSpec {
                target: RecoveryTarget::Latest,
                timeline: TimelineChoice::Latest,
                exclusive: false,
                backup: None,
            },
            resolve_lsn: false,
            placement: None,
        },
    )
    .await?;
    let window = complete.first().map(|oldest| {
        let latest_commit = latest.last_commit.as_ref().and_then(|c| c.time);
        let end = latest_commit
            .or(complete.last().map(|b| b.stop_time))
            .unwrap_or(oldest.stop_time);
        PitrWindow {
            timeline: latest.target_timeline,
            earliest: oldest.stop_time,
            latest: latest_commit,
            seconds: (end - oldest.stop_time).num_milliseconds() as f64 / 1000.0,
        }
    });
    Ok(PitrWalk {
        complete,
        latest,
        window,
    })
}
