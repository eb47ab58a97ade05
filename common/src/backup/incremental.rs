//! `walship backup --incremental`: choosing the parent, and the checks that refuse an
//! incremental before anything is stored (PostgreSQL 17+ block-level incrementals:
//! `UPLOAD_MANIFEST` of the parent's `backup_manifest`, then `BASE_BACKUP (INCREMENTAL)` on
//! the same connection; see `reference/anchor-turn2.md` section 4).
//!
//! What this file decides: which backup is the parent (`--from`, or the newest complete one),
//! whether the chain is whole (every ancestor down to a full is complete), and whether the
//! chain is at `backup.max_chain` (then a full is taken instead, and the caller says so).
//! What the server decides (its WAL summaries, its timeline history) is reported by the
//! server with its message and hint.

use std::collections::BTreeMap;

use crate::catalog::{BackupId, BackupManifest};
use crate::pg::timeline::TimelineId;
use crate::pgconn::ReplicationClient;

use super::error::BackupError;
use super::listing::Catalog;

/// The first major with `UPLOAD_MANIFEST` and `BASE_BACKUP (INCREMENTAL)`.
pub const INCREMENTAL_MIN_MAJOR: u32 = 17;

/// What `--incremental` will take.
#[derive(Debug, Clone)]
pub enum IncrementalChoice {
    /// An incremental on top of `parent` (whose `backup_manifest` is uploaded).
    Incremental {
        /// The parent backup.
        parent: Box<BackupManifest>,
    },
    /// A full backup instead, and why (no backup yet, chain at `max_chain`).
    Full {
        /// Said to the operator.
        reason: String,
    },
}

/// Where an incremental sits: its parent and its depth (parent's + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    /// The parent backup's id.
    pub parent: BackupId,
    /// This backup's depth in the chain (1 for the first incremental after a full).
    pub depth: u32,
}

/// Chooses the parent of an incremental from the catalog: `from`, or the newest complete
/// backup. Refuses a `from` that is missing or incomplete, a parent without Postgres's
/// `backup_manifest` or older than 17, another cluster's, and a parent whose own chain has a
/// missing member. Past `max_chain` (or with no backup at all and no `from`) the answer is a
/// full.
pub fn choose_parent(
    catalog: &Catalog,
    from: Option<BackupId>,
    system_identifier: u64,
    server_timeline: TimelineId,
    max_chain: u32,
) -> Result<IncrementalChoice, BackupError> {
    let refuse = |message: String| BackupError::IncrementalRefused {
        message,
        hint: None,
    };
    let parent = match from {
        Some(id) => {
            if catalog.incomplete.iter().any(|b| b.id == id) {
                return Err(refuse(format!(
                    "parent backup {id} is incomplete (it has no manifest): it cannot be the parent of an incremental"
                )));
            }
            if let Some(u) = catalog.unreadable.iter().find(|b| b.id == id) {
                return Err(refuse(format!(
                    "parent backup {id} is unreadable: {}",
                    u.reason
                )));
            }
            catalog
                .complete
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| refuse(format!("parent backup {id} is not in the repository")))?
        }
        None => match catalog.complete.last() {
            Some(m) => m,
            None => {
                return Ok(IncrementalChoice::Full {
                    reason: "the repository has no complete backup to be the parent".into(),
                });
            }
        },
    };
    if parent.system_identifier != system_identifier {
        return Err(refuse(format!(
            "parent backup {} is of cluster {}, the server is cluster {system_identifier}",
            parent.id, parent.system_identifier
        )));
    }
    if parent.pg_major < INCREMENTAL_MIN_MAJOR {
        return Err(refuse(format!(
            "parent backup {} was taken from PostgreSQL {}; an incremental needs a parent taken from 17 or later",
            parent.id, parent.pg_major
        )));
    }
    if parent.pg_backup_manifest.is_none() {
        return Err(refuse(format!(
            "parent backup {} holds no PostgreSQL backup_manifest to upload",
            parent.id
        )));
    }
    let chain = chain_of(catalog, parent.id).map_err(refuse)?;
    debug_assert_eq!(chain.last().map(|m| m.id), Some(parent.id));
    // Across a timeline switch (a promotion since the parent), PostgreSQL's WAL summaries of
    // the old timeline may cover WAL that was never replayed (pgsql-hackers 2026, see
    // reference/anchor-turn2.md section 4): an incremental could miss blocks. Not tested to be
    // safe, so a full is taken instead.
    if parent.stop_timeline != server_timeline {
        return Ok(IncrementalChoice::Full {
            reason: format!(
                "parent backup {} ended on timeline {}, the server is on timeline {server_timeline} (a promotion since): incrementals across a timeline switch are not trusted",
                parent.id, parent.stop_timeline
            ),
        });
    }
    if parent.chain_depth + 1 > max_chain {
        return Ok(IncrementalChoice::Full {
            reason: format!(
                "the chain of {} is {} incrementals deep, backup.max_chain is {max_chain}",
                parent.id, parent.chain_depth
            ),
        });
    }
    Ok(IncrementalChoice::Incremental {
        parent: Box::new(parent.clone()),
    })
}

/// The chain ending at `newest`, full backup first. Err names the first member that is
/// missing, incomplete or unreadable, or a loop.
pub fn chain_of(catalog: &Catalog, newest: BackupId) -> Result<Vec<&BackupManifest>, String> {
    let by_id: BTreeMap<BackupId, &BackupManifest> =
        catalog.complete.iter().map(|m| (m.id, m)).collect();
    chain_in(&by_id, newest)
}

/// [`chain_of`] over an index of complete manifests.
pub fn chain_in<'a>(
    by_id: &BTreeMap<BackupId, &'a BackupManifest>,
    newest: BackupId,
) -> Result<Vec<&'a BackupManifest>, String> {
    let mut chain = Vec::new();
    let mut next = Some(newest);
    while let Some(id) = next {
        let Some(m) = by_id.get(&id) else {
            return Err(match chain.last() {
                Some(child) => {
                    let child: &&BackupManifest = child;
                    format!(
                        "backup {} needs its parent {id}, which is missing, incomplete or unreadable",
                        child.id
                    )
                }
                None => format!("backup {id} is missing, incomplete or unreadable"),
            });
        };
        if chain.len() > 10_000 {
            return Err(format!("the chain of backup {newest} does not end"));
        }
        next = m.parent;
        chain.push(*m);
    }
    chain.reverse();
    Ok(chain)
}

/// Checks the server can take an incremental: PostgreSQL 17 or later, `summarize_wal` on.
pub async fn check_server(client: &mut ReplicationClient) -> Result<(), BackupError> {
    if client.server_major() < INCREMENTAL_MIN_MAJOR {
        return Err(BackupError::IncrementalRefused {
            message: format!(
                "incremental backups need PostgreSQL 17 or later; take a full backup (the server is {})",
                client.server_major()
            ),
            hint: None,
        });
    }
    let summarize = client
        .show("summarize_wal")
        .await
        .map_err(|e| BackupError::Connection(Box::new(e)))?;
    if summarize != "on" {
        return Err(BackupError::IncrementalRefused {
            message: format!(
                "the server does not summarize its WAL (summarize_wal is {summarize}): it cannot take an incremental backup"
            ),
            hint: Some(
                "set summarize_wal = on (ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf()), then take a full backup: incrementals can build on backups taken after that".into(),
            ),
        });
    }
    Ok(())
}

/// Uploads the parent's `backup_manifest` on `client`, reporting a server refusal as one.
pub async fn upload_parent_manifest(
    client: &mut ReplicationClient,
    parent: &BackupManifest,
) -> Result<(), BackupError> {
    let Some(manifest) = &parent.pg_backup_manifest else {
        return Err(BackupError::IncrementalRefused {
            message: format!(
                "parent backup {} holds no PostgreSQL backup_manifest",
                parent.id
            ),
            hint: None,
        });
    };
    client
        .upload_manifest(manifest.as_bytes())
        .await
        .map_err(|e| {
            server_refusal(
                e,
                &format!("uploading the manifest of parent backup {}", parent.id),
            )
        })
}

/// A server error during an incremental (missing WAL summaries, a timeline the server does
/// not know) as a refusal with the server's message and hint; other errors as they are.
pub fn server_refusal(e: crate::pgconn::PgConnError, during: &str) -> BackupError {
    match e {
        crate::pgconn::PgConnError::Server { error, .. } => BackupError::IncrementalRefused {
            message: format!(
                "the server refused the incremental backup ({during}): {}{}",
                error.message,
                error
                    .detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            hint: error.hint.clone(),
        },
        other => BackupError::Connection(Box::new(other)),
    }
}

/// A backup error of an incremental, with a server refusal (its WAL summaries incomplete, a
/// timeline it does not know) turned into [`BackupError::IncrementalRefused`].
pub fn explain_refusal(e: BackupError) -> BackupError {
    match e {
        BackupError::Connection(inner) => match inner.downcast::<crate::pgconn::PgConnError>() {
            Ok(pg) if matches!(*pg, crate::pgconn::PgConnError::Server { .. }) => {
                server_refusal(*pg, "BASE_BACKUP INCREMENTAL")
            }
            Ok(pg) => BackupError::Connection(pg),
            Err(other) => BackupError::Connection(other),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::listing::IncompleteBackup;
    use crate::lsn::Lsn;

    fn manifest(id: &str, parent: Option<&str>, depth: u32, tli: u32) -> BackupManifest {
        let time = chrono::Utc::now();
        BackupManifest {
            format_version: if parent.is_some() { 2 } else { 1 },
            id: id.parse().unwrap(),
            label: String::new(),
            system_identifier: 7,
            pg_major: 17,
            pg_version_num: 170_000,
            wal_segment_size: 16 << 20,
            start_timeline: TimelineId(tli),
            stop_timeline: TimelineId(tli),
            start_lsn: Lsn(1),
            stop_lsn: Lsn(2),
            start_time: time,
            stop_time: time,
            duration_ms: 0,
            backup_label: String::new(),
            tablespace_map: None,
            tablespaces: Vec::new(),
            pg_backup_manifest: Some("{}".into()),
            bytes_raw: 0,
            bytes_stored: 0,
            walship_version: String::new(),
            bundles: Vec::new(),
            files: Vec::new(),
            parent: parent.map(|p| p.parse().unwrap()),
            chain_depth: depth,
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            complete: vec![
                manifest("20261201T000000Z", None, 0, 1),
                manifest("20261201T060000Z", Some("20261201T000000Z"), 1, 1),
                manifest("20261201T120000Z", Some("20261201T060000Z"), 2, 1),
                // Its parent is missing.
                manifest("20261201T180000Z", Some("20261201T170000Z"), 3, 1),
            ],
            unreadable: Vec::new(),
            incomplete: vec![IncompleteBackup {
                id: "20261201T200000Z".parse().unwrap(),
                objects: 1,
                bytes: 1,
                newest: None,
                keys: Vec::new(),
            }],
        }
    }

    fn choose(from: Option<&str>, tli: u32, max: u32) -> Result<IncrementalChoice, BackupError> {
        choose_parent(
            &catalog(),
            from.map(|f| f.parse().unwrap()),
            7,
            TimelineId(tli),
            max,
        )
    }

    #[test]
    fn parent_choice_and_refusals() {
        let parent_of = |c: Result<IncrementalChoice, BackupError>| match c {
            Ok(IncrementalChoice::Incremental { parent }) => Ok(parent.id.to_string()),
            Ok(IncrementalChoice::Full { reason }) => Err(format!("full: {reason}")),
            Err(e) => Err(format!("refused: {e}")),
        };
        assert_eq!(
            parent_of(choose(Some("20261201T120000Z"), 1, 6)).unwrap(),
            "20261201T120000Z"
        );
        // The newest complete backup's chain is broken: refused, naming the missing parent.
        let e = parent_of(choose(None, 1, 6)).unwrap_err();
        assert!(
            e.contains("refused") && e.contains("20261201T170000Z"),
            "{e}"
        );
        let e = parent_of(choose(Some("20261201T200000Z"), 1, 6)).unwrap_err();
        assert!(e.contains("incomplete"), "{e}");
        let e = parent_of(choose(Some("20261130T000000Z"), 1, 6)).unwrap_err();
        assert!(e.contains("not in the repository"), "{e}");
        // At max_chain: a full.
        let e = parent_of(choose(Some("20261201T120000Z"), 1, 2)).unwrap_err();
        assert!(
            e.starts_with("full:") && e.contains("max_chain is 2"),
            "{e}"
        );
        // A promotion since the parent: a full.
        let e = parent_of(choose(Some("20261201T060000Z"), 2, 6)).unwrap_err();
        assert!(e.starts_with("full:") && e.contains("timeline"), "{e}");
        // Another cluster's server.
        let other = choose_parent(
            &catalog(),
            Some("20261201T000000Z".parse().unwrap()),
            8,
            TimelineId(1),
            6,
        );
        assert!(matches!(other, Err(BackupError::IncrementalRefused { .. })));
    }
}
