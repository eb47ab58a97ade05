//! What `list` and `info` show about retention: each backup's pin and the rules of the
//! configured policy that keep it (evaluated now), from one read of the repository.

use std::collections::BTreeMap;

use walship_common::catalog::BackupId;
use walship_common::repo::Repository;
use walship_common::retention::{
    self, InventoryError, PinRecord, PlanInputs, Policy, Rule, read_inventory_tolerant,
};

/// Retention facts of one backup.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The pin in force.
    pub pin: Option<PinRecord>,
    /// The rules keeping it; `None` when no policy is configured; empty when the next
    /// `expire` would remove it.
    pub kept_by: Option<Vec<Rule>>,
}

impl Retention {
    /// `pinned`, `daily,weekly`, `expires` or `-` (no policy).
    pub fn cell(&self) -> String {
        match &self.kept_by {
            Some(rules) if rules.is_empty() => "(expires)".into(),
            Some(rules) => rules
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
            None if self.pin.is_some() => "pinned".into(),
            None => "-".into(),
        }
    }

    /// The fields `list --json` and `info --json` add.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pinned": self.pin,
            "kept_by": self.kept_by,
        })
    }
}

/// The retention facts of every complete backup.
pub async fn read(
    repo: &Repository,
    policy: &Policy,
) -> Result<BTreeMap<BackupId, Retention>, InventoryError> {
    let inventory = read_inventory_tolerant(repo).await?;
    let mut out: BTreeMap<BackupId, Retention> = inventory
        .backups
        .iter()
        .map(|b| {
            (
                b.id(),
                Retention {
                    pin: b.pin.clone(),
                    kept_by: None,
                },
            )
        })
        .collect();
    if policy.is_set() {
        let backups = inventory.summaries();
        let wal = inventory.wal_objects();
        let plan = retention::plan(PlanInputs {
            backups: &backups,
            wal: &wal,
            histories: &inventory.histories,
            seg_size: inventory.seg_size,
            policy,
            now: chrono::Utc::now(),
        });
        for (id, r) in out.iter_mut() {
            r.kept_by = Some(plan.rules_of(*id).map(<[Rule]>::to_vec).unwrap_or_default());
        }
    }
    Ok(out)
}
