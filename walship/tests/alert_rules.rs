//! The Prometheus alert rules in docker/prometheus/ (issue 21): `promtool check rules`
//! accepts them, and `promtool test rules` shows each alert firing on series that should
//! fire it and silent on a healthy repository. promtool: Debian package `prometheus`.

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

/// Every metric an alert uses is one walship exports (a typo would never fire).
#[test]
fn alert_rules_use_only_walship_metric_names() {
    let rules = include_str!("../../docker/prometheus/walship-alerts.yml");
    let known = [
        "walship_backup_last_success_timestamp_seconds",
        "walship_wal_last_archived_timestamp_seconds",
        "walship_restore_drill_success",
        "walship_restore_drill_last_timestamp_seconds",
        "walship_restore_drill_rpo_seconds",
        "walship_verify_last_success_timestamp_seconds",
    ];
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("walship_") {
            assert!(
                known.contains(&word),
                "unknown metric {word} in the alert rules"
            );
        }
    }
}
