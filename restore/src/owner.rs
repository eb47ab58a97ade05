//! Who owns what a restore writes.
//!
//! A restore usually runs as root, and Postgres refuses (or cannot open) a data directory or
//! tablespace it does not own. So, run as root, a restore gives everything it creates to the
//! owner of the directory it restores into: for the data directory, its owner (or, when it
//! does not exist yet, its nearest existing parent's); for a tablespace, the owner of its
//! directory when it exists, else the data directory's owner (the server must open it); or
//! everything to `--owner USER[:GROUP]`. Run as anyone else, files are the caller's.
//! Ownership is set on each file before it is fsynced, so it is as durable as the bytes.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;
use walship_common::fsutil::{self, FsError};

use crate::error::RestoreError;

/// A user and group, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Why `--owner` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid --owner {value:?}: {reason}")]
pub struct OwnerError {
    /// The value given.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl Owner {
    /// Parses `USER[:GROUP]` (names or numbers); without a group, the user's primary group.
    pub fn parse(value: &str) -> Result<Owner, OwnerError> {
        let fail = |reason: String| OwnerError {
            value: value.to_string(),
            reason,
        };
        let (user, group) = match value.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (value, None),
        };
        let by_name = nix::unistd::User::from_name(user).map_err(|e| fail(e.to_string()))?;
        let (uid, primary) = match (by_name, user.parse::<u32>()) {
            (Some(u), _) => (u.uid.as_raw(), Some(u.gid.as_raw())),
            (None, Ok(uid)) => {
                let found = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .map_err(|e| fail(e.to_string()))?;
                (uid, found.map(|u| u.gid.as_raw()))
            }
            (None, Err(_)) => return Err(fail(format!("no user named {user:?}"))),
        };
        let gid = match group {
            None => primary.ok_or_else(|| fail(format!("user {uid} has no primary group")))?,
            Some(g) => match nix::unistd::Group::from_name(g).map_err(|e| fail(e.to_string()))? {
                Some(group) => group.gid.as_raw(),
                None => g
                    .parse::<u32>()
                    .map_err(|_| fail(format!("no group named {g:?}")))?,
            },
        };
        Ok(Owner { uid, gid })
    }

    /// The owner of `dir`, or of its nearest existing parent when it does not exist.
    pub fn of_nearest(dir: &Path) -> Option<Owner> {
        dir.ancestors().find_map(|d| {
            std::fs::metadata(d).ok().map(|m| Owner {
                uid: m.uid(),
                gid: m.gid(),
            })
        })
    }

    /// The owner for a target directory: `explicit` (`--owner`), else, when running as
    /// root, the owner of `dir` or its nearest parent; else none (files stay the caller's).
    pub fn for_target(explicit: Option<Owner>, dir: &Path) -> Option<Owner> {
        explicit.or_else(|| {
            nix::unistd::geteuid()
                .is_root()
                .then(|| Owner::of_nearest(dir))
                .flatten()
        })
    }

    /// Gives `path` (never following a link) to this owner.
    pub fn apply(&self, path: &Path) -> Result<(), RestoreError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(|source| fs_error(path, source))
    }

    /// Gives the open `file` to this owner.
    pub fn apply_to_file(&self, file: &File, path: &Path) -> Result<(), RestoreError> {
        std::os::unix::fs::fchown(file, Some(self.uid), Some(self.gid))
            .map_err(|source| fs_error(path, source))
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// Applies `owner`, when there is one, to `path`.
pub fn apply(owner: Option<Owner>, path: &Path) -> Result<(), RestoreError> {
    owner.map_or(Ok(()), |o| o.apply(path))
}

/// Writes `bytes` to `path` durably (temporary file, fsync, rename, fsync the directory),
/// mode 0600, owned by `owner` before it is fsynced.
pub fn durable_write(path: &Path, bytes: &[u8], owner: Option<Owner>) -> Result<(), RestoreError> {
    let mut temp = fsutil::TempFile::create_for(path, 0o600)?;
    if let Some(owner) = owner {
        owner.apply_to_file(temp.file()?, temp.path())?;
    }
    temp.write_all(bytes)?;
    temp.persist(path, false)?;
    Ok(())
}

fn fs_error(path: &Path, source: std::io::Error) -> RestoreError {
    RestoreError::Fs(FsError {
        action: "change the owner of",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(
            Owner::parse("0:0").unwrap(),
            Owner { uid: 0, gid: 0 },
            "numbers"
        );
        assert_eq!(Owner::parse("root").unwrap(), Owner { uid: 0, gid: 0 });
        assert!(Owner::parse("no-such-user-walship").is_err());
        assert!(Owner::parse("root:no-such-group-walship").is_err());
    }
}
