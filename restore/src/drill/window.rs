//! The moments a drill measures against: a random moment of the PITR window (the oldest
//! complete backup's consistency point to the newest commit the archive holds, read by
//! [`crate::window`], as `walship status` reads it) for `--target random`, and the time the
//! archive last received WAL (the reference of the RPO).

use chrono::{DateTime, Utc};
use rand::Rng;
use walship_common::repo::{Repository, layout};
use walship_common::storage::Storage;

use super::DrillError;
use crate::RestoreError;

/// A uniformly random moment of the PITR window, from the oldest complete backup's stop
/// time (the moment a time target may name, as the plan sees it) to just before the newest
/// commit the archive holds (the plan needs a commit after a time target).
pub async fn random_moment(repo: &Repository) -> Result<DateTime<Utc>, DrillError> {
    let (start, end) = pitr_window(repo).await?;
    let span = (end - start).num_microseconds().unwrap_or(0);
    if span <= 0 {
        return Err(DrillError::NoWindow(format!(
            "the PITR window is empty (oldest backup consistent at {start}, newest commit at {end})"
        )));
    }
    let offset = rand::rng().random_range(0..span);
    Ok(start + chrono::Duration::microseconds(offset))
}

/// The window [`random_moment`] picks from ([`crate::window::walk`]), ending just before the
/// newest commit.
async fn pitr_window(repo: &Repository) -> Result<(DateTime<Utc>, DateTime<Utc>), DrillError> {
    let walk = crate::window::walk(repo).await?;
    let window = walk
        .window
        .ok_or_else(|| DrillError::NoWindow("the repository holds no complete backup".into()))?;
    let newest = window.latest.ok_or_else(|| {
        DrillError::NoWindow("the archive holds no commit after the newest backup".into())
    })?;
    Ok((window.earliest, newest - chrono::Duration::microseconds(1)))
}

/// When the archive last received WAL: the newest modification time under `wal/`.
pub async fn newest_wal_time(repo: &Repository) -> Result<Option<DateTime<Utc>>, RestoreError> {
    let objects = repo.storage().list(layout::WAL_PREFIX).await?;
    Ok(objects
        .iter()
        .filter_map(|m| m.last_modified)
        .max()
        .map(DateTime::<Utc>::from))
}
