//! Peer tools walship is compared with, and the `peers` bench that lists which are installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The peer tools benches compare against.
pub const PEER_TOOLS: [&str; 3] = ["pgbackrest", "pg_basebackup", "barman-cloud-wal-archive"];

/// An installed peer tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTool {
    /// Program name, e.g. `pgbackrest`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// First line of its version output.
    pub version: String,
}

/// Finds `name` on PATH or among the Debian PostgreSQL 15 tools; None when not installed.
pub fn find_peer(name: &str) -> Option<PeerTool> {
    let debian = PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin",
        crate::install::CLIENT_TOOLS_MAJOR
    ));
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(debian);
    let path = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())?;
    let version = version_of(name, &path);
    Some(PeerTool {
        name: name.to_owned(),
        path,
        version,
    })
}

fn version_of(name: &str, path: &Path) -> String {
    let arg = if name == "pgbackrest" {
        "version"
    } else {
        "--version"
    };
    match Command::new(path).arg(arg).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("?")
                .trim()
                .to_owned()
        }
        Err(e) => format!("(cannot run: {e})"),
    }
}

/// The `peers` bench: prints which peer tools are installed, with path and version.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    println!("== peers ==");
    for name in PEER_TOOLS {
        match find_peer(name) {
            Some(p) => println!(
                "{name:<26} installed  {:<45} {}",
                p.path.display(),
                p.version
            ),
            None => println!("{name:<26} missing"),
        }
    }
    Ok(())
}
