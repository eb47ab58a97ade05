//! Wall time and peak resident memory of one child process.
//!
//! Peak RSS comes from `wait4(2)`'s rusage for that child (which includes descendants it waited
//! for), through the `wait4` crate's safe wrapper: nix 0.29 has no `wait4`, and the workspace
//! forbids unsafe code. `getrusage(RUSAGE_CHILDREN)` would not do: it is a maximum over every
//! child this process ever reaped.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use wait4::Wait4;

/// What one run of a child process cost.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Exit status of the child.
    pub status: ExitStatus,
    /// Time from spawn to exit.
    pub wall: Duration,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub system: Duration,
    /// Peak resident set size in bytes.
    pub peak_rss_bytes: u64,
}

impl Measurement {
    /// Peak RSS in MiB, for tables.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Runs `cmd` to completion and measures it. Its stdio is whatever `cmd` was configured with.
pub fn measure(cmd: &mut Command) -> std::io::Result<Measurement> {
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("spawning {:?}: {e}", cmd.get_program()))
    })?;
    let usage = child.wait4()?;
    Ok(Measurement {
        status: usage.status,
        wall: start.elapsed(),
        user: usage.rusage.utime,
        system: usage.rusage.stime,
        peak_rss_bytes: usage.rusage.maxrss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_exit_status_and_wall_time() {
        let m = measure(Command::new("/bin/sh").args(["-c", "sleep 0.2; exit 3"])).unwrap();
        assert_eq!(m.status.code(), Some(3));
        assert!(m.wall >= Duration::from_millis(200), "{m:?}");
        assert!(m.peak_rss_bytes > 0);
    }

    #[test]
    fn peak_rss_sees_a_big_allocation() {
        // The shell holds a 40 MB string in memory.
        let script = "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}";
        let small = measure(Command::new("/bin/sh").args(["-c", "true"])).unwrap();
        let big = measure(
            Command::new("/bin/sh")
                .args(["-c", script])
                .stdout(std::process::Stdio::null()),
        )
        .unwrap();
        assert!(big.status.success());
        assert!(big.peak_rss_bytes >= 40_000_000, "{big:?}");
        assert!(
            small.peak_rss_bytes < 20_000_000,
            "per-child, not cumulative: {small:?}"
        );
    }

    #[test]
    fn spawn_failure_names_the_program() {
        let err = measure(&mut Command::new("/nonexistent/tool")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tool"));
    }
}
