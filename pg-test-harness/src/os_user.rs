//! The unprivileged OS user that runs Postgres when the tests run as root.
//!
//! Postgres refuses to start as root. When the harness runs as root it runs initdb, pg_ctl,
//! postgres and any command on a cluster's files as the `postgres` user (via the safe
//! `CommandExt::uid/gid`) and chowns the directories that user must write. When not root,
//! everything runs as the current user and nothing is chowned.

use std::os::unix::fs::{PermissionsExt, lchown};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Name of the OS user clusters run as when the harness runs as root.
pub const CLUSTER_OS_USER: &str = "postgres";

/// The uid/gid to drop to, or None when the process is not root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Numeric user id of [`CLUSTER_OS_USER`].
    pub uid: u32,
    /// Numeric primary group id of [`CLUSTER_OS_USER`].
    pub gid: u32,
}

/// The owner clusters run as: `Some` when this process is root, `None` otherwise.
///
/// Panics when running as root and the `postgres` user does not exist, since no cluster could
/// start.
pub fn cluster_owner() -> Option<Owner> {
    static OWNER: OnceLock<Option<Owner>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        match nix::unistd::User::from_name(CLUSTER_OS_USER) {
            Ok(Some(user)) => Some(Owner {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }),
            Ok(None) => panic!(
                "running as root but there is no '{CLUSTER_OS_USER}' OS user to run Postgres as \
                 (scripts/setup-test-deps installs postgresql-15, which creates it)"
            ),
            Err(e) => panic!("looking up OS user '{CLUSTER_OS_USER}': {e}"),
        }
    })
}

/// Makes `cmd` run as the cluster owner when this process is root (no-op otherwise).
pub fn run_as_cluster_owner(cmd: &mut Command) {
    if let Some(owner) = cluster_owner() {
        cmd.uid(owner.uid).gid(owner.gid);
        // The owner may not be able to read the caller's working directory; initdb and
        // friends look it up, so give them one they can read.
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(std::env::temp_dir());
        }
    }
}

/// Gives `path` and everything under it (symlinks themselves, not their targets) to the cluster
/// owner when root; no-op otherwise.
pub fn chown_to_owner_recursive(path: &Path) -> std::io::Result<()> {
    let Some(owner) = cluster_owner() else {
        return Ok(());
    };
    chown_tree(path, owner)
}

fn chown_tree(path: &Path, owner: Owner) -> std::io::Result<()> {
    lchown(path, Some(owner.uid), Some(owner.gid)).map_err(|e| with_path(e, "chown", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| with_path(e, "stat", path))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| with_path(e, "read dir", path))? {
            let entry = entry.map_err(|e| with_path(e, "read dir", path))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// Sets the permission bits of `path` (e.g. 0o700 for a data directory).
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "chmod", path))
}

/// Adds the action and path to an io::Error so panics say which file failed.
pub(crate) fn with_path(e: std::io::Error, action: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}

/// A fresh directory under /tmp that the cluster user can write (chowned to it when root);
/// removed when the returned guard drops. `name` becomes part of the directory name.
pub fn test_dir(name: &str) -> tempfile::TempDir {
    let prefix = format!("walship-{}-", sanitize(name));
    let dir = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("creating test dir /tmp/{prefix}*: {e}"));
    chown_to_owner_recursive(dir.path())
        .unwrap_or_else(|e| panic!("giving test dir to the cluster user: {e}"));
    dir
}

/// Keeps a name usable inside a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
