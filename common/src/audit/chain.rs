//! Appending to the chain, reading it back, and checking it.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::record::{AUDIT_PREFIX, AuditRecord, RECORD_LIMIT};
use crate::repo::{RepoError, Repository, is_damaged_record};
use crate::storage::{ObjectKey, Storage, StorageError};

/// One record as stored.
#[derive(Debug, Clone)]
pub struct ListedRecord {
    /// Its key.
    pub key: String,
    /// The sha256 (hex) of its content: the record's JSON as written, before the codec and
    /// encryption (in a plain repository, the bytes as stored). `None` when the record cannot
    /// be read (damaged or forged: `record` says why).
    pub sha256: Option<String>,
    /// The record, or why it does not parse.
    pub record: Result<AuditRecord, String>,
}

/// A break in the chain, naming the record involved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditProblem {
    /// The record removed, altered or unreadable.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys of the trail, oldest first.
async fn keys(repo: &Repository) -> Result<Vec<ObjectKey>, StorageError> {
    let mut keys: Vec<ObjectKey> = repo
        .storage()
        .list(AUDIT_PREFIX)
        .await?
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.as_str().ends_with(".json"))
        .collect();
    keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(keys)
}

/// Appends `record` to the trail: chains it to the newest record (its key and the sha256 of
/// its JSON) and stores it create-only ([`Repository::put_record`]: sealed in an encrypted
/// repository). Returns its key.
pub async fn append(repo: &Repository, mut record: AuditRecord) -> Result<ObjectKey, RepoError> {
    let all = keys(repo).await?;
    if let Some(previous) = all.last() {
        let bytes = repo.get_record(previous, RECORD_LIMIT).await?;
        record.previous_key = Some(previous.to_string());
        record.previous_sha256 = Some(sha256_hex(&bytes));
    }
    let json = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
    let mut attempts = 0;
    loop {
        let key = record.key(rand::random()).map_err(StorageError::from)?;
        match repo.put_record(&key, json.clone(), true).await {
            Ok(()) => return Ok(key),
            Err(RepoError::Storage(e)) if e.is_already_exists() && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Every record, oldest first. A record that is damaged, forged or sealed with a key nobody
/// holds is listed with the reason ([`is_damaged_record`]); a repository or key file that
/// cannot be read, or a walship without the key of an encrypted repository, is an error.
pub async fn list(repo: &Repository) -> Result<Vec<ListedRecord>, RepoError> {
    repo.check_keys().await?;
    let mut out = Vec::new();
    for key in keys(repo).await? {
        let listed = match repo.get_record(&key, RECORD_LIMIT).await {
            Ok(bytes) => ListedRecord {
                key: key.to_string(),
                sha256: Some(sha256_hex(&bytes)),
                record: serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            },
            Err(e) if is_damaged_record(&e) => ListedRecord {
                key: key.to_string(),
                sha256: None,
                record: Err(e.to_string()),
            },
            Err(e) => return Err(e),
        };
        out.push(listed);
    }
    Ok(out)
}

/// The newest record of `operation` with result `ok` (its key names the operation, so only
/// that record is read, not the whole trail): when `walship verify` last found the
/// repository sound, for `status` and the metrics.
pub async fn newest_success(
    repo: &Repository,
    operation: &str,
) -> Result<Option<AuditRecord>, RepoError> {
    repo.check_keys().await?;
    let infix = format!("-{operation}-");
    for key in keys(repo).await?.iter().rev() {
        let name = key.as_str().rsplit('/').next().unwrap_or_default();
        if !name.contains(&infix) {
            continue;
        }
        let bytes = repo.get_record(key, RECORD_LIMIT).await?;
        if let Ok(record) = serde_json::from_slice::<AuditRecord>(&bytes)
            && record.operation == operation
            && record.exit_code == 0
        {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Checks the chain of `records` (oldest first, as [`list`] returns them): each record's
/// `previous_key` exists and its JSON still hashes to `previous_sha256`; only the oldest
/// record starts a chain; every record reads and parses (in an encrypted repository a record
/// altered, renamed or swapped with another fails its authentication and is named here).
/// Returns every problem, naming the record.
pub fn verify(records: &[ListedRecord]) -> Vec<AuditProblem> {
    let mut problems = Vec::new();
    let by_key: std::collections::HashMap<&str, &ListedRecord> =
        records.iter().map(|r| (r.key.as_str(), r)).collect();
    for (i, listed) in records.iter().enumerate() {
        let record = match &listed.record {
            Ok(r) => r,
            Err(e) => {
                problems.push(AuditProblem {
                    key: listed.key.clone(),
                    message: format!("is not a valid audit record (altered?): {e}"),
                });
                continue;
            }
        };
        match (&record.previous_key, &record.previous_sha256) {
            (None, _) if i > 0 => problems.push(AuditProblem {
                key: listed.key.clone(),
                message: format!(
                    "names no previous record although {} older records exist (inserted, or the chain was cut)",
                    i
                ),
            }),
            (None, _) => {}
            (Some(previous), sha) => match by_key.get(previous.as_str()) {
                None => problems.push(AuditProblem {
                    key: previous.clone(),
                    message: format!("was removed (record {} chains to it)", listed.key),
                }),
                // Unreadable: already named as such above.
                Some(found) if found.sha256.is_none() => {}
                Some(found) if found.sha256.as_ref() != sha.as_ref() => {
                    problems.push(AuditProblem {
                        key: previous.clone(),
                        message: format!(
                            "was altered: its sha256 is {}, record {} recorded {}",
                            found.sha256.as_deref().unwrap_or("none"),
                            listed.key,
                            sha.as_deref().unwrap_or("none")
                        ),
                    })
                }
                Some(_) if previous.as_str() >= listed.key.as_str() => {
                    problems.push(AuditProblem {
                        key: listed.key.clone(),
                        message: format!("chains to a later record {previous}"),
                    })
                }
                Some(_) => {}
            },
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three records chained as `append` chains them.
    fn chain() -> Vec<ListedRecord> {
        let mut out: Vec<ListedRecord> = Vec::new();
        for (i, op) in ["backup", "restore", "drill"].iter().enumerate() {
            let mut record = AuditRecord::now(op, vec![], 0, Default::default());
            record.time += chrono::Duration::seconds(i as i64);
            if let Some(prev) = out.last() {
                record.previous_key = Some(prev.key.clone());
                record.previous_sha256 = prev.sha256.clone();
            }
            let bytes = serde_json::to_vec_pretty(&record).unwrap();
            out.push(ListedRecord {
                key: record.key(7).unwrap().to_string(),
                sha256: Some(sha256_hex(&bytes)),
                record: Ok(record),
            });
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain()), vec![]);
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut records = chain();
        let gone = records.remove(1);
        let problems = verify(&records);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, gone.key);
        assert!(problems[0].message.contains("removed"));
    }

    #[test]
    fn an_altered_record_is_named() {
        let mut records = chain();
        records[0].sha256 = Some(sha256_hex(b"edited"));
        let problems = verify(&records);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, records[0].key);
        assert!(problems[0].message.contains("altered"));
    }

    #[test]
    fn an_unreadable_record_is_named_once() {
        let mut records = chain();
        records[1].sha256 = None;
        records[1].record = Err("object audit/x is corrupt: decrypt chunk 0".into());
        let problems = verify(&records);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, records[1].key);
        assert!(problems[0].message.contains("decrypt"));
    }
}
