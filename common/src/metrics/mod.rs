//! Repository metrics for Prometheus, under the names DESIGN.md fixes: what the catalog and
//! one listing say (backups, WAL, size, PITR window) plus the last drill, rendered with the
//! `prometheus-client` crate and given in the classic Prometheus text format, which
//! Prometheus, node_exporter's textfile collector and `promtool check metrics` read.
//!
//! [`collect`] is cheap on purpose (one listing of the repository and the manifests, no WAL
//! read): `walship exporter` runs it every `--interval`, and `--metrics-textfile` after a
//! backup or drill. So `walship_pitr_window_seconds` runs from the oldest complete backup's
//! consistency point to the newest archived WAL object's time (`walship status` reads the
//! WAL for the exact newest commit).

mod copy_lag;

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pg::{ArchiveFileName, WalSegSize};
use crate::repo::{Repository, layout};
use crate::storage::Storage;

pub use copy_lag::{CopyLagFigures, render_copy_lag};

/// The last drill, as its report says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrillFigures {
    /// When it ended (seconds since the epoch).
    pub time: f64,
    /// Its RTO in seconds, when measured.
    pub rto_seconds: Option<f64>,
    /// Its RPO in seconds, when measured.
    pub rpo_seconds: Option<f64>,
    /// Whether it passed.
    pub success: bool,
}

/// What the metrics say, read from the repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoSnapshot {
    /// The repository (the `repository` label).
    pub repository: String,
    /// When the newest complete backup became consistent (seconds since the epoch).
    pub backup_last_success: Option<f64>,
    /// How long it took.
    pub backup_duration_seconds: Option<f64>,
    /// Its stored size.
    pub backup_size_bytes: Option<u64>,
    /// Complete WAL segments in the repository.
    pub wal_segments: u64,
    /// When the newest WAL object was written (seconds since the epoch).
    pub wal_last_archived: Option<f64>,
    /// Oldest backup's consistency point to the newest WAL object.
    pub pitr_window_seconds: Option<f64>,
    /// Bytes stored, all objects.
    pub repository_bytes: u64,
    /// The last drill.
    pub drill: Option<DrillFigures>,
    /// When `walship verify` last found the repository sound (its audit record).
    pub verify_last_success: Option<f64>,
}

fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// Reads the snapshot: one listing of the whole repository and the catalog. The drill is
/// the caller's to fill in (its report is read by the restore library).
pub async fn collect(repo: &Repository) -> Result<RepoSnapshot, crate::backup::BackupError> {
    let identity = repo.require_identity().await?;
    let seg_size = WalSegSize::new(u64::from(identity.wal_segment_size)).ok();
    let objects = repo.storage().list("").await?;
    let mut snapshot = RepoSnapshot {
        repository: crate::redact::redact_userinfo(repo.location()),
        repository_bytes: objects.iter().map(|m| m.size).sum(),
        ..RepoSnapshot::default()
    };
    let mut newest_wal: Option<DateTime<Utc>> = None;
    for meta in &objects {
        if !meta.key.as_str().starts_with(layout::WAL_PREFIX) {
            continue;
        }
        let parsed = seg_size.and_then(|s| ArchiveFileName::parse(meta.key.file_name(), s).ok());
        match parsed {
            Some(ArchiveFileName::Segment(_)) => snapshot.wal_segments += 1,
            Some(ArchiveFileName::Partial(_)) => {}
            _ => continue,
        }
        if let Some(t) = meta.last_modified.map(DateTime::<Utc>::from) {
            newest_wal = newest_wal.max(Some(t));
        }
    }
    snapshot.wal_last_archived = newest_wal.map(epoch);
    let catalog = crate::backup::read_catalog(repo).await?;
    let mine: Vec<_> = catalog
        .complete
        .iter()
        .filter(|b| b.system_identifier == identity.system_identifier)
        .collect();
    if let Some(newest) = mine.iter().max_by_key(|b| b.stop_time) {
        snapshot.backup_last_success = Some(epoch(newest.stop_time));
        snapshot.backup_duration_seconds = Some(newest.duration_ms as f64 / 1000.0);
        snapshot.backup_size_bytes = Some(newest.bytes_stored);
    }
    if let (Some(oldest), Some(newest)) = (mine.iter().map(|b| b.stop_time).min(), newest_wal) {
        snapshot.pitr_window_seconds = Some((epoch(newest) - epoch(oldest)).max(0.0));
    }
    snapshot.verify_last_success = crate::audit::newest_success(repo, "verify")
        .await?
        .map(|r| epoch(r.time));
    Ok(snapshot)
}

type Labels = Vec<(String, String)>;

/// The snapshot in the OpenMetrics text format.
pub fn render(s: &RepoSnapshot) -> String {
    let mut registry = Registry::default();
    let repo: Labels = vec![("repository".into(), s.repository.clone())];
    let mut backup = repo.clone();
    backup.push(("type".into(), "full".into()));
    let mut gauge = |name: &str, help: &str, labels: &Labels, value: Option<f64>| {
        let Some(value) = value else { return };
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        family.get_or_create(labels).set(value);
        registry.register(name, help, family);
    };
    gauge(
        "walship_backup_last_success_timestamp_seconds",
        "When the newest complete backup became consistent",
        &backup,
        s.backup_last_success,
    );
    gauge(
        "walship_backup_duration_seconds",
        "How long the newest complete backup took",
        &backup,
        s.backup_duration_seconds,
    );
    gauge(
        "walship_backup_size_bytes",
        "Stored size of the newest complete backup",
        &backup,
        s.backup_size_bytes.map(|b| b as f64),
    );
    gauge(
        "walship_wal_last_archived_timestamp_seconds",
        "When the newest WAL object reached the repository",
        &repo,
        s.wal_last_archived,
    );
    gauge(
        "walship_pitr_window_seconds",
        "From the oldest backup's consistency point to the newest archived WAL",
        &repo,
        s.pitr_window_seconds,
    );
    gauge(
        "walship_repository_size_bytes",
        "Bytes stored in the repository",
        &repo,
        Some(s.repository_bytes as f64),
    );
    gauge(
        "walship_verify_last_success_timestamp_seconds",
        "When walship verify last found the repository sound",
        &repo,
        s.verify_last_success,
    );
    if let Some(d) = &s.drill {
        gauge(
            "walship_restore_drill_last_timestamp_seconds",
            "When the last restore drill ended",
            &repo,
            Some(d.time),
        );
        gauge(
            "walship_restore_drill_duration_seconds",
            "RTO of the last restore drill: start to the first accepted write",
            &repo,
            d.rto_seconds,
        );
        gauge(
            "walship_restore_drill_rpo_seconds",
            "Achieved RPO of the last restore drill",
            &repo,
            d.rpo_seconds,
        );
        gauge(
            "walship_restore_drill_success",
            "1 if the last restore drill passed, else 0",
            &repo,
            Some(if d.success { 1.0 } else { 0.0 }),
        );
    }
    // A counter: the encoder names its sample walship_wal_segments_archived_total.
    let segments = Family::<Labels, Counter<u64>>::default();
    segments.get_or_create(&repo).inc_by(s.wal_segments);
    registry.register(
        "walship_wal_segments_archived",
        "Complete WAL segments in the repository",
        segments,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    classic_text(&out)
}

/// The crate writes OpenMetrics; node_exporter's textfile collector and `promtool check
/// metrics` read the classic Prometheus text format, in which a counter's HELP and TYPE
/// lines name its sample (`x_total`, not `x`) and there is no `# EOF`.
fn classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The content type of [`render`]'s output (the classic Prometheus text format).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_design_names() {
        let s = RepoSnapshot {
            repository: "file:///r".into(),
            backup_last_success: Some(1.7e9),
            backup_duration_seconds: Some(3.5),
            backup_size_bytes: Some(1234),
            wal_segments: 7,
            wal_last_archived: Some(1.7e9 + 60.0),
            pitr_window_seconds: Some(60.0),
            repository_bytes: 99,
            drill: Some(DrillFigures {
                time: 1.7e9,
                rto_seconds: Some(9.0),
                rpo_seconds: Some(1.5),
                success: true,
            }),
            verify_last_success: Some(1.7e9 + 30.0),
        };
        let text = render(&s);
        for line in [
            "walship_backup_last_success_timestamp_seconds{repository=\"file:///r\",type=\"full\"} 1700000000.0",
            "walship_wal_segments_archived_total{repository=\"file:///r\"} 7",
            "walship_restore_drill_success{repository=\"file:///r\"} 1.0",
            "walship_repository_size_bytes{repository=\"file:///r\"} 99.0",
            "walship_verify_last_success_timestamp_seconds{repository=\"file:///r\"} 1700000030.0",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
