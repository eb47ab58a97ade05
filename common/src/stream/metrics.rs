//! [`StreamMetrics`]: what `walship stream` exposes on `--metrics-addr`, kept in atomics that
//! the receiver and the uploader update, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::lsn::Lsn;

/// Counters and gauges of one `walship stream` process.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    received_lsn: AtomicU64,
    flushed_lsn: AtomicU64,
    primary_lsn: AtomicU64,
    /// Unix time (ms) when the oldest received-but-not-stored byte arrived; 0 when none.
    unflushed_since_ms: AtomicU64,
    last_upload_ms: AtomicU64,
    segments_uploaded: AtomicU64,
    tails_uploaded: AtomicU64,
    history_uploaded: AtomicU64,
    upload_retries: AtomicU64,
    /// Time spent storing tails, in microseconds (with `tails_uploaded`, the mean).
    tail_upload_us: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    uploader_healthy: AtomicBool,
}

/// Which kind of object an upload stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// A complete segment.
    Segment,
    /// A partial tail.
    Tail,
    /// A timeline history file.
    History,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StreamMetrics {
    /// WAL received up to `lsn`.
    pub fn received(&self, lsn: Lsn) {
        self.received_lsn.fetch_max(lsn.0, Ordering::Relaxed);
        if lsn.0 > self.flushed_lsn.load(Ordering::Relaxed) {
            let _ = self.unflushed_since_ms.compare_exchange(
                0,
                now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// WAL durably in the repository up to `lsn`.
    pub fn flushed(&self, lsn: Lsn) {
        self.flushed_lsn.fetch_max(lsn.0, Ordering::Relaxed);
        if lsn.0 >= self.received_lsn.load(Ordering::Relaxed) {
            self.unflushed_since_ms.store(0, Ordering::Relaxed);
        } else {
            // Still behind: the lag is measured from now on from what remains.
            self.unflushed_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The server's WAL end as it last reported it.
    pub fn primary(&self, lsn: Lsn) {
        self.primary_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// An upload of `kind` succeeded.
    pub fn uploaded(&self, kind: UploadKind) {
        let counter = match kind {
            UploadKind::Segment => &self.segments_uploaded,
            UploadKind::Tail => &self.tails_uploaded,
            UploadKind::History => &self.history_uploaded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_upload_ms.store(now_ms(), Ordering::Relaxed);
        self.uploader_healthy.store(true, Ordering::Relaxed);
    }

    /// A tail upload took `took` (check, encode, write, fsync or PUT).
    pub fn tail_upload_time(&self, took: std::time::Duration) {
        self.tail_upload_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// An upload failed and will be retried.
    pub fn upload_retry(&self) {
        self.upload_retries.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.uploader_healthy.store(false, Ordering::Relaxed);
    }

    /// A connection failed; a reconnect follows.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a replication connection is streaming.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.uploader_healthy.fetch_or(true, Ordering::Relaxed);
        }
    }

    /// WAL durably stored so far.
    pub fn flushed_lsn(&self) -> Lsn {
        Lsn(self.flushed_lsn.load(Ordering::Relaxed))
    }

    /// Whether a replication connection is streaming.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Healthy: streaming, and the last upload did not fail.
    pub fn is_healthy(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.uploader_healthy.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let received = load(&self.received_lsn);
        let flushed = load(&self.flushed_lsn);
        let primary = load(&self.primary_lsn).max(received);
        let since = load(&self.unflushed_since_ms);
        let lag_seconds = if since == 0 {
            0.0
        } else {
            now_ms().saturating_sub(since) as f64 / 1000.0
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "walship_stream_received_lsn",
            "gauge",
            "WAL received from the server, as a byte position.",
            &[("", received as f64)],
        );
        metric(
            "walship_stream_flushed_lsn",
            "gauge",
            "WAL durably stored in the repository, as a byte position.",
            &[("", flushed as f64)],
        );
        metric(
            "walship_stream_primary_lsn",
            "gauge",
            "The server's WAL end as it last reported it.",
            &[("", primary as f64)],
        );
        metric(
            "walship_stream_lag_bytes",
            "gauge",
            "Bytes of WAL the server has that the repository does not.",
            &[("", primary.saturating_sub(flushed) as f64)],
        );
        metric(
            "walship_stream_lag_seconds",
            "gauge",
            "How long the oldest received but not yet stored WAL has waited.",
            &[("", lag_seconds)],
        );
        metric(
            "walship_stream_last_upload_timestamp_seconds",
            "gauge",
            "Unix time of the last successful upload.",
            &[("", load(&self.last_upload_ms) as f64 / 1000.0)],
        );
        metric(
            "walship_stream_uploads_total",
            "counter",
            "Objects stored, by kind.",
            &[
                ("{kind=\"segment\"}", load(&self.segments_uploaded) as f64),
                ("{kind=\"partial\"}", load(&self.tails_uploaded) as f64),
                ("{kind=\"history\"}", load(&self.history_uploaded) as f64),
            ],
        );
        metric(
            "walship_stream_tail_upload_seconds_total",
            "counter",
            "Time spent storing partial tails (divide by the partial uploads for the mean).",
            &[("", load(&self.tail_upload_us) as f64 / 1e6)],
        );
        metric(
            "walship_stream_upload_retries_total",
            "counter",
            "Uploads that failed and were retried.",
            &[("", load(&self.upload_retries) as f64)],
        );
        metric(
            "walship_stream_errors_total",
            "counter",
            "Errors: failed uploads and lost connections.",
            &[("", load(&self.errors) as f64)],
        );
        metric(
            "walship_stream_reconnects_total",
            "counter",
            "Replication connections lost or refused (each followed by a reconnect).",
            &[("", load(&self.reconnects) as f64)],
        );
        metric(
            "walship_stream_up",
            "gauge",
            "1 while a replication connection is streaming.",
            &[(
                "",
                f64::from(u8::from(self.connected.load(Ordering::Relaxed))),
            )],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_lag() {
        let m = StreamMetrics::default();
        m.received(Lsn(1000));
        m.primary(Lsn(1500));
        m.flushed(Lsn(400));
        m.uploaded(UploadKind::Tail);
        let text = m.render();
        assert!(
            text.contains("walship_stream_received_lsn 1000\n"),
            "{text}"
        );
        assert!(text.contains("walship_stream_flushed_lsn 400\n"));
        assert!(text.contains("walship_stream_lag_bytes 1100\n"));
        assert!(text.contains("walship_stream_uploads_total{kind=\"partial\"} 1\n"));
        assert!(text.contains("# TYPE walship_stream_reconnects_total counter"));
        m.flushed(Lsn(1000));
        assert!(m.render().contains("walship_stream_lag_seconds 0\n"));
    }
}
