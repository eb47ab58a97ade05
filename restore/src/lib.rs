//! walship-restore: from a recovery target to a data directory Postgres recovers to exactly
//! that point, or a refusal naming the problem before any data moves.
//!
//! Split by phase, each a module:
//! - [`target`]: parsing `--target-time`, `--target-lsn`, `--target-xid`, `--target-name`,
//!   `--target immediate|latest` into a [`TargetSpec`].
//! - [`timeline`]: the repository's WAL (one listing, the `.history` files); the backups
//!   come from `common::backup::read_catalog`.
//! - [`plan`]: choose the backup, check the WAL chain, and ([`wal_scan`]) read the WAL to
//!   confirm that the target is reached; check the manifest's structure
//!   ([`manifest_check`]) and where everything would go ([`placement`]: running servers,
//!   non-empty directories, tablespace locations); every problem is listed in the
//!   [`RestorePlan`].
//! - [`materialise`] (with [`bundle`], [`paths`] and [`owner`]): build the directory
//!   (for an incremental chain, [`chain`] rebuilds the `INCREMENTAL.*` files from the older
//!   members, read with [`bundle_files`]),
//!   the recovery configuration ([`recovery_conf`]: `recovery.signal` and the walship block
//!   in `postgresql.auto.conf`), and `pg_control` last.
//!
//! [`restore`] runs them in order: plan, refuse on any problem, materialise.
//!
//! [`drill`] builds on it: restore into a scratch directory, start Postgres, check, measure
//! RTO and RPO (`walship drill`); [`status`] summarises the repository (`walship status`);
//! both read the PITR window through [`window`].
//!
//! ```
//! use walship_restore::target::{parse_target_time, RecoveryTarget};
//! let t = parse_target_time("2026-11-20 14:03:00").unwrap();
//! assert!(!t.zone_given); // read as UTC, and the plan says so
//! assert_eq!(
//!     RecoveryTarget::Time(t).to_string(),
//!     "time 2026-11-20 14:03:00.000000+00 (no zone given: read as UTC)"
//! );
//! ```

#![deny(missing_docs)]

pub mod bundle;
pub mod bundle_files;
pub mod chain;
pub mod drill;
pub mod error;
pub mod manifest_check;
pub mod materialise;
pub mod owner;
pub mod paths;
pub mod placement;
pub mod plan;
pub mod recovery_conf;
pub mod status;
pub mod target;
pub mod timeline;
pub mod wal_scan;
pub mod window;

use std::path::PathBuf;

pub use bundle::ProgressFn;
pub use error::RestoreError;
pub use materialise::{MaterialiseOptions, MaterialiseSummary};
pub use plan::{PlanRequest, Problem, ProblemKind, RestorePlan};
pub use recovery_conf::RecoveryConfig;
pub use target::{RecoveryTarget, TargetAction, TargetSpec, TimelineChoice};

use walship_common::repo::Repository;

/// Everything a restore needs besides the repository.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Target and backup choice.
    pub plan: PlanRequest,
    /// The data directory to build.
    pub to: PathBuf,
    /// `--force`, `--delta`, `--tablespace`, `--tablespace-in-place`, `--owner`,
    /// parallelism (its `recovery` is filled in by [`restore`]).
    pub materialise: MaterialiseOptions,
    /// The `walship` binary the restored server runs as `restore_command`.
    pub walship: PathBuf,
    /// Arguments before `fetch` in `restore_command` (`--config`, `--repo`).
    pub global_args: Vec<String>,
    /// Arguments of `fetch` in `restore_command` (`--as-of TIME`: the restored server reads
    /// the repository as the restore did).
    pub fetch_args: Vec<String>,
    /// Settings from the environment `restore_command` carries
    /// ([`recovery_conf::carried_env`]).
    pub env: Vec<(String, String)>,
    /// `recovery_target_action`.
    pub action: TargetAction,
    /// `standby.signal` instead of `recovery.signal`.
    pub standby: bool,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// The plan it followed.
    pub plan: RestorePlan,
    /// What it wrote.
    pub summary: MaterialiseSummary,
}

/// Plans, refuses on any problem (a target directory that is in use, not empty without
/// `--force`/`--delta`, not a data directory; a tablespace location not confirmed; a
/// malformed manifest) before writing anything, then builds the directory with the recovery
/// configuration, `pg_control` last.
pub async fn restore(
    repo: &Repository,
    request: &RestoreRequest,
    progress: ProgressFn,
) -> Result<RestoreOutcome, RestoreError> {
    let identity = repo.require_identity().await?;
    let placement = request.materialise.placement_request(&request.to);
    // The directory alone first: refused in a moment rather than after the WAL scan.
    let problems = placement::check_data_dir(&placement, identity.system_identifier);
    if !problems.is_empty() {
        return Err(RestoreError::Refused { problems });
    }
    let mut plan_request = request.plan.clone();
    plan_request.placement = Some(placement);
    let plan = plan::plan(repo, &plan_request).await?;
    let manifest = match (&plan.manifest, plan.problems.is_empty()) {
        (Some(manifest), true) => manifest.clone(),
        _ => {
            return Err(RestoreError::Refused {
                problems: plan.problems.clone(),
            });
        }
    };
    let spec = &request.plan.spec;
    let mut opts = request.materialise.clone();
    opts.chain_below = plan.chain_below.clone();
    opts.recovery = Some(RecoveryConfig {
        walship: request.walship.clone(),
        global_args: request.global_args.clone(),
        fetch_args: request.fetch_args.clone(),
        env: request.env.clone(),
        allow_partial: matches!(spec.target, RecoveryTarget::Latest),
        target: spec.target.clone(),
        resolved_lsn: plan.resolved_lsn,
        exclusive: spec.exclusive,
        timeline: match spec.timeline {
            TimelineChoice::Latest => None,
            TimelineChoice::Id(t) => Some(t.0),
        },
        action: request.action,
        standby: request.standby,
    });
    let summary = materialise::materialise(repo, &manifest, &request.to, &opts, progress).await?;
    Ok(RestoreOutcome { plan, summary })
}
