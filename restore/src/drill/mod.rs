//! Restore drills: prove that the repository restores, and measure how long it takes (RTO)
//! and how much it loses (RPO), by doing it.
//!
//! [`run`] restores into a scratch directory with the ordinary restore ([`crate::restore`]:
//! plan, refuse on any problem, materialise), starts the backup's major on it
//! ([`pg_bin`], [`server`]), waits until recovery has ended and the server accepts writes,
//! runs the [`checks`], stops the server and removes the scratch directory. Everything it
//! measured is a [`DrillReport`] ([`report`]); a failed check, a refused plan or a missed
//! `--max-rto`/`--max-rpo` is a failed report, not an error. Errors are what kept the
//! drill from running at all (storage, no binaries, a scratch directory in use).

pub mod checks;
pub mod pg_bin;
pub mod report;
pub mod server;
mod window;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use walship_common::Lsn;
use walship_common::repo::Repository;

use crate::owner::Owner;
use crate::target::{RecoveryTarget, TargetAction, TargetSpec, TargetTime, TimelineChoice};
use crate::{MaterialiseOptions, PlanRequest, RestoreError, RestoreRequest};
pub use report::DrillReport;

/// Which moment a drill recovers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillTarget {
    /// The end of the archive.
    Latest,
    /// A uniformly random moment of the PITR window (oldest backup to newest commit).
    Random,
    /// This time.
    Time(TargetTime),
}

/// Everything a drill needs besides the repository.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    /// The target.
    pub target: DrillTarget,
    /// The scratch directory (must be empty or absent); `None`: a fresh temporary one.
    pub to: Option<PathBuf>,
    /// Keep the scratch directory afterwards.
    pub keep: bool,
    /// `--pg-bin`.
    pub pg_bin: Option<PathBuf>,
    /// The OS user the server runs as (needed when running as root).
    pub os_user: Option<Owner>,
    /// The database role the checks connect as.
    pub db_user: String,
    /// `--check-sql`: its name and its statements.
    pub check_sql: Option<(String, String)>,
    /// `--amcheck`.
    pub amcheck: bool,
    /// How long the server may take to end recovery and accept writes.
    pub timeout: Duration,
    /// `--max-rto`.
    pub max_rto: Option<Duration>,
    /// `--max-rpo`.
    pub max_rpo: Option<Duration>,
    /// The walship binary `restore_command` runs, its global arguments, its environment.
    pub walship: PathBuf,
    /// Arguments before `fetch` in `restore_command`.
    pub global_args: Vec<String>,
    /// Settings `restore_command` carries.
    pub env: Vec<(String, String)>,
    /// Bundles downloaded at once.
    pub parallel: usize,
}

/// What kept a drill from running at all.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// Reading the repository failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// No server binaries of the backup's major.
    #[error(transparent)]
    NoBinaries(#[from] pg_bin::NoBinaries),
    /// The scratch directory cannot be used.
    #[error("scratch directory {dir}: {message}")]
    Scratch {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--target random` on a repository without a window to pick from.
    #[error("--target random: {0}")]
    NoWindow(String),
}

/// Runs a drill; see the module doc.
pub async fn run(repo: &Repository, request: &DrillRequest) -> Result<DrillReport, DrillError> {
    let started = Instant::now();
    let mut report = DrillReport::begin(repo.location(), Utc::now());
    let identity = repo.require_identity().await.map_err(RestoreError::from)?;
    let bins = pg_bin::find(identity.pg_major, request.pg_bin.as_deref())?;
    report.pg_major = identity.pg_major;
    report.pg_bin = bins.bin_dir.display().to_string();
    let (target, kind) = match &request.target {
        DrillTarget::Latest => (RecoveryTarget::Latest, "latest"),
        DrillTarget::Time(t) => (RecoveryTarget::Time(*t), "time"),
        DrillTarget::Random => {
            let time = window::random_moment(repo).await?;
            report.target_time = Some(time);
            (
                RecoveryTarget::Time(TargetTime {
                    time,
                    zone_given: true,
                }),
                "random",
            )
        }
    };
    if let RecoveryTarget::Time(t) = &target {
        report.target_time = Some(t.time);
    }
    report.target_kind = kind.to_string();
    report.target = target.to_string();
    let scratch = Scratch::prepare(request.to.clone(), &report.id, request.os_user)?;
    report.scratch_directory = scratch.dir.display().to_string();
    let outcome = drill_in(repo, request, &bins, &scratch, target, started, &mut report).await;
    if request.keep {
        report.kept = true;
    } else {
        scratch.remove();
    }
    outcome?;
    report.finish(request.max_rto, request.max_rpo, Utc::now());
    Ok(report)
}

/// The part of the drill that uses the scratch directory.
async fn drill_in(
    repo: &Repository,
    request: &DrillRequest,
    bins: &pg_bin::PgBinaries,
    scratch: &Scratch,
    target: RecoveryTarget,
    started: Instant,
    report: &mut DrillReport,
) -> Result<(), DrillError> {
    let latest = matches!(target, RecoveryTarget::Latest);
    let restore_request = RestoreRequest {
        plan: PlanRequest {
            spec: TargetSpec {
                target,
                timeline: TimelineChoice::Latest,
                exclusive: false,
                backup: None,
            },
            resolve_lsn: false,
            placement: None,
        },
        to: scratch.data(),
        materialise: MaterialiseOptions {
            force: false,
            delta: false,
            tablespaces: Default::default(),
            tablespace_in_place: false,
            owner: request.os_user,
            parallel: request.parallel.max(1),
            recovery: None,
            chain_below: Vec::new(),
        },
        walship: request.walship.clone(),
        global_args: request.global_args.clone(),
        fetch_args: Vec::new(),
        env: request.env.clone(),
        action: TargetAction::Promote,
        standby: false,
    };
    let progress: crate::ProgressFn = std::sync::Arc::new(|_| {});
    let restored = match crate::restore(repo, &restore_request, progress).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_refusal() => {
            report.fail(format!(
                "the restore was refused before Postgres started: {e}"
            ));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let restore_secs = started.elapsed().as_secs_f64();
    report.materialise_seconds = restored.summary.duration_ms as f64 / 1000.0;
    report.plan_seconds = (restore_secs - report.materialise_seconds).max(0.0);
    report.bytes_restored = restored.summary.bytes_written;
    report.files_restored = restored.summary.files_written;
    report.wal_segments = restored.plan.wal_ranges.iter().map(|r| r.segments).sum();
    let plan = &restored.plan;
    report.backup = plan.backup.as_ref().map(|b| b.id.to_string());
    let planned: Lsn = if latest {
        plan.last_commit.as_ref().map(|c| c.lsn)
    } else {
        plan.stop_record.as_ref().map(|s| s.lsn)
    }
    .or(plan.backup.as_ref().map(|b| b.stop_lsn))
    .unwrap_or(Lsn(0));
    report.planned_lsn = Some(planned.to_string());

    let spec = server::ServerSpec {
        data: scratch.data(),
        work: scratch.dir.clone(),
        os_user: request.os_user,
        db_user: request.db_user.clone(),
    };
    let mut server = match server::DrillServer::start(bins, &spec) {
        Ok(s) => s,
        Err(e) => {
            report.fail(e.to_string());
            return Ok(());
        }
    };
    report.server_started = true;
    let replay_start = Instant::now();
    if let Err(e) = server.wait_writable(request.timeout).await {
        report.fail(e.to_string());
        stop(server, Duration::from_secs(30)).await;
        return Ok(());
    }
    report.replay_seconds = replay_start.elapsed().as_secs_f64();
    report.rto_seconds = Some(started.elapsed().as_secs_f64());
    let checks_start = Instant::now();
    match checks::replayed(&server).await {
        Ok(replayed) => {
            report.replayed_lsn = replayed.lsn.map(|l| l.to_string());
            report.last_replayed_xact_time = replayed.last_xact_time;
            report
                .checks
                .push(checks::replay_reached(&replayed, planned));
            let reference: Option<DateTime<Utc>> = if latest {
                match window::newest_wal_time(repo).await {
                    Ok(t) => t,
                    Err(e) => {
                        report.fail(format!("list the archive for the RPO: {e}"));
                        None
                    }
                }
            } else {
                report.target_time
            };
            report.rpo_reference_time = reference;
            if let (Some(reference), Some(replayed)) = (reference, replayed.last_xact_time) {
                report.rpo_seconds = Some(
                    ((reference - replayed).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0),
                );
            }
        }
        Err(e) => report.fail(format!("read what recovery replayed: {e}")),
    }
    if let Some((label, sql)) = &request.check_sql {
        report
            .checks
            .extend(checks::check_sql(&server, label, sql).await);
    }
    if request.amcheck {
        report.checks.extend(checks::amcheck(&server).await);
    }
    report.checks_seconds = checks_start.elapsed().as_secs_f64();
    stop(server, Duration::from_secs(60)).await;
    Ok(())
}

/// Stops the server off the async workers (the wait for its exit sleeps).
async fn stop(server: server::DrillServer, grace: Duration) {
    let _ = tokio::task::spawn_blocking(move || server.stop(grace)).await;
}

/// The scratch directory: `<dir>/data` is the restored data directory; the socket, the log
/// and the drill's `pg_hba.conf` sit beside it.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn prepare(to: Option<PathBuf>, id: &str, owner: Option<Owner>) -> Result<Scratch, DrillError> {
        let dir = to.unwrap_or_else(|| std::env::temp_dir().join(format!("walship-drill-{id}")));
        let fail = |message: String| DrillError::Scratch {
            dir: dir.clone(),
            message,
        };
        match std::fs::read_dir(&dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(fail(
                        "not empty (a drill needs an empty or absent directory)".into(),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(e.to_string()))?;
        if let Some(o) = owner {
            std::os::unix::fs::chown(&dir, Some(o.uid), Some(o.gid))
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(Scratch { dir })
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(
                "remove the drill's scratch directory {}: {e}",
                self.dir.display()
            );
        }
    }
}
