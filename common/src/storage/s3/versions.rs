//! [`AsOfS3`]: a read-only view of an S3 repository as it was at a time (`--as-of TIME`).
//!
//! What it is for: someone holding the repository's credentials deleted objects (on a
//! versioned bucket that adds delete markers) or overwrote them (that adds versions). The
//! versions written before the attack are still in the bucket (Object Lock keeps them from
//! being removed), only no longer current. Reading "as of" a time before the attack sees
//! exactly those:
//!
//! - for each key, the newest *version* whose `LastModified` is at or before the time
//!   (compared in whole seconds, the resolution S3 gives); later versions do not exist in
//!   the view;
//! - delete markers are ignored, before the time as after it (the rule pgBackRest's
//!   `--repo-target-time` follows): a key removed before the time (by `walship expire`, say)
//!   is visible again for as long as a version of it is kept. That only ever shows *more*
//!   than the bucket held at the time, never different bytes;
//! - every write and removal is refused ([`StorageError::ReadOnly`]) before anything is sent.
//!
//! Listing is `ListObjectVersions`, page by page; a key is emitted once the listing has moved
//! past it (the versions of one key are listed together, newest first), so a page that ends
//! inside one key's versions is handled. What the view remembers is the version chosen for
//! each key it has listed (a listing's caller holds as many keys anyway), so a `get` of a
//! listed key costs one request; a key it has not listed is resolved, each time, with a
//! `ListObjectVersions` on the key itself (one page: the key and the few longer keys starting
//! with it), so `fetch` and its prefetch worker hold nothing per segment. Reads name the
//! version (`GetObject`/`HeadObject` with `versionId`), so a version written after the
//! resolution is never read. A chosen version that disappears (removed by version id) is
//! resolved once more before the view says "not found".
//!
//! Servers: AWS S3 pages `ListObjectVersions` correctly. SeaweedFS 4.48 loses versions at a
//! page boundary between a key and a longer key starting with it (`<segment>` and
//! `<segment>.partial`) when they have several versions or delete markers (seen with boto3
//! too): under a prefix holding more than a page (1000) of versions and markers, a segment can
//! then be missing from the view. walship writes each key once, so that shows as a gap (the
//! restore plan refuses, `verify` names it), not as other bytes; a key read alone is listed
//! on its own prefix, in one page.
//!
//! Permissions: `s3:GetBucketVersioning`, `s3:ListBucketVersions` and `s3:GetObjectVersion`
//! on the repository's bucket and prefix.
//!
//! The bucket must have versioning enabled (or suspended: versions written while it was on
//! are still there); a bucket that never had it keeps no older versions and is refused
//! ([`StorageError::NoVersions`]), as is a local repository ([`AsOfS3`] wraps only
//! [`S3Storage`]; [`AnyStorage::as_of`] says so for the others).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_sdk_s3::types::BucketVersioningStatus;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

use super::{S3Storage, to_system_time};
use crate::storage::key::{ObjectKey, check_prefix};
use crate::storage::stream::ObjectReader;
use crate::storage::{
    AnyStorage, Backend, Capabilities, DeleteRefusal, ObjectMeta, Plain, PutOptions, Storage,
    StorageError, StorageOp,
};

/// The version of one key the view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chosen {
    version_id: String,
    size: u64,
    /// `LastModified` in whole seconds since the epoch.
    modified_secs: i64,
    last_modified: Option<SystemTime>,
}

/// A read-only view of an [`S3Storage`] as it was at a time. Built by
/// [`AnyStorage::as_of`]; see the module documentation for what it shows.
#[derive(Debug)]
pub struct AsOfS3 {
    inner: S3Storage,
    as_of: DateTime<Utc>,
    location: String,
    /// The version chosen for each key listed so far.
    chosen: Mutex<HashMap<ObjectKey, Chosen>>,
}

impl AsOfS3 {
    /// The view of `inner` as of `as_of`, after checking that the bucket keeps versions.
    async fn open(inner: S3Storage, as_of: DateTime<Utc>) -> Result<AsOfS3, StorageError> {
        let call = inner.call(StorageOp::Head, "(bucket versioning)");
        let versioning = inner
            .client
            .get_bucket_versioning()
            .bucket(&inner.bucket)
            .send()
            .await
            .map_err(|e| call.error(e))?;
        match versioning.status() {
            Some(BucketVersioningStatus::Enabled) => {}
            Some(BucketVersioningStatus::Suspended) => tracing::warn!(
                location = %inner.location,
                "versioning is suspended on this bucket: objects written since then kept only their newest version"
            ),
            _ => {
                return Err(StorageError::NoVersions {
                    location: inner.location.clone(),
                    reason: "versioning was never enabled on this bucket, so it keeps no older \
                             versions of its objects (enable versioning, or create the bucket \
                             with Object Lock, before the day you need this)"
                        .to_owned(),
                });
            }
        }
        let location = format!(
            "{} as of {}",
            inner.location,
            as_of.format("%Y-%m-%d %H:%M:%S UTC")
        );
        Ok(AsOfS3 {
            inner,
            as_of,
            location,
            chosen: Mutex::new(HashMap::new()),
        })
    }

    /// The time this view shows the repository at.
    pub fn as_of(&self) -> DateTime<Utc> {
        self.as_of
    }

    pub(crate) fn refuse(&self, op: StorageOp, key: &str) -> StorageError {
        StorageError::ReadOnly {
            op,
            key: key.to_owned(),
            location: self.location.clone(),
        }
    }

    fn remembered(&self, key: &ObjectKey) -> Option<Chosen> {
        let chosen = self.chosen.lock().unwrap_or_else(PoisonError::into_inner);
        chosen.get(key).cloned()
    }

    fn remember(&self, key: &ObjectKey, version: &Chosen) {
        let mut chosen = self.chosen.lock().unwrap_or_else(PoisonError::into_inner);
        chosen.insert(key.clone(), version.clone());
    }

    fn forget(&self, key: &ObjectKey) {
        let mut chosen = self.chosen.lock().unwrap_or_else(PoisonError::into_inner);
        chosen.remove(key);
    }

    /// The version of `key` the view shows: remembered from a listing, or found by listing
    /// the versions of the key itself. `NotFound` when no version is at or before the time.
    async fn resolve(&self, op: StorageOp, key: &ObjectKey) -> Result<Chosen, StorageError> {
        if let Some(chosen) = self.remembered(key) {
            return Ok(chosen);
        }
        let full = self.inner.full_key(key.as_str());
        let call = self.inner.call(op, key.as_str());
        let mut picker = Picker::new(self.as_of.timestamp());
        let mut markers: Option<(String, Option<String>)> = None;
        let found = 'pages: loop {
            let mut request = self
                .inner
                .client
                .list_object_versions()
                .bucket(&self.inner.bucket)
                .prefix(&full)
                .max_keys(self.inner.list_page_size);
            if let Some((key_marker, version_marker)) = &markers {
                request = request
                    .key_marker(key_marker)
                    .set_version_id_marker(version_marker.clone());
            }
            let page = request.send().await.map_err(|e| call.error(e))?;
            for version in page.versions() {
                // Keys starting with this one (`<segment>.partial`) come after it.
                if version.key() != Some(full.as_str()) {
                    if picker.has_pending() {
                        break 'pages picker.finish();
                    }
                    continue;
                }
                // Only this key is pushed, so nothing is emitted before the end.
                let _ = picker.push(&full, listed(version));
            }
            match next_markers(&page) {
                Some(next) => markers = Some(advance(&call, markers, next)?),
                None => break picker.finish(),
            }
        };
        // Not remembered: a key read alone is read once (the prefetch worker reads thousands
        // of segments and must not grow with them).
        match found {
            Some((_, chosen)) => Ok(chosen),
            None => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    /// Runs `read` on the version of `key` the view shows. If that version is gone (removed
    /// by version id since it was chosen), chooses again once, so that "not found" is said
    /// only when no version at or before the time is left.
    async fn read_version<T, F, Fut>(
        &self,
        op: StorageOp,
        key: &ObjectKey,
        read: F,
    ) -> Result<T, StorageError>
    where
        F: Fn(Chosen) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let chosen = self.resolve(op, key).await?;
        match read(chosen).await {
            Err(e) if e.is_not_found() => {
                self.forget(key);
                let chosen = self.resolve(op, key).await?;
                read(chosen).await
            }
            other => other,
        }
    }
}

/// A listed version as the picker needs it; `None` without a key, id or time (a server
/// that leaves one out gives the view nothing to choose).
fn listed(version: &aws_sdk_s3::types::ObjectVersion) -> Option<Chosen> {
    let modified = version.last_modified()?;
    Some(Chosen {
        version_id: version.version_id()?.to_owned(),
        size: version
            .size()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        modified_secs: modified.secs(),
        last_modified: to_system_time(Some(modified)),
    })
}

/// Where the next page of a truncated `ListObjectVersions` starts; `None` at the end.
fn next_markers(
    page: &aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput,
) -> Option<(String, Option<String>)> {
    if page.is_truncated() != Some(true) {
        return None;
    }
    let key = page.next_key_marker()?;
    Some((
        key.to_owned(),
        page.next_version_id_marker().map(str::to_owned),
    ))
}

/// The markers of the next page, unless they are those of the page just read (a server that
/// does not advance would make the listing loop forever).
fn advance(
    call: &super::errors::Call<'_>,
    current: Option<(String, Option<String>)>,
    next: (String, Option<String>),
) -> Result<(String, Option<String>), StorageError> {
    if current.as_ref() == Some(&next) {
        return Err(call.permanent(format!(
            "ListObjectVersions returned the same page marker twice ({:?}, version {:?})",
            next.0, next.1
        )));
    }
    Ok(next)
}

/// Folds a version listing (keys in listing order, the versions of one key together) into
/// the newest version of each key at or before `as_of`, emitting a key once the listing has
/// moved past it. Pure, so that it is tested without a server.
#[derive(Debug)]
struct Picker {
    as_of: i64,
    /// The key whose versions are being read, and its best version so far.
    pending: Option<(String, Option<Chosen>)>,
}

impl Picker {
    fn new(as_of: i64) -> Picker {
        Picker {
            as_of,
            pending: None,
        }
    }

    /// True once a version of some key was pushed and not yet emitted.
    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes one listed version of `key`; returns the previous key and its chosen version
    /// when `key` is a new one and the previous had a version at or before the time.
    fn push(&mut self, key: &str, version: Option<Chosen>) -> Option<(String, Chosen)> {
        let mut done = None;
        if self.pending.as_ref().is_none_or(|(k, _)| k != key) {
            done = self.finish();
            self.pending = Some((key.to_owned(), None));
        }
        let visible = version.filter(|v| v.modified_secs <= self.as_of);
        if let (Some((_, best)), Some(v)) = (self.pending.as_mut(), visible) {
            // Equal times: the one listed first (S3 lists the newest first) stays.
            if best
                .as_ref()
                .is_none_or(|b| v.modified_secs > b.modified_secs)
            {
                *best = Some(v);
            }
        }
        done
    }

    /// The end of the listing: the last key, if it had a version at or before the time.
    fn finish(&mut self) -> Option<(String, Chosen)> {
        match self.pending.take() {
            Some((key, Some(best))) => Some((key, best)),
            _ => None,
        }
    }
}

impl Storage for AsOfS3 {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn put(
        &self,
        key: &ObjectKey,
        _body: Bytes,
        _opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        Err(self.refuse(StorageOp::Put, key.as_str()))
    }

    async fn put_stream<R>(
        &self,
        key: &ObjectKey,
        _body: R,
        _opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        Err(self.refuse(StorageOp::Put, key.as_str()))
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
        self.read_version(StorageOp::Get, key, |v| async move {
            self.inner.get_object(key, None, Some(&v.version_id)).await
        })
        .await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ObjectReader, StorageError> {
        self.read_version(StorageOp::Get, key, |v| {
            let range = range.clone();
            async move {
                self.inner
                    .get_object(key, Some(range), Some(&v.version_id))
                    .await
            }
        })
        .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.read_version(StorageOp::Head, key, |v| async move {
            self.inner.head_object(key, Some(&v.version_id)).await
        })
        .await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        check_prefix(prefix)?;
        let call = self.inner.call(StorageOp::List, prefix);
        let mut out: Vec<ObjectMeta> = Vec::new();
        let mut picker = Picker::new(self.as_of.timestamp());
        // Starting after a key skips all its versions (no version id marker).
        let mut markers = start_after.map(|k| (self.inner.full_key(k.as_str()), None));
        let emit = |done: Option<(String, Chosen)>, out: &mut Vec<ObjectMeta>| {
            let Some((full, chosen)) = done else { return };
            let Some(relative) = full.strip_prefix(&self.inner.prefix) else {
                return;
            };
            match ObjectKey::new(relative) {
                Ok(key) => {
                    self.remember(&key, &chosen);
                    out.push(ObjectMeta {
                        key,
                        size: chosen.size,
                        crc32c: None,
                        last_modified: chosen.last_modified,
                    });
                }
                Err(e) => {
                    tracing::warn!(location = %self.location, "skipping an object that is not a valid key: {e}")
                }
            }
        };
        while out.len() < limit {
            let mut request = self
                .inner
                .client
                .list_object_versions()
                .bucket(&self.inner.bucket)
                .prefix(self.inner.full_key(prefix))
                .max_keys(self.inner.list_page_size);
            if let Some((key_marker, version_marker)) = &markers {
                request = request
                    .key_marker(key_marker)
                    .set_version_id_marker(version_marker.clone());
            }
            let page = request.send().await.map_err(|e| call.error(e))?;
            for version in page.versions() {
                let Some(full) = version.key() else { continue };
                emit(picker.push(full, listed(version)), &mut out);
            }
            match next_markers(&page) {
                Some(next) => markers = Some(advance(&call, markers.take(), next)?),
                None => {
                    emit(picker.finish(), &mut out);
                    break;
                }
            }
        }
        // A key past the limit is listed again by the next call, which starts after the
        // last key returned.
        out.truncate(limit);
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        Err(self.refuse(StorageOp::Delete, key.as_str()))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<Vec<DeleteRefusal>, StorageError> {
        let first = keys.first().map_or("", |k| k.as_str());
        Err(self.refuse(StorageOp::Delete, first))
    }
}

impl AnyStorage {
    /// This repository as it was at `as_of`: a read-only view that shows, for each key, the
    /// newest version created at or before that time (see [`AsOfS3`]). Asks the bucket
    /// whether it keeps versions; a local repository, a bucket that never had versioning or
    /// a storage with fault injection is refused with [`StorageError::NoVersions`].
    pub async fn as_of(self, as_of: DateTime<Utc>) -> Result<AnyStorage, StorageError> {
        let s3 = match &self.backend {
            Backend::Plain(Plain::S3(s3)) => s3.clone(),
            Backend::Plain(Plain::AsOf(view)) => {
                return Err(StorageError::NoVersions {
                    location: view.location.clone(),
                    reason: "it is already a view as of a time".to_owned(),
                });
            }
            other => {
                return Err(StorageError::NoVersions {
                    location: other.location().to_owned(),
                    reason: "only an S3 bucket with versioning keeps the older versions of its \
                             objects; a local directory keeps only the current files"
                        .to_owned(),
                });
            }
        };
        let view = self
            .retry
            .run(StorageOp::Head, "(bucket versioning)", || {
                AsOfS3::open(s3.clone(), as_of)
            })
            .await?;
        Ok(AnyStorage {
            backend: Backend::Plain(Plain::AsOf(Arc::new(view))),
            retry: self.retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, secs: i64) -> Option<Chosen> {
        Some(Chosen {
            version_id: id.to_owned(),
            size: 1,
            modified_secs: secs,
            last_modified: None,
        })
    }

    fn ids(done: Option<(String, Chosen)>) -> Option<(String, String)> {
        done.map(|(k, c)| (k, c.version_id))
    }

    #[test]
    fn picks_the_newest_version_at_or_before_the_time() {
        let mut p = Picker::new(100);
        // Newest first, as S3 lists them: the overwrite at 150 is after the time.
        assert_eq!(p.push("a", version("a-150", 150)), None);
        assert_eq!(p.push("a", version("a-100", 100)), None);
        assert_eq!(p.push("a", version("a-50", 50)), None);
        // Only versions after the time: "b" does not exist in the view.
        assert_eq!(
            ids(p.push("b", version("b-101", 101))),
            Some(("a".into(), "a-100".into()))
        );
        assert_eq!(ids(p.push("c", version("c-7", 7))), None);
        assert_eq!(ids(p.finish()), Some(("c".into(), "c-7".into())));
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn equal_times_keep_the_one_listed_first_and_order_does_not_matter_otherwise() {
        let mut p = Picker::new(100);
        p.push("a", version("first", 90));
        p.push("a", version("second", 90));
        assert_eq!(ids(p.finish()), Some(("a".into(), "first".into())));
        // A server listing oldest first still gets the newest.
        let mut p = Picker::new(100);
        p.push("a", version("old", 10));
        p.push("a", version("new", 99));
        p.push("a", version("later", 101));
        assert_eq!(ids(p.finish()), Some(("a".into(), "new".into())));
    }

    #[test]
    fn a_version_without_id_or_time_is_never_chosen() {
        let mut p = Picker::new(100);
        p.push("a", None);
        assert!(p.has_pending());
        assert_eq!(p.finish(), None);
    }
}
