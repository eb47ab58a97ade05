//! The copy lag of `walship copy` as metrics: how far each second repository is behind its
//! source, in WAL bytes and in seconds, and when a copy last succeeded. Plain figures in
//! (the copy engine's report), text out; `copy --metrics-textfile` writes it beside the
//! repository metrics' file (node_exporter reads every `*.prom` file of its directory).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One target's figures after a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyLagFigures {
    /// The source repository (a location, no credentials).
    pub repository: String,
    /// The target repository.
    pub target: String,
    /// WAL bytes the target is behind; `None` when this run failed.
    pub lag_bytes: Option<u64>,
    /// Seconds the target is behind, when known.
    pub lag_seconds: Option<u64>,
    /// When the copy to this target last succeeded (seconds since the epoch); `None` when
    /// this run failed.
    pub last_success: Option<f64>,
}

/// The figures in the classic Prometheus text format: `walship_copy_lag_bytes`,
/// `walship_copy_lag_seconds`, `walship_copy_last_success_timestamp_seconds`, labelled by
/// `repository` and `target`.
pub fn render_copy_lag(figures: &[CopyLagFigures]) -> String {
    type Labels = Vec<(String, String)>;
    let mut registry = Registry::default();
    let bytes = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let seconds = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let success = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for f in figures {
        let labels: Labels = vec![
            ("repository".into(), f.repository.clone()),
            ("target".into(), f.target.clone()),
        ];
        if let Some(b) = f.lag_bytes {
            bytes.get_or_create(&labels).set(b as f64);
        }
        if let Some(s) = f.lag_seconds {
            seconds.get_or_create(&labels).set(s as f64);
        }
        if let Some(t) = f.last_success {
            success.get_or_create(&labels).set(t);
        }
    }
    registry.register(
        "walship_copy_lag_bytes",
        "WAL bytes between the newest segment at the source and at the copy's target",
        bytes,
    );
    registry.register(
        "walship_copy_lag_seconds",
        "Seconds between the source storing its newest segment and the newest one the target has",
        seconds,
    );
    registry.register(
        "walship_copy_last_success_timestamp_seconds",
        "When walship copy last completed to the target",
        success,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    super::classic_text(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_lag_per_target() {
        let text = render_copy_lag(&[CopyLagFigures {
            repository: "s3://a/p".into(),
            target: "s3://b/p".into(),
            lag_bytes: Some(16_777_216),
            lag_seconds: Some(42),
            last_success: Some(1_700_000_000.0),
        }]);
        assert!(
            text.contains(
                "walship_copy_lag_bytes{repository=\"s3://a/p\",target=\"s3://b/p\"} 16777216.0"
            ),
            "{text}"
        );
        assert!(text.contains("walship_copy_lag_seconds{"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
