//! A throwaway PostgreSQL cluster: initdb, start/stop with pg_ctl, cleanup on drop.
//!
//! Each cluster owns a private work directory under /tmp (`walship-pg<major>-*`) holding the
//! data directory (for clusters made by [`ClusterBuilder`]), the unix socket directory and the
//! server log. The server listens on 127.0.0.1 only, on a port nobody else had when it started.
//! When the harness runs as root, every Postgres program runs as the `postgres` OS user.
//!
//! Failures panic with the server log attached: these are test fixtures, and the log is what a
//! developer needs to see.

mod builder;
mod sql;

pub use builder::ClusterBuilder;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::install::PgInstall;
use crate::os_user;

/// How to stop a server (pg_ctl's `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Roll back open transactions, checkpoint, exit cleanly.
    Fast,
    /// Exit at once without a checkpoint, as after a crash: recovery runs at next start.
    Immediate,
}

impl StopMode {
    fn pg_ctl_name(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How many times `start` picks a new port after "Address already in use".
const PORT_ATTEMPTS: usize = 5;
/// Seconds pg_ctl waits for start and stop.
const PG_CTL_TIMEOUT_SECS: &str = "120";
/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 80;

/// A PostgreSQL cluster for one test. Stops the server (immediate) and removes its work
/// directory on drop.
#[derive(Debug)]
pub struct Cluster {
    install: PgInstall,
    data_dir: PathBuf,
    port: u16,
    socket_dir: PathBuf,
    log_path: PathBuf,
    /// Removed on drop; holds socket dir, log and (for initdb'd clusters) the data dir.
    work: tempfile::TempDir,
}

impl Cluster {
    /// A builder for a new cluster of `install` (initdb happens in `init`/`start`).
    pub fn builder(install: &PgInstall) -> ClusterBuilder {
        ClusterBuilder::new(install)
    }

    /// Wraps an existing data directory (e.g. a restored copy) without starting it; same as
    /// [`ClusterBuilder::from_data_dir`].
    pub fn from_data_dir(install: &PgInstall, dir: &Path) -> Cluster {
        ClusterBuilder::from_data_dir(install, dir)
    }

    /// The installation this cluster runs.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file (pg_ctl `-l`), appended to across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A libpq connection string for the superuser over TCP.
    pub fn connstr(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Starts the server and waits until it accepts connections. Retries on a new port when the
    /// port was taken meanwhile. Panics with the server log on failure.
    pub fn start(&mut self) {
        if let Err(message) = self.try_start() {
            self.fail(&message);
        }
    }

    /// Starts the server like [`Cluster::start`], but reports a failed start (for tests where
    /// Postgres is expected to refuse or to stop during startup, such as a recovery that
    /// must abort) instead of panicking. The error holds pg_ctl's output; see [`Cluster::log`].
    pub fn try_start(&mut self) -> Result<(), String> {
        for attempt in 1..=PORT_ATTEMPTS {
            let log_before = self.log().len();
            let mut cmd = self.pg_command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_path)
                .args(["-w", "-t", PG_CTL_TIMEOUT_SECS]);
            let out = run(&mut cmd);
            if out.status.success() {
                return Ok(());
            }
            let new_log = self.log().get(log_before..).unwrap_or_default().to_owned();
            if new_log.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                self.port = crate::ports::free_port();
                self.append_conf(&format!("port = {}", self.port));
                continue;
            }
            return Err(format!("pg_ctl start failed: {}", describe(&out)));
        }
        Err("pg_ctl start failed: no free port".to_string())
    }

    /// Stops the server with `mode` and waits until it is gone; no-op when it is not running.
    /// Panics with the server log when pg_ctl fails.
    pub fn stop(&mut self, mode: StopMode) {
        if !self.is_running() {
            return;
        }
        let out = run(&mut self.stop_command(mode));
        if !out.status.success() {
            self.fail(&format!(
                "pg_ctl stop -m {} failed: {}",
                mode.pg_ctl_name(),
                describe(&out)
            ));
        }
    }

    /// True while a postmaster runs on this data directory (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.data_dir);
        try_run(&mut cmd).is_ok_and(|out| out.status.success())
    }

    /// Adds a line to postgresql.conf (takes effect at the next start or [`Cluster::reload`]).
    pub fn append_conf(&self, line: &str) {
        let path = self.data_dir.join("postgresql.conf");
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            panic!("appending `{line}` to {}: {e}", path.display());
        }
    }

    /// Replaces pg_hba.conf (takes effect at the next start or [`Cluster::reload`]).
    pub fn set_hba(&self, contents: &str) {
        let path = self.data_dir.join("pg_hba.conf");
        if let Err(e) = std::fs::write(&path, contents) {
            panic!("writing {}: {e}", path.display());
        }
    }

    /// The server log so far (empty before the first start).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Makes `cmd` run as the OS user that owns the cluster's files when the harness runs as
    /// root (e.g. pg_waldump, pg_checksums, an archive command under test); no-op otherwise.
    /// Also gives it a readable working directory if it has none.
    pub fn run_as_owner(&self, cmd: &mut Command) {
        os_user::run_as_cluster_owner(cmd);
    }

    /// A Command for a tool of this cluster's install, run as the cluster owner.
    pub fn pg_command(&self, tool: &str) -> Command {
        let mut cmd = self.install.command(tool);
        cmd.current_dir(self.work.path());
        self.run_as_owner(&mut cmd);
        cmd
    }

    fn stop_command(&self, mode: StopMode) -> Command {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.data_dir).args([
            "-m",
            mode.pg_ctl_name(),
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
        ]);
        cmd
    }

    /// Panics with `what` and the tail of the server log.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "PG{} cluster {} (port {}): {what}\n{}",
            self.install.major,
            self.data_dir.display(),
            self.port,
            self.log_excerpt()
        );
    }

    /// The last lines of the server log, framed for a panic message.
    pub fn log_excerpt(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "--- server log {} (last {} lines) ---\n{}\n--- end of server log ---",
            self.log_path.display(),
            tail.len(),
            tail.join("\n")
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.is_running() {
            return;
        }
        match try_run(&mut self.stop_command(StopMode::Immediate)) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "pg-test-harness: stopping PG{} on port {} failed: {}",
                self.install.major,
                self.port,
                describe(&out)
            ),
            Err(e) => eprintln!("pg-test-harness: running pg_ctl stop: {e}"),
        }
    }
}

/// Runs a command to completion with stdin closed and output captured.
fn try_run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(std::process::Stdio::null()).output()
}

/// Runs a command to completion; panics naming the program when it cannot be spawned.
fn run(cmd: &mut Command) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("running {:?}: {e}", cmd.get_program()))
}

/// Exit status plus stdout/stderr of a finished command, for messages.
fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}
