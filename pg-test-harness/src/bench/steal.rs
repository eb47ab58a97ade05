//! CPU time the hypervisor gave to other guests while this one wanted it ("steal" in
//! `/proc/stat`), over an interval.
//!
//! On a shared virtual machine a timing that meets a burst of another guest's work is slowed
//! by whatever that burst takes, and nothing in the timing says so: `bench fetch` rounds of
//! the same work ranged from 2.6 to 9.2 s while steal was 20-40 %. The benches print the steal
//! beside their timings so that a reader can tell the host's noise from the code's.

/// The cumulative CPU counters of the whole machine at one moment (clock ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// The counters now; `None` where `/proc/stat` cannot be read (not Linux).
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(stat.lines().next()?)
    }

    /// Reads the aggregate `cpu` line of `/proc/stat`: user, nice, system, idle, iowait,
    /// irq, softirq, steal (guest time is already counted in user and nice).
    fn parse(line: &str) -> Option<CpuTimes> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if ticks.len() < 8 {
            return None;
        }
        Some(CpuTimes {
            steal: ticks[7],
            total: ticks.iter().sum(),
        })
    }

    /// The share of all CPU time since `earlier` that was stolen (0.0 to 1.0); `None` when
    /// no tick passed.
    pub fn steal_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// Steal above this share of CPU time makes a timing the host's rather than the code's.
pub const NOISY_STEAL: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_steal_share_between_two_moments() {
        let a = CpuTimes::parse("cpu  100 0 50 800 10 0 0 40 0 0").unwrap();
        let b = CpuTimes::parse("cpu  160 0 70 900 10 0 0 60 5 0").unwrap();
        // 200 ticks passed, 20 of them stolen.
        assert_eq!(b.steal_since(&a), Some(0.1));
        assert_eq!(a.steal_since(&a), None);
        assert_eq!(a.steal_since(&b), None, "counters never go back");
        assert_eq!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3"), None);
        assert!(
            CpuTimes::now().is_some(),
            "this Linux machine has /proc/stat"
        );
    }
}
