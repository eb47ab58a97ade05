//! Object storage for repositories: the [`Storage`] trait, its backends, and [`AnyStorage`],
//! the one type the rest of walship holds.
//!
//! - [`key::ObjectKey`]: a validated relative key; the only way to name an object.
//! - [`Storage`]: put (atomic, optionally create-if-absent, with CRC32C), streaming put
//!   (multipart, bounded memory), get (streaming), head, list, delete.
//! - Backends: [`local::LocalStorage`] (durable files: fsync, rename, fsync directory),
//!   [`s3::S3Storage`] (aws-sdk-s3, any S3-compatible server) and
//!   [`faulty::FaultyStorage`] (injects failures, for tests).
//! - [`AnyStorage`]: an enum over the backends plus the retry policy; callers need no
//!   generics and never test which backend they have: [`Capabilities`] says what differs.
//!   [`AnyStorage::as_of`] turns an S3 one into a read-only view of the repository as it
//!   was at a time ([`s3::versions`], `--as-of`).
//! - [`StorageError`]: `NotFound` is an answer, not a failure; `is_retryable` drives the one
//!   retry layer ([`retry::RetryPolicy`]).
//!
//! This module knows nothing of WAL, backups or the object codec: it moves opaque bytes.
//!
//! ```
//! use bytes::Bytes;
//! use walship_common::storage::{AnyStorage, ObjectKey, PutOptions, S3Options, Storage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("file://{}", dir.path().display());
//! let repo = AnyStorage::open(&url, &S3Options::default()).await?; // or s3://bucket/prefix
//! let key = ObjectKey::new("wal/00000002.history")?;
//! let stored = repo.put(&key, Bytes::from_static(b"1\t0/3000000\tbefore 2026\n"), PutOptions::if_absent()).await?;
//! assert!(repo.put(&key, Bytes::new(), PutOptions::if_absent()).await.unwrap_err().is_already_exists());
//! assert_eq!(repo.head(&key).await?.size, stored.size);
//! assert!(repo.get(&ObjectKey::new("wal/missing")?).await.unwrap_err().is_not_found());
//! # Ok(())
//! # }
//! ```
//!
//! Cancellation: every future here may be dropped at any time. A dropped put leaves no
//! visible object (a local temporary file is removed, an S3 multipart upload is left for
//! the bucket's lifecycle rule to abort unless the failure path aborted it first).

mod absence;
pub mod error;
pub mod faulty;
pub mod key;
pub mod local;
pub mod local_append;
pub mod lock;
pub mod retry;
pub mod s3;
pub mod stream;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::AsyncRead;

pub use error::{StorageError, StorageOp};
pub use faulty::{FaultPlan, FaultyStorage};
pub use key::{InvalidKey, ObjectKey};
pub use local::LocalStorage;
pub use local_append::AppendFile;
pub use lock::{BucketLockStatus, Extension, LockMode, ObjectLock};
pub use retry::RetryPolicy;
pub use s3::{S3Credentials, S3Options, S3Storage, ServerSideEncryption};
pub use stream::ObjectReader;

/// How many keys [`Storage::list`] asks for per page.
pub const LIST_PAGE: usize = 1000;

/// Options of a put.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// S3 Object Lock for the new object version (`ObjectLockMode` and
    /// `ObjectLockRetainUntilDate` on the PutObject or CreateMultipartUpload). A backend
    /// without object locks refuses a put that asks for one.
    pub lock: Option<ObjectLock>,
    /// Create only: if the key exists, fail with [`StorageError::AlreadyExists`] and leave
    /// it untouched. Of two concurrent creators exactly one succeeds where
    /// [`Capabilities::conditional_create`] is true.
    pub if_absent: bool,
    /// The CRC32C the caller expects of the whole body. The backend computes its own
    /// anyway; a mismatch fails the put with [`StorageError::Corrupt`] before anything
    /// becomes visible.
    pub crc32c: Option<u32>,
}

impl PutOptions {
    /// Options for a create-if-absent put.
    pub fn if_absent() -> PutOptions {
        PutOptions {
            if_absent: true,
            crc32c: None,
            lock: None,
        }
    }

    /// The same options with `lock` set.
    pub fn with_lock(self, lock: Option<ObjectLock>) -> PutOptions {
        PutOptions { lock, ..self }
    }
}

/// What a backend knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key (relative to the repository, without any backend prefix).
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the whole object, when the backend stores or echoes one (see
    /// [`Capabilities::crc32c_in_head`]). `put` always returns it.
    pub crc32c: Option<u32>,
    /// When the object was last written, when known.
    pub last_modified: Option<SystemTime>,
}

/// What a backend can do, so that callers branch on abilities, never on backend type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `PutOptions::if_absent` is enforced atomically by the backend. When false it is a
    /// check-then-write, and two racing writers could both succeed.
    pub conditional_create: bool,
    /// `head` returns the object's CRC32C (so "same content already there?" needs no
    /// download).
    pub crc32c_in_head: bool,
    /// Large uploads are split into parts that are sent (and retried) separately.
    pub multipart: bool,
    /// Objects are files that need directory fsyncs to be durable (local backend).
    pub local_files: bool,
}

/// The contract every backend fulfils. Keys are always relative to the repository root;
/// a backend applies its own prefix (S3 key prefix, local root directory) transparently.
///
/// Atomicity: no reader ever sees part of an object. A put becomes visible whole, or not
/// at all; a failed or dropped put leaves nothing visible.
pub trait Storage: Send + Sync {
    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Where the repository is, for messages: an S3 endpoint plus bucket/prefix, or a
    /// local directory.
    fn location(&self) -> &str;

    /// Stores `body` under `key`, atomically; returns the stored object's metadata with
    /// its CRC32C.
    fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> impl Future<Output = Result<ObjectMeta, StorageError>> + Send;

    /// Stores the bytes of `body` (of unknown length) under `key`, atomically, holding at
    /// most about one part in memory (S3 multipart above one part). The reader is
    /// consumed, so a failed streaming put cannot be retried by the caller's retry loop;
    /// the backend retries each part itself.
    fn put_stream<R>(
        &self,
        key: &ObjectKey,
        body: R,
        opts: PutOptions,
    ) -> impl Future<Output = Result<ObjectMeta, StorageError>> + Send
    where
        R: AsyncRead + Send + Unpin;

    /// Opens `key` for streaming reading.
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<ObjectReader, StorageError>> + Send;

    /// Opens bytes `range` of `key` (clamped to the object's end).
    fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> impl Future<Output = Result<ObjectReader, StorageError>> + Send;

    /// Size and, where available, CRC32C of `key`.
    fn head(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<ObjectMeta, StorageError>> + Send;

    /// Up to `limit` objects whose keys start with `prefix` and come after `start_after`
    /// in the backend's listing order; fewer than `limit` means there are no more.
    /// `prefix` is a plain string prefix ([`key::check_prefix`]).
    ///
    /// The listing order is ascending byte order on the local backend and AWS S3. Some
    /// S3-compatible servers (SeaweedFS) list directory by directory instead (`a/b`
    /// before `a-b`); they resume `start_after` in that same order, so paging with the
    /// last key of each page still visits every key exactly once. Use [`Storage::list`]
    /// when the order matters.
    fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, StorageError>> + Send;

    /// Every object whose key starts with `prefix`, in ascending byte order of key,
    /// fetched page by page ([`LIST_PAGE`] keys per [`Storage::list_after`] call).
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, StorageError>> + Send {
        async move {
            let mut all: Vec<ObjectMeta> = Vec::new();
            loop {
                let page = self
                    .list_after(prefix, all.last().map(|m| &m.key), LIST_PAGE)
                    .await?;
                let done = page.len() < LIST_PAGE;
                all.extend(page);
                if done {
                    all.sort_by(|a, b| a.key.cmp(&b.key));
                    return Ok(all);
                }
            }
        }
    }

    /// Removes `key`. Removing a key that does not exist succeeds (S3 cannot tell).
    fn delete(&self, key: &ObjectKey) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Removes `keys` (at most [`DELETE_BATCH`]), in one call where the backend has one (S3
    /// DeleteObjects). A key the storage refuses to remove (an S3 Object Lock or legal hold,
    /// a file the process may not remove) is returned as a [`DeleteRefusal`] and left alone;
    /// the others are removed. A failure of the whole call (timeout, network) is an error,
    /// after which any subset of the keys may be gone.
    fn delete_many(
        &self,
        keys: &[ObjectKey],
    ) -> impl Future<Output = Result<Vec<DeleteRefusal>, StorageError>> + Send {
        async move {
            let mut refused = Vec::new();
            for key in keys {
                match self.delete(key).await {
                    Ok(()) => {}
                    Err(e @ (StorageError::Permanent { .. } | StorageError::Io { .. })) => refused
                        .push(DeleteRefusal {
                            key: key.clone(),
                            reason: e.to_string(),
                        }),
                    Err(e) => return Err(e),
                }
            }
            Ok(refused)
        }
    }
}

/// How many keys one [`Storage::delete_many`] call takes (S3 DeleteObjects' limit).
pub const DELETE_BATCH: usize = 1000;

/// An object the storage refused to remove, and what it said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeleteRefusal {
    /// The object's key.
    #[serde(serialize_with = "serialize_key")]
    pub key: ObjectKey,
    /// The storage's answer.
    pub reason: String,
}

fn serialize_key<S: serde::Serializer>(key: &ObjectKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(key.as_str())
}

/// The storage a command holds: one of the backends plus the retry policy applied to every
/// call that can be repeated (all but `put_stream`, whose backends retry per part).
#[derive(Debug, Clone)]
pub struct AnyStorage {
    backend: Backend,
    retry: RetryPolicy,
}

/// The real backends, and the read-only view of an S3 one as it was at a time
/// ([`AnyStorage::as_of`]).
#[derive(Debug, Clone)]
pub(crate) enum Plain {
    Local(LocalStorage),
    S3(S3Storage),
    AsOf(Arc<s3::versions::AsOfS3>),
}

/// What an [`AnyStorage`] holds: a real backend, or one wrapped in fault injection (which
/// wraps only a [`Plain`] one, so dispatch never recurses).
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Plain(Plain),
    Faulty(Arc<FaultyStorage>),
}

/// Implements [`Storage`] for an enum by calling the same method on its variant.
macro_rules! dispatch_storage {
    ($enum:ident { $($variant:ident),+ }) => {
        impl Storage for $enum {
            fn capabilities(&self) -> Capabilities {
                match self { $($enum::$variant(s) => s.capabilities()),+ }
            }
            fn location(&self) -> &str {
                match self { $($enum::$variant(s) => s.location()),+ }
            }
            async fn put(&self, key: &ObjectKey, body: Bytes, opts: PutOptions) -> Result<ObjectMeta, StorageError> {
                match self { $($enum::$variant(s) => s.put(key, body, opts).await),+ }
            }
            async fn put_stream<R>(&self, key: &ObjectKey, body: R, opts: PutOptions) -> Result<ObjectMeta, StorageError>
            where
                R: AsyncRead + Send + Unpin,
            {
                match self { $($enum::$variant(s) => s.put_stream(key, body, opts).await),+ }
            }
            async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
                match self { $($enum::$variant(s) => s.get(key).await),+ }
            }
            async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<ObjectReader, StorageError> {
                match self { $($enum::$variant(s) => s.get_range(key, range).await),+ }
            }
            async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
                match self { $($enum::$variant(s) => s.head(key).await),+ }
            }
            async fn list_after(
                &self,
                prefix: &str,
                start_after: Option<&ObjectKey>,
                limit: usize,
            ) -> Result<Vec<ObjectMeta>, StorageError> {
                match self { $($enum::$variant(s) => s.list_after(prefix, start_after, limit).await),+ }
            }
            async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
                match self { $($enum::$variant(s) => s.delete(key).await),+ }
            }
            async fn delete_many(&self, keys: &[ObjectKey]) -> Result<Vec<DeleteRefusal>, StorageError> {
                match self { $($enum::$variant(s) => s.delete_many(keys).await),+ }
            }
        }
    };
}

dispatch_storage!(Plain { Local, S3, AsOf });
dispatch_storage!(Backend { Plain, Faulty });

impl AnyStorage {
    /// Opens the repository at `url`: `s3://bucket[/prefix]` (configured by `s3` and the
    /// AWS SDK's standard environment) or `file:///absolute/path`. Nothing is created or
    /// contacted yet; the first call finds out whether the repository is reachable.
    pub async fn open(url: &str, s3: &S3Options) -> Result<AnyStorage, StorageError> {
        match parse_url(url)? {
            RepoUrl::File(root) => Ok(AnyStorage::from(LocalStorage::new(root)?)),
            RepoUrl::S3 { bucket, prefix } => {
                let storage = S3Storage::connect(&bucket, &prefix, s3).await?;
                Ok(AnyStorage::from(storage).with_retry(s3.retry.clone()))
            }
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> AnyStorage {
        self.retry = retry;
        self
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Reads the whole object into memory, retrying the download as a whole when it fails
    /// transiently, midway included. For objects that fit in memory (WAL segments,
    /// manifests): one larger than `max_len` bytes is [`StorageError::TooLarge`], and no
    /// more than `max_len + 1` bytes of it are read.
    pub async fn get_bytes(&self, key: &ObjectKey, max_len: u64) -> Result<Bytes, StorageError> {
        let too_large = |size| StorageError::TooLarge {
            key: key.to_string(),
            limit: max_len,
            size,
        };
        self.retry
            .run(StorageOp::Get, key.as_str(), || async {
                let reader = self.backend.get(key).await?;
                if let Some(size) = reader.size().filter(|&size| size > max_len) {
                    return Err(too_large(size));
                }
                let bytes = reader
                    .read_all(max_len)
                    .await
                    .map_err(|e| StorageError::from_read_error(e, key, self.backend.location()))?;
                if bytes.len() as u64 > max_len {
                    return Err(too_large(bytes.len() as u64));
                }
                Ok(bytes)
            })
            .await
    }

    /// The local directory backend, when this storage is one (not wrapped in fault
    /// injection): what a stream's tail journal is appended through.
    pub fn local(&self) -> Option<&LocalStorage> {
        match &self.backend {
            Backend::Plain(Plain::Local(local)) => Some(local),
            _ => None,
        }
    }

    /// The fault injector inside, when this storage is a [`FaultyStorage`] (tests read its
    /// attempt counts).
    pub fn faulty(&self) -> Option<Arc<FaultyStorage>> {
        match &self.backend {
            Backend::Faulty(faulty) => Some(Arc::clone(faulty)),
            Backend::Plain(_) => None,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }
}

impl From<LocalStorage> for AnyStorage {
    fn from(storage: LocalStorage) -> AnyStorage {
        AnyStorage {
            backend: Backend::Plain(Plain::Local(storage)),
            retry: RetryPolicy::default(),
        }
    }
}

impl From<S3Storage> for AnyStorage {
    fn from(storage: S3Storage) -> AnyStorage {
        AnyStorage {
            backend: Backend::Plain(Plain::S3(storage)),
            retry: RetryPolicy::default(),
        }
    }
}

impl From<FaultyStorage> for AnyStorage {
    /// Wraps the faulty backend, keeping the retry policy of the storage it wraps.
    fn from(storage: FaultyStorage) -> AnyStorage {
        let retry = storage.retry_policy().clone();
        AnyStorage {
            backend: Backend::Faulty(Arc::new(storage)),
            retry,
        }
    }
}

impl Storage for AnyStorage {
    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    fn location(&self) -> &str {
        self.backend.location()
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.retry
            .run(StorageOp::Put, key.as_str(), || {
                self.backend.put(key, body.clone(), opts)
            })
            .await
    }

    async fn put_stream<R>(
        &self,
        key: &ObjectKey,
        body: R,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        self.backend.put_stream(key, body, opts).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
        self.retry
            .run(StorageOp::Get, key.as_str(), || self.backend.get(key))
            .await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ObjectReader, StorageError> {
        self.retry
            .run(StorageOp::Get, key.as_str(), || {
                self.backend.get_range(key, range.clone())
            })
            .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.retry
            .run(StorageOp::Head, key.as_str(), || self.backend.head(key))
            .await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        self.retry
            .run(StorageOp::List, prefix, || {
                self.backend.list_after(prefix, start_after, limit)
            })
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.retry
            .run(StorageOp::Delete, key.as_str(), || self.backend.delete(key))
            .await
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<Vec<DeleteRefusal>, StorageError> {
        let first = keys.first().map_or("", |k| k.as_str());
        self.retry
            .run(StorageOp::Delete, first, || self.backend.delete_many(keys))
            .await
    }
}

/// A parsed repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoUrl {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
}

fn parse_url(url: &str) -> Result<RepoUrl, StorageError> {
    let invalid = |reason: &str| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        s3::check_bucket_name(bucket).map_err(|reason| invalid(&reason))?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            ObjectKey::new(prefix).map_err(|e| invalid(&format!("bad prefix: {}", e.reason)))?;
        }
        return Ok(RepoUrl::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if url.starts_with("file:") && !url.starts_with("file://") {
        return Err(invalid(
            "a file URL starts with file:// (three slashes before an absolute path)",
        ));
    }
    if url.starts_with("file://") {
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a file URL takes no query or fragment"));
        }
        let path = parsed.to_file_path().map_err(|()| {
            invalid("not an absolute local path (use three slashes: file:///path)")
        })?;
        return Ok(RepoUrl::File(path));
    }
    if url.starts_with('/') {
        return Err(invalid("a bare path is not a URL (write file:///path)"));
    }
    Err(invalid("unknown scheme"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repository_urls() {
        assert_eq!(
            parse_url("s3://my-bucket").unwrap(),
            RepoUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_url("s3://my-bucket/a/b/").unwrap(),
            RepoUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            parse_url("file:///var/lib/walship").unwrap(),
            RepoUrl::File(PathBuf::from("/var/lib/walship"))
        );
        assert_eq!(
            parse_url("file:///var/lib/with%20space").unwrap(),
            RepoUrl::File(PathBuf::from("/var/lib/with space"))
        );
    }

    #[test]
    fn refuses_bad_urls_naming_them_and_the_accepted_forms() {
        for bad in [
            "s3://",
            "s3://ab",
            "s3://UPPER",
            "s3://bucket//x",
            "s3://bucket/../x",
            "file://relative/path",
            "file:relative",
            "/var/lib/walship",
            "http://example",
            "",
        ] {
            let err = parse_url(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(
                text.contains("s3://bucket[/prefix]") && text.contains("file:///absolute/path"),
                "{text}"
            );
        }
    }
}
