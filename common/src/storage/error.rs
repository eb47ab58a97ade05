//! `StorageError`: what can go wrong talking to a repository, typed so that callers decide.
//!
//! Two questions drive every caller: "is the object missing, or did we fail to find out?"
//! ([`StorageError::is_not_found`]) and "is it worth trying again?"
//! ([`StorageError::is_retryable`] / [`StorageError::is_permanent`]). `walship fetch` exits 1
//! only for `NotFound`; everything else makes it exit above 125 so that Postgres stops
//! recovery instead of treating an unreachable archive as the end of WAL.

use std::fmt;
use std::path::PathBuf;

use super::key::{InvalidKey, ObjectKey};

/// The storage operation that failed, for messages and for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageOp {
    /// Store a whole object.
    Put,
    /// Read an object (or a range of it).
    Get,
    /// Read an object's size and checksum.
    Head,
    /// List keys under a prefix.
    List,
    /// Remove an object.
    Delete,
}

impl StorageOp {
    /// Lower-case name, as in messages ("put", "get", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageOp::Put => "put",
            StorageOp::Get => "get",
            StorageOp::Head => "head",
            StorageOp::List => "list",
            StorageOp::Delete => "delete",
        }
    }
}

impl fmt::Display for StorageOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a storage backend. Every variant that concerns an object names its key;
/// network failures also name the endpoint (the repository's location).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist. A definite answer from the backend, not a failure.
    #[error("object {key} not found")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// A create-if-absent put found the object already there; nothing was overwritten.
    #[error("object {key} already exists")]
    AlreadyExists {
        /// The key that was already taken.
        key: String,
    },
    /// The backend did not answer in time (connect, operation or read timeout).
    #[error("{op} {key}: timed out talking to {endpoint}")]
    Timeout {
        /// What was being done.
        op: StorageOp,
        /// The key (or list prefix) involved.
        key: String,
        /// Where the repository is (S3 endpoint URL, or local directory).
        endpoint: String,
    },
    /// A call, its retries included, did not end within the configured limit
    /// ([`super::RetryPolicy::deadline`]).
    #[error(
        "{op} {key}: no answer within {} ({attempts} attempt(s); the limit is s3.timeout, or fetch.timeout for walship fetch)",
        humantime::format_duration(*limit)
    )]
    DeadlineExceeded {
        /// What was being done.
        op: StorageOp,
        /// The key (or list prefix) involved.
        key: String,
        /// The limit that passed.
        limit: std::time::Duration,
        /// Attempts started.
        attempts: u32,
    },
    /// A failure that may go away if the same request is tried again (throttling, a 5xx,
    /// a reset connection, a server that is down).
    #[error("{op} {key} at {endpoint} failed (may be temporary): {message}")]
    Transient {
        /// What was being done.
        op: StorageOp,
        /// The key (or list prefix) involved.
        key: String,
        /// Where the repository is.
        endpoint: String,
        /// What the backend said.
        message: String,
    },
    /// A failure that will not go away by retrying (access denied, bad request, bucket
    /// missing, a precondition the backend does not support).
    #[error("{op} {key} at {endpoint} failed: {message}")]
    Permanent {
        /// What was being done.
        op: StorageOp,
        /// The key (or list prefix) involved.
        key: String,
        /// Where the repository is.
        endpoint: String,
        /// What the backend said.
        message: String,
    },
    /// Bytes did not match their checksum (ours, or the one the server computed).
    #[error("object {key}: checksum mismatch: {message}")]
    Corrupt {
        /// The key involved.
        key: String,
        /// Which checksums disagreed.
        message: String,
    },
    /// The object is larger than the reader allows for an object of its kind (a whole-object
    /// read is bounded so that a hostile or misplaced object cannot exhaust memory).
    #[error(
        "object {key} is larger than the {limit} bytes such an object may hold ({size} bytes or more)"
    )]
    TooLarge {
        /// The key involved.
        key: String,
        /// The most the reader accepts.
        limit: u64,
        /// The object's size, or as much of it as was read.
        size: u64,
    },
    /// The operation was cancelled by the caller.
    #[error("storage operation cancelled")]
    Cancelled,
    /// A local file-system call failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, in the present tense ("write", "rename", "fsync directory").
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A write or removal through a read-only view of the repository (`--as-of`): refused
    /// before anything is sent.
    #[error(
        "{op} {key} refused: {location} is a read-only view of the repository as it was; nothing is written or removed through it (run without --as-of to change the repository)"
    )]
    ReadOnly {
        /// What was asked for.
        op: StorageOp,
        /// The key (the first one of a batch).
        key: String,
        /// The view's location, with its time.
        location: String,
    },
    /// `--as-of` on storage that keeps no older versions (a local directory, an S3 bucket
    /// whose versioning was never enabled).
    #[error("cannot read {location} as it was at a time (--as-of): {reason}")]
    NoVersions {
        /// Where the repository is.
        location: String,
        /// Why it cannot be read as of a time.
        reason: String,
    },
    /// A key or prefix broke the key rules.
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    /// A repository URL could not be understood.
    #[error(
        "invalid repository URL {url:?}: {reason}; expected s3://bucket[/prefix] or file:///absolute/path"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StorageError {
    /// True when the object definitively does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// True when a create-if-absent put found the key taken.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, StorageError::AlreadyExists { .. })
    }

    /// True when trying the same request again may succeed: timeouts and transient
    /// failures. Our retry loop ([`super::retry`]) retries exactly these.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Timeout { .. }
                | StorageError::Transient { .. }
                | StorageError::DeadlineExceeded { .. }
        )
    }

    /// True when retrying cannot help: the answer is final (`NotFound`, `AlreadyExists`)
    /// or the request itself is wrong. The opposite of [`Self::is_retryable`].
    pub fn is_permanent(&self) -> bool {
        !self.is_retryable()
    }

    /// Wraps this error in an `io::Error` so that it can travel through an `AsyncRead`;
    /// [`StorageError::from_read_error`] gets it back.
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            StorageError::NotFound { .. } => std::io::ErrorKind::NotFound,
            StorageError::Timeout { .. } | StorageError::DeadlineExceeded { .. } => {
                std::io::ErrorKind::TimedOut
            }
            StorageError::Corrupt { .. } => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// Turns an error met while reading an object's stream back into a `StorageError`:
    /// the original one if a backend put it there, otherwise a transient failure naming
    /// `key` and `endpoint` (a cut connection is worth another try).
    pub fn from_read_error(err: std::io::Error, key: &ObjectKey, endpoint: &str) -> StorageError {
        if err
            .get_ref()
            .is_some_and(|inner| inner.is::<StorageError>())
        {
            if let Some(inner) = err.into_inner()
                && let Ok(storage) = inner.downcast::<StorageError>()
            {
                return *storage;
            }
            // Unreachable in practice: the check above saw a StorageError.
            return StorageError::Transient {
                op: StorageOp::Get,
                key: key.to_string(),
                endpoint: endpoint.to_owned(),
                message: "lost the error of a failed read".to_owned(),
            };
        }
        if err.kind() == std::io::ErrorKind::TimedOut {
            return StorageError::Timeout {
                op: StorageOp::Get,
                key: key.to_string(),
                endpoint: endpoint.to_owned(),
            };
        }
        StorageError::Transient {
            op: StorageOp::Get,
            key: key.to_string(),
            endpoint: endpoint.to_owned(),
            message: format!("reading the object failed: {}", error_chain(&err)),
        }
    }
}

/// `err` and its sources, joined by ": ", skipping repeats (the SDK's wrappers often
/// repeat their source's message).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> StorageError {
        StorageError::Transient {
            op: StorageOp::Put,
            key: "k".into(),
            endpoint: "http://127.0.0.1:1".into(),
            message: "503 SlowDown".into(),
        }
    }

    #[test]
    fn classification() {
        assert!(transient().is_retryable());
        assert!(!transient().is_permanent());
        let timeout = StorageError::Timeout {
            op: StorageOp::Get,
            key: "k".into(),
            endpoint: "e".into(),
        };
        assert!(timeout.is_retryable());
        let not_found = StorageError::NotFound { key: "k".into() };
        assert!(not_found.is_not_found() && not_found.is_permanent());
        let exists = StorageError::AlreadyExists { key: "k".into() };
        assert!(exists.is_already_exists() && exists.is_permanent() && !exists.is_not_found());
        assert!(StorageError::Cancelled.is_permanent());
        assert!(!transient().is_not_found());
    }

    #[test]
    fn messages_name_key_and_endpoint() {
        let text = transient().to_string();
        assert!(text.contains("put k at http://127.0.0.1:1"), "{text}");
        let url = StorageError::InvalidUrl {
            url: "ftp://x".into(),
            reason: "unknown scheme".into(),
        };
        let text = url.to_string();
        assert!(
            text.contains("ftp://x") && text.contains("s3://bucket") && text.contains("file:///")
        );
    }

    #[test]
    fn read_errors_round_trip() {
        let key = ObjectKey::new("a/b").unwrap();
        let back = StorageError::from_read_error(transient().into_io(), &key, "e");
        assert!(
            matches!(back, StorageError::Transient { ref message, .. } if message == "503 SlowDown")
        );
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let back = StorageError::from_read_error(cut, &key, "e");
        assert!(back.is_retryable(), "{back}");
        assert!(back.to_string().contains("a/b"));
    }
}
