//! `ObjectKey`: the name of an object inside a repository, validated once.
//!
//! A key is relative to the repository root (the S3 prefix or the local directory) and is
//! made of `/`-separated segments. The rules make every key safe as a local path under the
//! root and unambiguous as an S3 key: no leading `/`, no empty, `.` or `..` segment, no
//! backslash, no NUL or other control character. A trailing `/` is refused too, because an
//! object is never a directory.

use std::fmt;
use std::str::FromStr;

/// Longest key we accept, in bytes (S3's limit is 1024 for the whole key including the
/// repository prefix; local file systems allow 4096 for a path).
pub const MAX_KEY_LEN: usize = 900;

/// A validated, relative object key such as `wal/0000000100000003/000000010000000300000042`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a string is not an [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct InvalidKey {
    /// The text that was refused.
    pub key: String,
    /// What rule it broke.
    pub reason: &'static str,
}

impl ObjectKey {
    /// Validates `key` and wraps it.
    pub fn new(key: impl Into<String>) -> Result<ObjectKey, InvalidKey> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(ObjectKey(key)),
            Err(reason) => Err(InvalidKey { key, reason }),
        }
    }

    /// The key as text, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key followed by `/` and `rest` (which may itself hold several segments),
    /// validated as a whole.
    pub fn join(&self, rest: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::new(format!("{}/{}", self.0, rest))
    }

    /// The key without its last segment, or `None` for a single-segment key.
    pub fn parent(&self) -> Option<ObjectKey> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| ObjectKey(parent.to_owned()))
    }

    /// The last segment (the "file name").
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, name)| name)
    }

    /// The `/`-separated segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// Checks the rules of the module doc; returns the broken rule.
fn check(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("a key must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("a key must be at most 900 bytes long");
    }
    if key.starts_with('/') {
        return Err("a key must be relative (no leading '/')");
    }
    if key.contains('\\') {
        return Err("a key must not contain a backslash");
    }
    if key.chars().any(char::is_control) {
        return Err("a key must not contain NUL or control characters");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("a key must not have empty segments ('//' or a trailing '/')"),
            "." | ".." => return Err("a key must not have '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty (everything), or a valid key optionally followed by one
/// `/` (`wal/`, `wal/0000000100000003/00000001000000030000004`). Prefixes are plain string
/// prefixes of keys, as in S3, so the last segment may be partial.
pub fn check_prefix(prefix: &str) -> Result<(), InvalidKey> {
    if prefix.is_empty() {
        return Ok(());
    }
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    check(body).map_err(|reason| InvalidKey {
        key: prefix.to_owned(),
        reason,
    })
}

impl FromStr for ObjectKey {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectKey::new(s)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = InvalidKey;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        ObjectKey::new(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = InvalidKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ObjectKey::new(s)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for good in [
            "walship.json",
            "wal/0000000100000003/000000010000000300000042",
            "wal/00000002.history",
            "backups/20261120T140300Z/manifest.json",
            "a/b.c/..d/e..",
            "name with spaces/ünïcode",
        ] {
            let key = ObjectKey::new(good).unwrap();
            assert_eq!(key.as_str(), good);
        }
    }

    #[test]
    fn refuses_unsafe_keys() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a/..",
            "../x",
            "..",
            ".",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\x7fb",
            "tab\there",
        ] {
            let err = ObjectKey::new(bad).unwrap_err();
            assert_eq!(err.key, bad);
            assert!(err.to_string().contains("invalid object key"), "{err}");
        }
        assert!(ObjectKey::new("x".repeat(MAX_KEY_LEN)).is_ok());
        assert!(ObjectKey::new("x".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn prefixes() {
        for good in [
            "",
            "wal/",
            "wal",
            "wal/00000001000000030000",
            "backups/2026",
        ] {
            check_prefix(good).unwrap();
        }
        for bad in ["/", "/wal", "wal//", "../", "a/../", "a\\b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn join_parent_and_file_name() {
        let wal = ObjectKey::new("wal").unwrap();
        let seg = wal
            .join("0000000100000003/000000010000000300000042")
            .unwrap();
        assert_eq!(
            seg.as_str(),
            "wal/0000000100000003/000000010000000300000042"
        );
        assert_eq!(seg.file_name(), "000000010000000300000042");
        let dir = seg.parent().unwrap();
        assert_eq!(dir.as_str(), "wal/0000000100000003");
        assert_eq!(dir.parent().unwrap(), wal);
        assert_eq!(wal.parent(), None);
        assert_eq!(wal.file_name(), "wal");
        assert_eq!(seg.segments().count(), 3);
        assert!(wal.join("../etc").is_err());
        assert!(wal.join("").is_err());
        assert!(wal.join("/x").is_err());
    }
}
