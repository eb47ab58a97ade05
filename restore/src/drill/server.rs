//! The drill's Postgres: started on the restored directory with the backup's major, on a
//! free loopback port, with its own socket directory and `pg_hba.conf` (local trust only),
//! archiving off, as the directory's owner; waited for until recovery has ended and it
//! accepts writes; stopped with a fast shutdown.
//!
//! `postgres` is run directly (not `pg_ctl`), so that the drill owns the process, bounds
//! every wait itself, and can stop it whatever happens.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::pg_bin::PgBinaries;
use crate::owner::Owner;

/// Why the drill's server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Preparing or spawning failed.
    #[error("start postgres on {dir}: {source}")]
    Spawn {
        /// The data directory.
        dir: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The server exited before it accepted writes.
    #[error("postgres on {dir} exited ({status}) before recovery ended; its log ends with:\n{log}")]
    Exited {
        /// The data directory.
        dir: PathBuf,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// It did not accept writes within the timeout.
    #[error(
        "postgres on {dir} did not end recovery and accept writes within {secs} s; its log ends with:\n{log}"
    )]
    Timeout {
        /// The data directory.
        dir: PathBuf,
        /// The timeout.
        secs: u64,
        /// The end of its log.
        log: String,
    },
    /// A query failed.
    #[error("query on the drill server: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// A running drill server.
pub struct DrillServer {
    child: Child,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    user: String,
}

/// Where and as whom to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The restored data directory.
    pub data: PathBuf,
    /// A directory for the socket, the log and `pg_hba.conf` (outside the data directory).
    pub work: PathBuf,
    /// The OS user to run as (`None`: this process's user).
    pub os_user: Option<Owner>,
    /// The database role to connect as.
    pub db_user: String,
}

impl DrillServer {
    /// Starts `postgres` and returns at once (see [`DrillServer::wait_writable`]).
    pub fn start(bins: &PgBinaries, spec: &ServerSpec) -> Result<DrillServer, ServerError> {
        let fail = |source| ServerError::Spawn {
            dir: spec.data.clone(),
            source,
        };
        let socket_dir = spec.work.join("socket");
        std::fs::create_dir_all(&socket_dir).map_err(fail)?;
        let hba = spec.work.join("drill_hba.conf");
        std::fs::write(&hba, "local all all trust\n").map_err(fail)?;
        let log = spec.work.join("postgres.log");
        let log_file = std::fs::File::create(&log).map_err(fail)?;
        if let Some(owner) = spec.os_user {
            for path in [&spec.work, &socket_dir, &hba, &log] {
                std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(fail)?;
            }
        }
        let port = free_port().map_err(fail)?;
        let mut cmd = bins.command("postgres");
        cmd.arg("-D").arg(&spec.data);
        for (name, value) in [
            ("port", port.to_string()),
            ("listen_addresses", "127.0.0.1".to_string()),
            ("unix_socket_directories", socket_dir.display().to_string()),
            ("hba_file", hba.display().to_string()),
            ("archive_mode", "off".to_string()),
            ("logging_collector", "off".to_string()),
            ("ssl", "off".to_string()),
        ] {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(fail)?)
            .stderr(log_file)
            .current_dir(&spec.work);
        if let Some(owner) = spec.os_user {
            use std::os::unix::process::CommandExt;
            cmd.uid(owner.uid).gid(owner.gid);
        }
        let child = cmd.spawn().map_err(fail)?;
        Ok(DrillServer {
            child,
            data: spec.data.clone(),
            socket_dir,
            log,
            port,
            user: spec.db_user.clone(),
        })
    }

    /// Connects to `dbname` over the drill's socket.
    pub async fn connect(&self, dbname: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(&self.user)
            .dbname(dbname)
            .application_name("walship drill")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Waits until recovery has ended and the server accepts a write (`txid_current()`
    /// assigns a transaction id, which a server in recovery refuses), within `timeout`.
    pub async fn wait_writable(&mut self, timeout: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::Exited {
                    dir: self.data.clone(),
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if self.accepts_writes().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Timeout {
                    dir: self.data.clone(),
                    secs: timeout.as_secs(),
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether recovery has ended and a write is accepted (false on any error).
    async fn accepts_writes(&self) -> bool {
        let Ok(client) = self.connect("postgres").await else {
            return false;
        };
        match client.simple_query("select pg_is_in_recovery()").await {
            Ok(rows) if first_value(&rows).as_deref() == Some("f") => {
                client.simple_query("select txid_current()").await.is_ok()
            }
            _ => false,
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fast shutdown (SIGINT), waited for up to `grace`; then SIGKILL.
    pub fn stop(mut self, grace: Duration) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server never outlives its drill: dropped still running (an early return, a panic), it
/// is killed.
impl Drop for DrillServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first column of the first row of a simple query, as text.
pub fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    })
}

/// A loopback port nothing listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
