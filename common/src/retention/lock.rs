//! Retention under S3 Object Lock: how long new objects are locked ([`lock_policy`]), and
//! which kept backups `expire` must lock longer ([`extensions`], carried out by
//! [`extend_locks`]). One engine: the durations come from the same [`Policy`] and the
//! extensions from the same [`Plan`] that decide removals.
//!
//! **Durations of a new object** (plus `s3.object_lock_margin` each):
//! - WAL: `pitr_window` (a segment is needed for the window from the moment it is written);
//! - a backup: the shortest time the policy keeps a new backup, `max(pitr_window, daily
//!   days)`: the PITR rule keeps every backup after the window's anchor, and the daily rule
//!   keeps the newest backup of a day until `daily` newer days have one;
//! - repository-wide objects (`walship.json`, `keys/`, `audit/`, `drills/`): the longest
//!   time the policy keeps anything (`yearly` years, `monthly` months, ...).
//!
//! The margin must be at least the interval between backups (and between `expire` runs):
//! the PITR anchor, and the WAL after it, stay needed until the *next* backup has left the
//! window, which a lock taken at creation covers only by that margin.
//!
//! **Extensions**: when the plan keeps a backup by a weekly, monthly or yearly rule and
//! that backup's period (its ISO week, month, year in `retention.timezone`) has ended, the
//! backup is definitively the one of its period, and the policy keeps it at least until the
//! start of the period `N` periods later (when `N` newer periods could have a backup). Its
//! objects, and the WAL from its start to its stop (what restoring it needs), are locked
//! until then plus the margin, the manifest last. A backup whose period is still open may be
//! superseded by a newer one of the same period, so it is not extended yet (its own lock
//! covers it until the period ends, given the margin rule above). A pinned backup (which
//! also carries a legal hold on its own objects: [`set_backup_legal_hold`]) and its WAL are
//! extended on a rolling basis to now + a new backup's lock, renewed once less than that
//! minus the margin is left. `walship.json` and `keys/` are extended on every run to now +
//! the longest duration. Extensions never shorten a lock (PutObjectRetention in
//! COMPLIANCE mode allows only extensions; walship does not even ask).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};

use super::inventory::Inventory;
use super::plan::Plan;
use super::policy::{Period, Policy, Rule, Timezone};
use crate::catalog::BackupId;
use crate::pg::segment::SegNo;
use crate::repo::lock::LockPolicy;
use crate::repo::{Repository, layout};
use crate::storage::{Extension, LockMode, ObjectKey, Storage, StorageError};

const DAY: Duration = Duration::from_secs(86_400);

/// The longest lock walship asks for: a century (a typo such as `yearly = 7000` is refused
/// rather than locking objects for ever).
const MAX_LOCK: Duration = Duration::from_secs(100 * 366 * 86_400);

/// The lock durations for `mode` under `policy`, plus `margin`. Refused without a
/// `pitr_window`: WAL would have no defined lock.
pub fn lock_policy(
    mode: LockMode,
    margin: Duration,
    policy: &Policy,
) -> Result<LockPolicy, String> {
    let Some(pitr) = policy.pitr_window else {
        return Err(
            "retention.pitr_window is not set: WAL is locked for retention.pitr_window + \
             s3.object_lock_margin and backups for at least as long; set retention.pitr_window \
             (WALSHIP_RETENTION_PITR_WINDOW), and the calendar rules you keep backups by"
                .to_string(),
        );
    };
    let days = |n: u32, unit: u64| DAY.saturating_mul(u32::try_from(unit).unwrap_or(1) * n);
    let backup = pitr.max(days(policy.daily, 1));
    let longest = backup
        .max(days(policy.weekly, 7))
        .max(days(policy.monthly, 31))
        .max(days(policy.yearly, 366));
    let other = longest.saturating_add(margin);
    if other > MAX_LOCK {
        return Err(format!(
            "it would lock objects for {} (the longest retention rule plus s3.object_lock_margin); \
             walship locks for at most 100 years",
            humantime::format_duration(other)
        ));
    }
    Ok(LockPolicy {
        mode,
        margin,
        wal: pitr.saturating_add(margin),
        backup: backup.saturating_add(margin),
        other,
    })
}

/// A kept backup whose lock must reach further.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockExtension {
    /// The backup.
    pub id: BackupId,
    /// Its objects and WAL are locked at least until then.
    pub until: DateTime<Utc>,
    /// The rules that ask for it: calendar rules of closed periods, `pinned`.
    pub rules: Vec<Rule>,
}

impl LockExtension {
    /// Rolling (pinned only): renewed each time less than `until - margin` is left, so
    /// that not every run rewrites every pinned object's retention.
    fn is_rolling(&self) -> bool {
        self.rules == [Rule::Pinned]
    }
}

/// The extensions `plan` calls for: one per kept backup held by a weekly, monthly or yearly
/// rule whose period has ended at `plan.now`, or pinned (a rolling extension: now + a new
/// backup's lock, renewed once less than that minus the margin is left).
pub fn extensions(
    plan: &Plan,
    inventory: &Inventory,
    policy: &Policy,
    lock: &LockPolicy,
) -> Vec<LockExtension> {
    let margin = chrono::Duration::from_std(lock.margin).unwrap_or(chrono::Duration::MAX);
    let rolling = chrono::Duration::from_std(lock.backup).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    for kept in &plan.kept {
        let Some(stored) = inventory.backups.iter().find(|b| b.id() == kept.id) else {
            continue;
        };
        let start = stored.manifest.start_time;
        let mut until: Option<DateTime<Utc>> = None;
        let mut rules = Vec::new();
        if kept.rules.contains(&Rule::Pinned) {
            until = plan.now.checked_add_signed(rolling);
            rules.push(Rule::Pinned);
        }
        for &rule in &kept.rules {
            let (period, count) = match rule {
                Rule::Weekly => (Period::Week, policy.weekly),
                Rule::Monthly => (Period::Month, policy.monthly),
                Rule::Yearly => (Period::Year, policy.yearly),
                _ => continue,
            };
            let tz = policy.timezone;
            if tz.bucket(start, period) == tz.bucket(plan.now, period) {
                continue; // still open: a newer backup may take its place
            }
            let Some(end) = period_start_after(tz, start, period, count) else {
                continue;
            };
            let end = end
                .checked_add_signed(margin)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            until = Some(until.map_or(end, |u| u.max(end)));
            rules.push(rule);
        }
        if let Some(until) = until {
            out.push(LockExtension {
                id: kept.id,
                until,
                rules,
            });
        }
    }
    out
}

/// The start of the period `n` periods after the one holding `time`, in `tz`.
fn period_start_after(
    tz: Timezone,
    time: DateTime<Utc>,
    period: Period,
    n: u32,
) -> Option<DateTime<Utc>> {
    match tz {
        Timezone::Fixed(offset) => start_after(&offset, time, period, n),
        Timezone::Named(zone) => start_after(&zone, time, period, n),
    }
}

fn start_after<Tz: TimeZone>(
    tz: &Tz,
    time: DateTime<Utc>,
    period: Period,
    n: u32,
) -> Option<DateTime<Utc>> {
    let local = time.with_timezone(tz).date_naive();
    let first = match period {
        Period::Day => local,
        Period::Week => {
            local.checked_sub_days(Days::new(u64::from(local.weekday().num_days_from_monday())))?
        }
        Period::Month => local.with_day(1)?,
        Period::Year => NaiveDate::from_ymd_opt(local.year(), 1, 1)?,
    };
    let next = match period {
        Period::Day => first.checked_add_days(Days::new(u64::from(n)))?,
        Period::Week => first.checked_add_days(Days::new(7 * u64::from(n)))?,
        Period::Month => first.checked_add_months(Months::new(n))?,
        Period::Year => first.checked_add_months(Months::new(n.checked_mul(12)?))?,
    };
    // The earliest instant of that local midnight (a zone's DST gap: the first valid one).
    let midnight = next.and_hms_opt(0, 0, 0)?;
    (0..3)
        .find_map(|h| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// What [`extend_locks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LockReport {
    /// The extensions the plan called for.
    pub extensions: Vec<LockExtension>,
    /// Objects whose retain-until date was moved forward.
    pub objects_extended: usize,
    /// Objects already locked long enough.
    pub objects_already_locked: usize,
    /// Backups skipped because their manifest was already locked long enough (done by an
    /// earlier run: the manifest is extended last).
    pub backups_already_locked: Vec<BackupId>,
}

/// Carries out [`extensions`] and extends `walship.json` and `keys/` to now + the longest
/// duration. A failure stops the run (a lock that should hold and does not is an error).
pub async fn extend_locks(
    repo: &Repository,
    inventory: &Inventory,
    plan: &Plan,
    policy: &Policy,
    lock: &LockPolicy,
) -> Result<LockReport, StorageError> {
    let mut report = LockReport {
        extensions: extensions(plan, inventory, policy, lock),
        ..LockReport::default()
    };
    let storage = repo.storage();
    for ext in report.extensions.clone() {
        let Some(stored) = inventory.backups.iter().find(|b| b.id() == ext.id) else {
            continue;
        };
        // A date already past (`--now` in the past) extends nothing, and S3 refuses it.
        if ext.until <= Utc::now() {
            continue;
        }
        let target = lock.until(SystemTime::from(ext.until));
        let enough = if ext.is_rolling() {
            target
                .retain_until
                .checked_sub(lock.margin)
                .unwrap_or(target.retain_until)
        } else {
            target.retain_until
        };
        let manifest = layout::manifest_key(ext.id);
        if storage
            .lock_of(&manifest)
            .await?
            .is_some_and(|l| l.retain_until >= enough)
        {
            report.backups_already_locked.push(ext.id);
            continue;
        }
        let m = &stored.manifest;
        let seg_size = inventory.seg_size;
        let (first, last) = (
            SegNo::containing(m.start_lsn, seg_size),
            SegNo::containing(m.stop_lsn, seg_size),
        );
        let top = m.stop_timeline.max(m.start_timeline);
        let wal = inventory.wal.iter().filter(|w| {
            w.name
                .segment()
                .is_some_and(|s| s.timeline() <= top && first <= s.segno() && s.segno() <= last)
        });
        let keys: Vec<ObjectKey> = wal
            .map(|w| w.meta.key.clone())
            .chain(
                stored
                    .objects
                    .iter()
                    .filter(|o| o.key != manifest)
                    .map(|o| o.key.clone()),
            )
            .chain(std::iter::once(manifest.clone()))
            .collect();
        for key in &keys {
            match storage.extend_lock(key, target).await? {
                Extension::Extended => report.objects_extended += 1,
                Extension::AlreadyLonger => report.objects_already_locked += 1,
            }
        }
    }
    let root_until = lock.until(SystemTime::now() + lock.other);
    let mut root = vec![layout::identity_key()];
    root.extend(storage.list("keys/").await?.into_iter().map(|m| m.key));
    for key in &root {
        match storage.extend_lock(key, root_until).await {
            Ok(Extension::Extended) => report.objects_extended += 1,
            Ok(Extension::AlreadyLonger) => report.objects_already_locked += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Sets (`on`, for `pin`) or releases (for `unpin`) the legal hold of every object under
/// `backups/<id>/`, pin records included; returns how many objects it changed. A version
/// under legal hold cannot be deleted whatever its retention says, until released.
pub async fn set_backup_legal_hold(
    repo: &Repository,
    id: BackupId,
    on: bool,
) -> Result<usize, StorageError> {
    let objects = repo.storage().list(&layout::backup_prefix(id)).await?;
    for object in &objects {
        repo.storage().set_legal_hold(&object.key, on).await?;
    }
    Ok(objects.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn durations_come_from_the_policy() {
        let policy = Policy {
            pitr_window: Some(DAY * 7),
            daily: 14,
            monthly: 12,
            ..Policy::default()
        };
        let lock = lock_policy(LockMode::Compliance, DAY, &policy).unwrap();
        assert_eq!(lock.wal, DAY * 8);
        assert_eq!(lock.backup, DAY * 15);
        assert_eq!(lock.other, DAY * (12 * 31 + 1));
        let no_window = Policy {
            daily: 7,
            ..Policy::default()
        };
        let err = lock_policy(LockMode::Governance, DAY, &no_window).unwrap_err();
        assert!(err.contains("retention.pitr_window"), "{err}");
        let absurd = Policy {
            pitr_window: Some(DAY),
            yearly: 7000,
            ..Policy::default()
        };
        let err = lock_policy(LockMode::Compliance, DAY, &absurd).unwrap_err();
        assert!(err.contains("100 years"), "{err}");
    }

    #[test]
    fn a_closed_period_ends_n_periods_later() {
        let tz = Timezone::default();
        let t = utc("2026-03-17T10:00:00Z");
        assert_eq!(
            period_start_after(tz, t, Period::Month, 2),
            Some(utc("2026-05-01T00:00:00Z"))
        );
        assert_eq!(
            period_start_after(tz, t, Period::Year, 7),
            Some(utc("2033-01-01T00:00:00Z"))
        );
        // 2026-03-17 is a Tuesday: its ISO week began on Monday the 16th.
        assert_eq!(
            period_start_after(tz, t, Period::Week, 1),
            Some(utc("2026-03-23T00:00:00Z"))
        );
        let paris = Timezone::parse("Europe/Paris").unwrap();
        assert_eq!(
            period_start_after(paris, t, Period::Month, 1),
            Some(utc("2026-03-31T22:00:00Z"))
        );
    }
}
