//! The plan: from a target to a backup plus a WAL chain, with every problem found, before
//! any data moves.
//!
//! [`plan`] chooses the newest backup that can reach the target (consistent before it, on
//! a timeline on the path to the target timeline), checks that every segment of the chain
//! is archived, and reads the WAL ([`crate::wal_scan`]) to confirm that the record recovery
//! stops at exists. It returns a [`RestorePlan`] whose `problems` list every reason the
//! restore would fail; `--dry-run` prints it, and a restore refuses while it is not empty.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use walship_common::Lsn;
use walship_common::catalog::{BackupId, BackupManifest};
use walship_common::pg::{TimelineHistory, TimelineId, WalFileName, WalSegSize};
use walship_common::repo::Repository;

use crate::error::RestoreError;
use crate::manifest_check;
use crate::placement::{self, Placement, PlacementRequest};
use crate::target::{RecoveryTarget, TargetSpec};
use crate::timeline::{ArchiveListing, backup_on_path, load_history};
use crate::wal_scan::{self, ScanReport, WalPoint};

/// What to plan for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRequest {
    /// The target, timeline, inclusiveness and forced backup.
    pub spec: TargetSpec,
    /// For a time target, stop by the LSN of the first commit after the time instead of by
    /// the time (`--resolve-lsn`).
    pub resolve_lsn: bool,
    /// Where the restore would write: checked too, so that the plan refuses what the
    /// restore would refuse. `None` plans the backup and WAL only.
    pub placement: Option<PlacementRequest>,
}

/// What kind of problem stops a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The target timeline has no history file in the repository.
    UnknownTimeline,
    /// The repository has no usable backup (or not the one asked for).
    NoBackup,
    /// The target lies before the oldest backup that could reach it became consistent.
    BeforeOldestBackup,
    /// A backup, or a segment, belongs to another cluster than the repository.
    OtherCluster,
    /// Segments of the chain are missing from the repository.
    MissingSegments,
    /// A segment is not the segment its name says, or is damaged.
    BadSegment,
    /// The archive ends before the target.
    BeyondArchive,
    /// The chosen backup's manifest is malformed or tampered with.
    BadManifest,
    /// A target directory is used by a running server.
    TargetInUse,
    /// A target directory holds files and neither `--force` nor `--delta` was given.
    TargetNotEmpty,
    /// A target directory cannot be used (not a data directory, unreadable).
    TargetNotUsable,
    /// A tablespace cannot go where it would go.
    Tablespace,
}

/// A backup the plan did not consider, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedBackup {
    /// Its id.
    pub id: BackupId,
    /// Why.
    pub reason: String,
}

/// One reason the restore cannot reach its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The message for the operator, naming the backup, segment, LSN or time involved.
    pub message: String,
}

/// The backup a plan starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupChoice {
    /// Its id.
    pub id: BackupId,
    /// Timeline it ended on.
    pub timeline: TimelineId,
    /// Where its WAL starts.
    pub start_lsn: Lsn,
    /// Where it becomes consistent.
    pub stop_lsn: Lsn,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// When it became consistent.
    pub stop_time: DateTime<Utc>,
    /// Files (and directories) it restores.
    pub files: usize,
    /// Raw bytes.
    pub bytes_raw: u64,
    /// Stored bytes (to fetch).
    pub bytes_stored: u64,
}

/// The WAL recovery reads from one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalRange {
    /// The timeline.
    pub timeline: TimelineId,
    /// Its first segment.
    pub first: String,
    /// Its last segment.
    pub last: String,
    /// How many segments.
    pub segments: u64,
}

/// A restore plan; see the module doc.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The repository.
    pub repository: String,
    /// The repository's cluster (a string: it does not fit a double).
    pub system_identifier: String,
    /// The target, as Postgres will be told.
    pub target: String,
    /// `recovery_target_inclusive`.
    pub inclusive: bool,
    /// The timeline recovery follows.
    pub target_timeline: TimelineId,
    /// The backup chosen.
    pub backup: Option<BackupChoice>,
    /// WAL to replay, per timeline, oldest first.
    pub wal_ranges: Vec<WalRange>,
    /// Objects restore and recovery will fetch (bundles and segments).
    pub fetch_objects: u64,
    /// Their stored size.
    pub fetch_bytes: u64,
    /// Whether the archive reaches the target.
    pub reachable: bool,
    /// The record recovery stops at (for time, LSN, XID and name targets).
    pub stop_record: Option<WalPoint>,
    /// `--resolve-lsn`: the LSN written instead of the time.
    pub resolved_lsn: Option<Lsn>,
    /// The last commit or abort the archive holds: the true recovery point.
    pub last_commit: Option<WalPoint>,
    /// Where valid WAL ends along the target timeline.
    pub wal_end: Lsn,
    /// Every segment missing between the backup's start and the newest archived segment.
    pub missing_segments: Vec<String>,
    /// Where the restore writes (when the request says where).
    pub placement: Option<Placement>,
    /// Backups left out: an unreadable manifest, another cluster's.
    pub skipped_backups: Vec<SkippedBackup>,
    /// Why the restore cannot proceed; empty when it can.
    pub problems: Vec<Problem>,
    /// For an incremental: its chain, the full backup first, with what restoring it reads
    /// from each member; empty for a full backup.
    pub chain: Vec<crate::chain::MemberRead>,
    /// The chosen backup's manifest.
    #[serde(skip)]
    pub manifest: Option<BackupManifest>,
    /// For an incremental: the older members' manifests, the full first.
    #[serde(skip)]
    pub chain_below: Vec<BackupManifest>,
    /// The request.
    #[serde(skip)]
    pub spec: Option<TargetSpec>,
    /// The WAL segment size.
    #[serde(skip)]
    pub seg_size: Option<WalSegSize>,
}

impl RestorePlan {
    /// True when nothing stops the restore.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.manifest.is_some()
    }

    fn refuse(&mut self, kind: ProblemKind, message: String) {
        self.problems.push(Problem { kind, message });
    }
}

/// Builds the plan for `request`; see the module doc. Errors are failures to read the
/// repository; everything that makes the target unreachable, the chosen manifest unsound
/// or a target directory unusable is a [`Problem`].
pub async fn plan(repo: &Repository, request: &PlanRequest) -> Result<RestorePlan, RestoreError> {
    let mut plan = plan_backup(repo, request).await?;
    if let Some(manifest) = plan.manifest.clone() {
        for message in manifest_check::structural_problems(&manifest) {
            plan.refuse(
                ProblemKind::BadManifest,
                format!("backup {}: bad manifest: {message}", manifest.id),
            );
        }
    }
    if let (Some(placement), Some(manifest)) = (&request.placement, &plan.manifest)
        && placement.delta
        && manifest.is_incremental()
    {
        plan.refuse(
            ProblemKind::BadManifest,
            format!(
                "backup {} is incremental: --delta cannot restore a chain yet; restore into an empty directory or with --force",
                manifest.id
            ),
        );
    }
    if let Some(placement) = &request.placement {
        let identity = repo.require_identity().await?;
        let mut problems = placement::check_data_dir(placement, identity.system_identifier);
        if let Some(manifest) = &plan.manifest {
            let (placed, more) = placement::place(manifest, placement, identity.system_identifier);
            plan.placement = Some(placed);
            problems.extend(more);
        }
        plan.problems.extend(problems);
    }
    if !plan.problems.is_empty() {
        plan.reachable = false;
    }
    Ok(plan)
}

/// The backup choice and the WAL chain.
async fn plan_backup(
    repo: &Repository,
    request: &PlanRequest,
) -> Result<RestorePlan, RestoreError> {
    let spec = &request.spec;
    let identity = repo.require_identity().await?;
    let seg_size = WalSegSize::new(u64::from(identity.wal_segment_size)).map_err(|e| {
        RestoreError::BadManifest {
            backup: "walship.json".to_string(),
            message: e.to_string(),
        }
    })?;
    let listing = ArchiveListing::load(repo, seg_size).await?;
    let timeline = match spec.timeline {
        crate::target::TimelineChoice::Latest => listing.latest_timeline(),
        crate::target::TimelineChoice::Id(t) => t,
    };
    let mut plan = RestorePlan {
        repository: repo.location().to_string(),
        system_identifier: identity.system_identifier.to_string(),
        target: spec.target.to_string(),
        inclusive: !spec.exclusive,
        target_timeline: timeline,
        backup: None,
        wal_ranges: Vec::new(),
        fetch_objects: 0,
        fetch_bytes: 0,
        reachable: false,
        stop_record: None,
        resolved_lsn: None,
        last_commit: None,
        wal_end: Lsn::INVALID,
        missing_segments: Vec::new(),
        placement: None,
        skipped_backups: Vec::new(),
        problems: Vec::new(),
        chain: Vec::new(),
        manifest: None,
        chain_below: Vec::new(),
        spec: Some(spec.clone()),
        seg_size: Some(seg_size),
    };
    let Some(history) = load_history(repo, timeline).await? else {
        plan.refuse(
            ProblemKind::UnknownTimeline,
            format!(
                "timeline {timeline} has no history file ({:08X}.history) in {}; the newest timeline archived is {}",
                timeline.0,
                repo.location(),
                listing.latest_timeline()
            ),
        );
        return Ok(plan);
    };
    let catalog = walship_common::backup::read_catalog(repo).await?;
    plan.skipped_backups = catalog
        .unreadable
        .iter()
        .map(|b| SkippedBackup {
            id: b.id,
            reason: format!("its manifest cannot be used: {}", b.reason),
        })
        .collect();
    let all = &catalog.complete;
    // Another cluster's backup is never chosen on its own (asked for by id, it is refused).
    let ours = |b: &BackupManifest| {
        b.system_identifier == identity.system_identifier
            && b.wal_segment_size == identity.wal_segment_size
    };
    for b in all.iter().filter(|b| !ours(b)) {
        plan.skipped_backups.push(SkippedBackup {
            id: b.id,
            reason: format!(
                "it is of another cluster (system identifier {})",
                b.system_identifier
            ),
        });
    }
    // An incremental is usable only with its whole chain (every member down to the full).
    let by_id: BTreeMap<BackupId, &BackupManifest> = all.iter().map(|m| (m.id, m)).collect();
    let chain_of = |b: &BackupManifest| {
        walship_common::backup::incremental::chain_in(&by_id, b.id)
            .map(|chain| chain.into_iter().cloned().collect::<Vec<_>>())
    };
    for b in all.iter().filter(|b| ours(b)) {
        if let Err(why) = chain_of(b) {
            plan.skipped_backups.push(SkippedBackup {
                id: b.id,
                reason: format!("its incremental chain is broken: {why}"),
            });
        }
    }
    plan.skipped_backups.sort_by_key(|b| b.id);
    let on_path: Vec<&BackupManifest> = all
        .iter()
        .filter(|b| ours(b) && backup_on_path(&history, b) && chain_of(b).is_ok())
        .collect();
    let candidates: Vec<&BackupManifest> = match &spec.backup {
        Some(id) if catalog.unreadable_reason(*id).is_some() => {
            plan.refuse(
                ProblemKind::NoBackup,
                format!(
                    "backup {id} cannot be used: {}",
                    catalog.unreadable_reason(*id).unwrap_or_default()
                ),
            );
            return Ok(plan);
        }
        Some(id) => match all.iter().find(|b| b.id == *id) {
            Some(b) if chain_of(b).is_err() => {
                plan.refuse(
                    ProblemKind::NoBackup,
                    format!(
                        "backup {id} cannot be restored: its incremental chain is broken: {}",
                        chain_of(b).err().unwrap_or_default()
                    ),
                );
                return Ok(plan);
            }
            Some(b) if backup_on_path(&history, b) => vec![b],
            Some(b) => {
                plan.refuse(
                    ProblemKind::NoBackup,
                    format!(
                        "backup {id} (timeline {}, consistent at {}) is not on the path to timeline {timeline}",
                        b.stop_timeline, b.stop_lsn
                    ),
                );
                return Ok(plan);
            }
            None => {
                plan.refuse(
                    ProblemKind::NoBackup,
                    format!("backup {id} does not exist in {}", repo.location()),
                );
                return Ok(plan);
            }
        },
        None => on_path.clone(),
    };
    if candidates.is_empty() {
        plan.refuse(
            ProblemKind::NoBackup,
            format!(
                "{} holds no backup on the path to timeline {timeline} ({} backups in all)",
                repo.location(),
                all.len()
            ),
        );
        return Ok(plan);
    }
    let eligible = |b: &&&BackupManifest| match &spec.target {
        RecoveryTarget::Time(t) => b.stop_time <= t.time,
        RecoveryTarget::Lsn(lsn) => b.stop_lsn <= *lsn,
        _ => true,
    };
    let Some(newest) = candidates
        .iter()
        .filter(eligible)
        .max_by_key(|b| b.stop_lsn)
        .copied()
    else {
        let oldest = candidates.iter().min_by_key(|b| b.stop_lsn).copied();
        if let Some(oldest) = oldest {
            plan.refuse(
                ProblemKind::BeforeOldestBackup,
                format!(
                    "the target ({}) is before backup {} became consistent (at {}, LSN {}), the oldest that can be used; no backup can reach it",
                    spec.target, oldest.id, oldest.stop_time, oldest.stop_lsn
                ),
            );
        }
        return Ok(plan);
    };
    let mut chosen = newest;
    let mut report = scan_from(
        repo, &listing, &history, seg_size, &identity, chosen, request,
    )
    .await?;
    let by_record = matches!(
        spec.target,
        RecoveryTarget::Xid(_) | RecoveryTarget::Name(_)
    );
    if by_record && spec.backup.is_none() {
        let found_after_stop = report
            .target_record
            .as_ref()
            .is_some_and(|r| r.lsn >= chosen.stop_lsn);
        let oldest = candidates.iter().min_by_key(|b| b.stop_lsn).copied();
        if let Some(oldest) = oldest.filter(|o| !found_after_stop && o.id != chosen.id) {
            report = scan_from(
                repo, &listing, &history, seg_size, &identity, oldest, request,
            )
            .await?;
            chosen = match &report.target_record {
                Some(hit) => candidates
                    .iter()
                    .filter(|b| b.stop_lsn <= hit.lsn)
                    .max_by_key(|b| b.stop_lsn)
                    .copied()
                    .unwrap_or(oldest),
                None => oldest,
            };
        }
    }
    if chosen.is_incremental() {
        let mut chain = chain_of(chosen).unwrap_or_default();
        plan.chain = crate::chain::reads(&chain);
        chain.pop();
        plan.chain_below = chain;
    }
    judge(
        &mut plan, repo, &listing, &history, seg_size, &identity, chosen, &report, request,
    );
    Ok(plan)
}

async fn scan_from(
    repo: &Repository,
    listing: &ArchiveListing,
    history: &TimelineHistory,
    seg_size: WalSegSize,
    identity: &walship_common::repo::RepoIdentity,
    backup: &BackupManifest,
    request: &PlanRequest,
) -> Result<ScanReport, RestoreError> {
    wal_scan::scan(
        repo,
        listing,
        history,
        seg_size,
        identity.system_identifier,
        backup.start_lsn,
        &request.spec,
    )
    .await
}

/// Fills the plan from the chosen backup and what the scan found.
#[allow(clippy::too_many_arguments)]
fn judge(
    plan: &mut RestorePlan,
    repo: &Repository,
    listing: &ArchiveListing,
    history: &TimelineHistory,
    seg_size: WalSegSize,
    identity: &walship_common::repo::RepoIdentity,
    chosen: &BackupManifest,
    report: &ScanReport,
    request: &PlanRequest,
) {
    let spec = &request.spec;
    plan.backup = Some(BackupChoice {
        id: chosen.id,
        timeline: chosen.stop_timeline,
        start_lsn: chosen.start_lsn,
        stop_lsn: chosen.stop_lsn,
        start_time: chosen.start_time,
        stop_time: chosen.stop_time,
        files: chosen.files.len(),
        bytes_raw: chosen.bytes_raw,
        bytes_stored: chosen.bytes_stored,
    });
    plan.manifest = Some(chosen.clone());
    plan.last_commit = report.last_commit.clone();
    plan.wal_end = report.wal_end;
    if chosen.system_identifier != identity.system_identifier
        || chosen.wal_segment_size != identity.wal_segment_size
    {
        plan.refuse(
            ProblemKind::OtherCluster,
            format!(
                "backup {} is of another cluster (system identifier {}, {} byte segments) than repository {} (system identifier {}, {} byte segments)",
                chosen.id,
                chosen.system_identifier,
                chosen.wal_segment_size,
                repo.location(),
                identity.system_identifier,
                identity.wal_segment_size
            ),
        );
        return;
    }
    let with_partials = matches!(spec.target, RecoveryTarget::Latest);
    plan.missing_segments =
        missing_segments(listing, history, seg_size, chosen.start_lsn, with_partials);
    if let Some((name, why)) = &report.bad_segment {
        let kind = if why.contains("system identifier") {
            ProblemKind::OtherCluster
        } else {
            ProblemKind::BadSegment
        };
        plan.refuse(
            kind,
            format!(
                "WAL segment {name} in {} cannot be used: {why}",
                repo.location()
            ),
        );
    }
    let consistent = report.wal_end >= chosen.stop_lsn;
    let stop = match &spec.target {
        RecoveryTarget::Immediate => consistent.then_some(chosen.stop_lsn),
        // A gap is never "the end of the archive": recovery would stop there and promote.
        RecoveryTarget::Latest => {
            (consistent && report.missing.is_none() && report.bad_segment.is_none())
                .then_some(report.wal_end)
        }
        _ => report.target_record.as_ref().map(|r| r.lsn),
    };
    plan.stop_record = match &spec.target {
        RecoveryTarget::Immediate | RecoveryTarget::Latest => None,
        _ => report.target_record.clone(),
    };
    if let (true, RecoveryTarget::Time(_), Some(hit)) =
        (request.resolve_lsn, &spec.target, &report.target_record)
    {
        plan.resolved_lsn = Some(hit.lsn);
    }
    match stop {
        Some(lsn) if lsn >= chosen.stop_lsn || matches!(spec.target, RecoveryTarget::Immediate) => {
            plan.reachable = plan.problems.is_empty();
        }
        Some(lsn) => plan.refuse(
            ProblemKind::BeforeOldestBackup,
            format!(
                "recovery would stop at LSN {lsn} ({}), before backup {} becomes consistent at LSN {}; no backup can reach it",
                spec.target, chosen.id, chosen.stop_lsn
            ),
        ),
        None if report.missing.is_some() || report.bad_segment.is_some() => {
            if report.bad_segment.is_none() {
                let (noun, verb) = if plan.missing_segments.len() > 1 {
                    ("segments", "are")
                } else {
                    ("segment", "is")
                };
                let names = if plan.missing_segments.is_empty() {
                    report.missing.clone().unwrap_or_default()
                } else {
                    plan.missing_segments.join(", ")
                };
                plan.refuse(
                    ProblemKind::MissingSegments,
                    format!(
                        "WAL {noun} {names} {verb} missing from {}: recovery from backup {} cannot get past LSN {}",
                        repo.location(),
                        chosen.id,
                        report.wal_end,
                    ),
                );
            }
        }
        None => plan.refuse(
            ProblemKind::BeyondArchive,
            format!(
                "the archive does not reach the target ({}): valid WAL on timeline {} ends at LSN {}{}",
                spec.target,
                plan.target_timeline,
                report.wal_end,
                match &report.last_commit {
                    Some(c) => format!(
                        "; the last commit it holds is at {} (LSN {})",
                        c.time.map_or("an unknown time".to_string(), |t| t.to_rfc3339()),
                        c.lsn
                    ),
                    None => "; it holds no commit after the backup".to_string(),
                }
            ),
        ),
    }
    // Never past the end of the archive by more than a segment: a manifest's stop LSN is
    // outside input, and listing every segment up to FFFFFFFF/FFFFFFFF would never end
    // (a plan whose backup ends beyond the archive is refused above anyway).
    let archive_end = Lsn(report.wal_end.0.saturating_add(seg_size.as_u64()));
    let end = stop
        .unwrap_or(report.wal_end)
        .max(chosen.stop_lsn)
        .min(archive_end);
    plan.wal_ranges = wal_ranges(history, seg_size, chosen.start_lsn, end);
    let segment_bytes: u64 = history
        .segments_between(chosen.start_lsn, Lsn(end.0.saturating_add(1)), seg_size)
        .unwrap_or_default()
        .iter()
        .filter_map(|w| {
            listing
                .segments
                .get(&(w.timeline(), w.segno()))
                .or_else(|| listing.partials.get(&(w.timeline(), w.segno())))
        })
        .fold(0u64, |sum, n| sum.saturating_add(*n));
    let segments: u64 = plan.wal_ranges.iter().map(|r| r.segments).sum();
    plan.fetch_objects = (chosen.bundles.len() as u64).saturating_add(segments);
    // Sizes from a manifest are outside input: never an overflow.
    plan.fetch_bytes = chosen.bytes_stored.saturating_add(segment_bytes);
}

/// Every segment recovery along `history` would need from `start` up to the newest one
/// archived, that the archive does not hold.
fn missing_segments(
    listing: &ArchiveListing,
    history: &TimelineHistory,
    seg_size: WalSegSize,
    start: Lsn,
    with_partials: bool,
) -> Vec<String> {
    let Some(last) = listing.last_on_path(history, seg_size, with_partials) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    let mut segno = start.segno(seg_size);
    while segno <= last {
        let tli = history.timeline_of_segment(segno, seg_size);
        if let Ok(wal) = WalFileName::new(tli, segno, seg_size)
            && !listing.has(&wal)
            && !(with_partials && listing.partials.contains_key(&(tli, segno)))
        {
            missing.push(wal.to_string());
        }
        match segno.next(seg_size) {
            Some(next) => segno = next,
            None => break,
        }
    }
    missing
}

/// The segments of `[start, end]` grouped by timeline.
fn wal_ranges(
    history: &TimelineHistory,
    seg_size: WalSegSize,
    start: Lsn,
    end: Lsn,
) -> Vec<WalRange> {
    let names = history
        .segments_between(start, Lsn(end.0.saturating_add(1)), seg_size)
        .unwrap_or_default();
    let mut by_tli: BTreeMap<TimelineId, Vec<WalFileName>> = BTreeMap::new();
    for name in names {
        by_tli.entry(name.timeline()).or_default().push(name);
    }
    by_tli
        .into_iter()
        .filter_map(|(timeline, names)| {
            Some(WalRange {
                timeline,
                first: names.first()?.to_string(),
                last: names.last()?.to_string(),
                segments: names.len() as u64,
            })
        })
        .collect()
}
