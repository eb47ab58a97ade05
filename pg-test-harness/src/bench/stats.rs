//! [`Runs`]: the measurements of one series of calls (one per segment) and the figures a
//! benchmark table wants from them: latency mean and percentiles, throughput, peak RSS.

use std::time::Duration;

use super::Measurement;

/// Bytes in a MB as used for throughput (10^6, like `dd` and most storage vendors).
const MB: f64 = 1_000_000.0;

/// Every call of one series, in order, with the total wall time of the series.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    calls: Vec<Measurement>,
    total: Duration,
    bytes: u64,
}

impl Runs {
    /// An empty series.
    pub fn new() -> Self {
        Runs::default()
    }

    /// Adds one call.
    pub fn push(&mut self, call: Measurement) {
        self.calls.push(call);
    }

    /// Sets the wall time of the whole series (including what the driver did between calls)
    /// and how many bytes of WAL it moved.
    pub fn finish(&mut self, total: Duration, bytes: u64) {
        self.total = total;
        self.bytes = bytes;
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call was recorded.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Mean wall time of a call, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.calls.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.calls.iter().map(|c| ms(c.wall)).sum();
        sum / self.calls.len() as f64
    }

    /// The `p`-th percentile (0-100, nearest rank) of a call's wall time, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut walls: Vec<f64> = self.calls.iter().map(|c| ms(c.wall)).collect();
        if walls.is_empty() {
            return 0.0;
        }
        walls.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * walls.len() as f64).ceil() as usize;
        walls[rank.clamp(1, walls.len()) - 1]
    }

    /// Throughput of the whole series in MB/s of WAL.
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.total.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.bytes as f64 / MB / secs
    }

    /// Wall time of the whole series in seconds.
    pub fn total_s(&self) -> f64 {
        self.total.as_secs_f64()
    }

    /// CPU time (user + system) of all calls together, in seconds.
    pub fn cpu_s(&self) -> f64 {
        self.calls
            .iter()
            .map(|c| (c.user + c.system).as_secs_f64())
            .sum()
    }

    /// The largest peak RSS of any one call, in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.calls
            .iter()
            .map(Measurement::peak_rss_mib)
            .fold(0.0, f64::max)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn call(wall_ms: u64, rss_mib: u64) -> Measurement {
        Measurement {
            status: ExitStatus::from_raw(0),
            wall: Duration::from_millis(wall_ms),
            user: Duration::from_millis(wall_ms / 2),
            system: Duration::from_millis(wall_ms / 4),
            peak_rss_bytes: rss_mib * 1024 * 1024,
        }
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let mut runs = Runs::new();
        for wall in 1..=100 {
            runs.push(call(wall, wall % 7));
        }
        runs.finish(Duration::from_secs(2), 400_000_000);
        assert_eq!(runs.len(), 100);
        assert!((runs.mean_ms() - 50.5).abs() < 1e-9);
        assert_eq!(runs.percentile_ms(50.0), 50.0);
        assert_eq!(runs.percentile_ms(99.0), 99.0);
        assert_eq!(runs.percentile_ms(100.0), 100.0);
        assert_eq!(runs.percentile_ms(0.0), 1.0);
        assert_eq!(runs.mb_per_s(), 200.0);
        assert_eq!(runs.max_rss_mib(), 6.0);
        assert!((runs.cpu_s() - 3.725).abs() < 1e-9, "{}", runs.cpu_s());
    }

    #[test]
    fn empty_series_reports_zeros() {
        let runs = Runs::new();
        assert!(runs.is_empty());
        assert_eq!(runs.mean_ms(), 0.0);
        assert_eq!(runs.percentile_ms(99.0), 0.0);
        assert_eq!(runs.mb_per_s(), 0.0);
    }
}
