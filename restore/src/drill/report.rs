//! The drill report: what a drill did and measured, printed as JSON (`--report FILE`) and
//! stored create-only in the repository as `drills/<id>.json` (`docs/FORMAT.md`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use walship_common::repo::{RepoError, Repository};
use walship_common::storage::ObjectKey;

use super::checks::CheckResult;

/// Prefix of drill reports in a repository.
pub const DRILLS_PREFIX: &str = "drills/";

/// The most a stored report may hold when read back.
pub const REPORT_LIMIT: u64 = 1 << 20;

/// What a drill did and measured. Times are RFC 3339 UTC; durations in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DrillReport {
    /// `<start time YYYYMMDDTHHMMSSZ>-<4 hex>`: also the report's key.
    pub id: String,
    /// The repository.
    pub repository: String,
    /// Whether every check passed and every limit held.
    pub passed: bool,
    /// Why not, one line each.
    pub failures: Vec<String>,
    /// When the drill started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// `latest`, `random` or `time`.
    pub target_kind: String,
    /// The target as Postgres was told.
    pub target: String,
    /// The target time (`random` and `time`).
    pub target_time: Option<DateTime<Utc>>,
    /// The backup restored.
    pub backup: Option<String>,
    /// The major version started.
    pub pg_major: u32,
    /// Where its binaries were.
    pub pg_bin: String,
    /// RTO: seconds from the start of the drill until the server accepted writes.
    pub rto_seconds: Option<f64>,
    /// Part of the RTO: reading the catalog and planning (and finding the binaries).
    pub plan_seconds: f64,
    /// Part of the RTO: building the data directory.
    pub materialise_seconds: f64,
    /// Part of the RTO: from starting the server to its first accepted write (WAL replay).
    pub replay_seconds: f64,
    /// After the RTO: running the checks.
    pub checks_seconds: f64,
    /// Achieved RPO: `rpo_reference_time` minus `last_replayed_xact_time`.
    pub rpo_seconds: Option<f64>,
    /// For `latest`, when the archive last received WAL; for a time, the target time.
    pub rpo_reference_time: Option<DateTime<Utc>>,
    /// `pg_last_xact_replay_timestamp()`: the last transaction recovery applied.
    pub last_replayed_xact_time: Option<DateTime<Utc>>,
    /// The LSN replay had to reach.
    pub planned_lsn: Option<String>,
    /// `pg_last_wal_replay_lsn()`.
    pub replayed_lsn: Option<String>,
    /// Bytes written into the data directory.
    pub bytes_restored: u64,
    /// Files written.
    pub files_restored: u64,
    /// WAL segments in the plan.
    pub wal_segments: u64,
    /// Whether the server was started.
    pub server_started: bool,
    /// The checks and their outcomes.
    pub checks: Vec<CheckResult>,
    /// The scratch directory.
    pub scratch_directory: String,
    /// Whether it was kept (`--keep`).
    pub kept: bool,
}

impl DrillReport {
    /// A report for a drill starting now.
    pub fn begin(repository: &str, now: DateTime<Utc>) -> DrillReport {
        let suffix: u16 = rand::random();
        DrillReport {
            id: format!("{}-{suffix:04x}", now.format("%Y%m%dT%H%M%SZ")),
            repository: repository.to_string(),
            started_at: now,
            ..DrillReport::default()
        }
    }

    /// The report of a drill that could not run at all (`message` says why).
    pub fn could_not_run(repository: &str, started: DateTime<Utc>, message: String) -> DrillReport {
        let mut report = DrillReport::begin(repository, started);
        report.fail(format!("the drill could not run: {message}"));
        report.finish(None, None, Utc::now());
        report
    }

    /// Records a failure.
    pub fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    /// Adds the failed checks and missed limits to the failures and sets `passed`.
    pub fn finish(
        &mut self,
        max_rto: Option<std::time::Duration>,
        max_rpo: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) {
        self.finished_at = Some(now);
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("check failed: {}: {}", c.name, c.detail))
            .collect();
        self.failures.extend(failed);
        if let Some(max) = max_rto {
            match self.rto_seconds {
                Some(rto) if rto <= max.as_secs_f64() => {}
                Some(rto) => self.fail(format!(
                    "RTO {rto:.1} s exceeds --max-rto {} s",
                    max.as_secs_f64()
                )),
                None => self.fail("no RTO measured (the server never accepted writes)".into()),
            }
        }
        if let Some(max) = max_rpo {
            match self.rpo_seconds {
                Some(rpo) if rpo <= max.as_secs_f64() => {}
                Some(rpo) => self.fail(format!(
                    "RPO {rpo:.1} s exceeds --max-rpo {} s",
                    max.as_secs_f64()
                )),
                None => self.fail("no RPO measured (no transaction was replayed)".into()),
            }
        }
        self.passed = self.server_started && self.failures.is_empty();
    }

    /// The key of this report: `drills/<id>.json`.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(format!("{DRILLS_PREFIX}{}.json", self.id))
            .expect("a drill id is a valid key")
    }

    /// Stores the report, create-only (an existing report is never replaced): plain JSON in
    /// a plain repository, sealed in an encrypted one ([`Repository::put_record`]: its checks
    /// may name table data).
    pub async fn store(&self, repo: &Repository) -> Result<ObjectKey, RepoError> {
        let key = self.key();
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        repo.put_record(&key, Bytes::from(json), true).await?;
        Ok(key)
    }
}

/// The newest drill report in the repository, if any (by id, which starts with the time).
pub async fn newest(repo: &Repository) -> Result<Option<DrillReport>, RepoError> {
    use walship_common::storage::Storage;
    repo.check_keys().await?;
    let objects = repo.storage().list(DRILLS_PREFIX).await?;
    let Some(newest) = objects
        .iter()
        .filter(|m| m.key.as_str().ends_with(".json"))
        .max_by(|a, b| a.key.as_str().cmp(b.key.as_str()))
    else {
        return Ok(None);
    };
    let bytes = repo.get_record(&newest.key, REPORT_LIMIT).await?;
    Ok(serde_json::from_slice(&bytes).ok())
}
