//! The Prometheus alert rules in docker/prometheus/ (issue 21): `promtool check rules`
//! accepts them, and `promtool test rules` shows each alert firing on series that should
//! fire it and silent on a healthy repository. promtool: Debian package `prometheus`. The
//! Grafana dashboard in docker/grafana/ is JSON and queries only exported metrics.

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup-test-deps installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_are_valid_and_fire_as_the_dr_plans_say() {
    promtool(&["check", "rules", "walship-alerts.yml"]);
    promtool(&["test", "rules", "walship-alerts.test.yml"]);
}

/// The metrics walship exports (common/src/metrics/).
const EXPORTED: [&str; 12] = [
    "walship_backup_last_success_timestamp_seconds",
    "walship_backup_duration_seconds",
    "walship_backup_size_bytes",
    "walship_wal_segments_archived_total",
    "walship_wal_last_archived_timestamp_seconds",
    "walship_pitr_window_seconds",
    "walship_repository_size_bytes",
    "walship_restore_drill_last_timestamp_seconds",
    "walship_restore_drill_duration_seconds",
    "walship_restore_drill_rpo_seconds",
    "walship_restore_drill_success",
    // Comes with verify (issue 20).
    "walship_verify_last_success_timestamp_seconds",
];

fn unknown_metrics(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("walship_") && !EXPORTED.contains(w))
        .collect()
}

/// The dashboard parses, and every panel queries exported metrics.
#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    let text = include_str!("../../docker/grafana/walship-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let exprs: Vec<&str> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in exprs {
        assert_eq!(unknown_metrics(expr), Vec::<&str>::new(), "{expr}");
    }
}

/// Every metric an alert uses is one walship exports (a typo would never fire).
#[test]
fn alert_rules_use_only_walship_metric_names() {
    let rules = include_str!("../../docker/prometheus/walship-alerts.yml");
    assert_eq!(unknown_metrics(rules), Vec::<&str>::new());
}
