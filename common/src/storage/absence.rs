//! What counts as "absent" in a local repository: the one answer that lets `walship fetch`
//! exit 1 (Postgres may then end recovery and promote), so it is given only when the key has
//! no entry at all. Anything else under the key (a directory, a FIFO, a socket, a device, a
//! symbolic link to nothing) or on the way to it (a dangling `wal` link to storage that is
//! not mounted, a file where a directory belongs) is damage or unreachable storage: an
//! error, never `NotFound`.

use std::fs;
use std::io;
use std::path::Path;

use super::key::ObjectKey;
use super::{StorageError, StorageOp};
use crate::fsutil;

/// What a dangling symbolic link points to, for messages.
const DANGLING: &str = "something that does not exist (storage not mounted?)";

/// True for errors meaning "nothing there" (including a file where a directory was
/// expected on the way): a hint that the key is missing, which [`missing`] then confirms.
pub(super) fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `meta` if it is a regular file's; otherwise the refusal naming what is there.
pub(super) fn regular(
    location: &str,
    op: StorageOp,
    key: &ObjectKey,
    meta: fs::Metadata,
) -> Result<fs::Metadata, StorageError> {
    if meta.is_file() {
        return Ok(meta);
    }
    let what = fsutil::describe_file_type(meta.file_type());
    Err(broken(
        location,
        op,
        key,
        format!("{what} is there, not an object file"),
    ))
}

/// Why the file of `key` could not be found, when the OS said "no such file": `NotFound`
/// only if every directory on the way to it exists and the key itself has no entry. A
/// dangling symbolic link (the object's, or one on the way, such as a `wal` link to
/// storage that is not mounted) or a file where a directory belongs is an error: the
/// repository is damaged or unreachable, which must never read as "absent".
pub(super) fn missing(root: &Path, location: &str, op: StorageOp, key: &ObjectKey) -> StorageError {
    let not_found = || StorageError::NotFound {
        key: key.to_string(),
    };
    let mut path = root.to_path_buf();
    let mut steps = vec![String::new()];
    steps.extend(key.segments().map(str::to_owned));
    let last = steps.len() - 1;
    for (i, segment) in steps.iter().enumerate() {
        if !segment.is_empty() {
            path.push(segment);
        }
        let shown = if i == 0 {
            "the repository directory".to_owned()
        } else {
            format!("{:?}", steps[1..=i].join("/"))
        };
        let entry = match fs::symlink_metadata(&path) {
            Ok(entry) => entry,
            // Nothing at all under an existing directory (or no repository directory
            // yet): a definite "no such object".
            Err(e) if e.kind() == io::ErrorKind::NotFound => return not_found(),
            Err(source) => {
                return StorageError::Io {
                    action: "stat",
                    path,
                    source,
                };
            }
        };
        let target = if entry.file_type().is_symlink() {
            match fs::metadata(&path) {
                Ok(target) => target,
                Err(e) if is_missing(&e) => {
                    let message = format!("{shown} is a symbolic link to {DANGLING}");
                    return broken(location, op, key, message);
                }
                Err(source) => {
                    return StorageError::Io {
                        action: "stat",
                        path,
                        source,
                    };
                }
            }
        } else {
            entry
        };
        if i < last && !target.is_dir() {
            let what = fsutil::describe_file_type(target.file_type());
            return broken(
                location,
                op,
                key,
                format!("{shown} is {what}, not a directory"),
            );
        }
    }
    // The entry exists now: it appeared while we looked. Worth another try.
    StorageError::Transient {
        op,
        key: key.to_string(),
        endpoint: location.to_owned(),
        message: "the object appeared while it was being looked up".to_owned(),
    }
}

/// An object that cannot be read for a reason retrying will not fix.
fn broken(location: &str, op: StorageOp, key: &ObjectKey, message: String) -> StorageError {
    StorageError::Permanent {
        op,
        key: key.to_string(),
        endpoint: location.to_owned(),
        message,
    }
}
