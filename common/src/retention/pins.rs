//! Pins: `walship pin ID [--reason TEXT]` and `walship unpin ID`.
//!
//! Nothing that exists is rewritten (the repository must work under Object Lock), so a pin is
//! not a flag in the manifest but a numbered, create-only record beside it:
//! `backups/<id>/pins/00000001.json`, `00000002.json`, ... each saying `pin` or `unpin`. The
//! record with the highest number decides. Two people pinning at once both write a record:
//! the create-only put makes one take the next number (`docs/FORMAT.md`, "Pins").

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::backup::{BackupError, read_manifest};
use crate::catalog::BackupId;
use crate::repo::{RepoError, Repository, is_damaged_record, layout, limits};
use crate::storage::{ObjectKey, Storage};

/// The pin record format this build writes and reads.
pub const PIN_FORMAT_VERSION: u32 = 1;

/// What a pin record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinAction {
    /// The backup is pinned from this record on.
    Pin,
    /// The backup is no longer pinned from this record on.
    Unpin,
}

/// One pin record (`backups/<id>/pins/<seq>.json`: JSON, sealed in an encrypted repository).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinRecord {
    /// [`PIN_FORMAT_VERSION`].
    pub format_version: u32,
    /// Pin or unpin.
    pub action: PinAction,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Why, as the operator said.
    pub reason: Option<String>,
}

/// Why a pin or unpin did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The backup does not exist or its manifest is unreadable.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A pin record cannot be understood.
    #[error("pin record {key} is unreadable: {message}")]
    BadRecord {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The pin state of a backup from its records, `(seq, record)` in any order: the record with
/// the highest number, if it is a pin.
pub fn current_pin(records: &[(u32, PinRecord)]) -> Option<&PinRecord> {
    records
        .iter()
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, r)| r)
        .filter(|r| r.action == PinAction::Pin)
}

/// Reads the pin records among `keys` (a backup's listing). A damaged or forged record (in
/// an encrypted repository: one that does not open, or a plain one) is
/// [`PinError::BadRecord`] naming it, so that `verify` reports it and `expire` stops.
pub async fn read_pin_records(
    repo: &Repository,
    keys: &[ObjectKey],
) -> Result<Vec<(u32, PinRecord)>, PinError> {
    let mut out = Vec::new();
    for key in keys {
        let Some(seq) = layout::pin_seq_of(key) else {
            continue;
        };
        let bytes = match repo.get_record(key, limits::PIN_RECORD_MAX).await {
            Ok(bytes) => bytes,
            Err(e) if is_damaged_record(&e) => {
                return Err(PinError::BadRecord {
                    key: key.to_string(),
                    message: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let record: PinRecord =
            serde_json::from_slice(&bytes).map_err(|e| PinError::BadRecord {
                key: key.to_string(),
                message: e.to_string(),
            })?;
        if record.format_version != PIN_FORMAT_VERSION {
            return Err(PinError::BadRecord {
                key: key.to_string(),
                message: format!(
                    "format_version {} is not {PIN_FORMAT_VERSION}",
                    record.format_version
                ),
            });
        }
        out.push((seq, record));
    }
    Ok(out)
}

/// Writes a pin (or unpin) record for backup `id`, which must exist. Returns the record and
/// whether it changed anything (pinning a pinned backup writes nothing).
pub async fn set_pin(
    repo: &Repository,
    id: BackupId,
    action: PinAction,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<(PinRecord, bool), PinError> {
    read_manifest(repo, id).await?;
    loop {
        let keys: Vec<ObjectKey> = repo
            .storage()
            .list(&layout::pins_prefix(id))
            .await
            .map_err(RepoError::from)?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let records = read_pin_records(repo, &keys).await?;
        let pinned = current_pin(&records).is_some();
        if pinned == (action == PinAction::Pin) {
            let current = records
                .iter()
                .max_by_key(|(s, _)| *s)
                .map(|(_, r)| r.clone());
            let record = current.unwrap_or(PinRecord {
                format_version: PIN_FORMAT_VERSION,
                action,
                at: now,
                reason: None,
            });
            return Ok((record, false));
        }
        let seq = records.iter().map(|(s, _)| *s).max().unwrap_or(0) + 1;
        let record = PinRecord {
            format_version: PIN_FORMAT_VERSION,
            action,
            at: now,
            reason: reason.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| PinError::BadRecord {
            key: layout::pin_key(id, seq).to_string(),
            message: e.to_string(),
        })?;
        match repo
            .put_record(&layout::pin_key(id, seq), Bytes::from(json), true)
            .await
        {
            Ok(()) => return Ok((record, true)),
            // Someone else wrote this number meanwhile: read again and decide again.
            Err(RepoError::Storage(e)) if e.is_already_exists() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_record_decides() {
        let rec = |action| PinRecord {
            format_version: 1,
            action,
            at: Utc::now(),
            reason: None,
        };
        assert!(current_pin(&[]).is_none());
        assert!(current_pin(&[(2, rec(PinAction::Unpin)), (1, rec(PinAction::Pin))]).is_none());
        assert!(current_pin(&[(3, rec(PinAction::Pin)), (2, rec(PinAction::Unpin))]).is_some());
    }
}
