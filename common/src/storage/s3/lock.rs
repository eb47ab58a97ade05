//! The S3 calls behind [`crate::storage::lock`]: bucket lock settings, object retention and
//! legal hold, and removing every version of a key on a versioned bucket.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};

use super::S3Storage;
use crate::storage::lock::{BucketLockStatus, Extension, LockMode, ObjectLock};
use crate::storage::{DELETE_BATCH, DeleteRefusal, ObjectKey, StorageError, StorageOp};

/// The SDK's lock mode for a put.
pub(crate) fn sdk_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

fn retention_mode(mode: LockMode) -> ObjectLockRetentionMode {
    match mode {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    }
}

/// A time for the SDK, in whole seconds (S3 keeps retain-until dates to the second; rounding
/// up never shortens a lock).
pub(crate) fn sdk_time(t: SystemTime) -> aws_smithy_types::DateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    aws_smithy_types::DateTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// The S3 error code of a failed call, if the server sent one.
fn code<E: ProvideErrorMetadata, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> Option<String> {
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
}

impl S3Storage {
    /// GetObjectLockConfiguration and GetBucketVersioning.
    pub(crate) async fn bucket_lock_status(&self) -> Result<BucketLockStatus, StorageError> {
        let call = self.call(StorageOp::Head, "");
        let object_lock_enabled = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => {
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            // A bucket created without Object Lock has no configuration to read.
            Err(e)
                if code(&e).as_deref() == Some("ObjectLockConfigurationNotFoundError")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                false
            }
            Err(e) => return Err(call.error(e)),
        };
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| call.error(e))?
            .status()
            .map(|s| s.as_str().to_owned());
        Ok(BucketLockStatus {
            bucket: self.bucket.clone(),
            object_lock_enabled,
            versioning,
        })
    }

    /// GetObjectRetention of the current version; `None` when it has none.
    pub(crate) async fn retention(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<ObjectLock>, StorageError> {
        let out = match self
            .client
            .get_object_retention()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code(&e).as_deref() == Some("NoSuchObjectLockConfiguration") => {
                return Ok(None);
            }
            Err(e) => return Err(self.call(StorageOp::Head, key.as_str()).error(e)),
        };
        let Some(retention) = out.retention() else {
            return Ok(None);
        };
        let mode = match retention.mode() {
            Some(ObjectLockRetentionMode::Compliance) => LockMode::Compliance,
            Some(ObjectLockRetentionMode::Governance) => LockMode::Governance,
            _ => return Ok(None),
        };
        let Some(until) = retention
            .retain_until_date()
            .and_then(|t| SystemTime::try_from(*t).ok())
        else {
            return Ok(None);
        };
        Ok(Some(ObjectLock {
            mode,
            retain_until: until,
        }))
    }

    /// Extends the current version's retention to `lock.retain_until`, keeping its mode.
    pub(crate) async fn extend_retention(
        &self,
        key: &ObjectKey,
        lock: ObjectLock,
    ) -> Result<Extension, StorageError> {
        let current = self.retention(key).await?;
        if let Some(current) = current
            && current.retain_until >= lock.retain_until
        {
            return Ok(Extension::AlreadyLonger);
        }
        let mode = current.map_or(lock.mode, |c| c.mode);
        let retention = ObjectLockRetention::builder()
            .mode(retention_mode(mode))
            .retain_until_date(sdk_time(lock.retain_until))
            .build();
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .retention(retention)
            .send()
            .await
            .map_err(|e| self.call(StorageOp::Put, key.as_str()).error(e))?;
        Ok(Extension::Extended)
    }

    /// PutObjectLegalHold on the current version.
    pub(crate) async fn set_legal_hold(
        &self,
        key: &ObjectKey,
        on: bool,
    ) -> Result<(), StorageError> {
        let status = if on {
            ObjectLockLegalHoldStatus::On
        } else {
            ObjectLockLegalHoldStatus::Off
        };
        self.client
            .put_object_legal_hold()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await
            .map_err(|e| self.call(StorageOp::Put, key.as_str()).error(e))?;
        Ok(())
    }

    /// GetObjectLegalHold of the current version (no legal hold ever set: off).
    pub(crate) async fn legal_hold(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        match self
            .client
            .get_object_legal_hold()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
        {
            Ok(out) => {
                Ok(out.legal_hold().and_then(|h| h.status())
                    == Some(&ObjectLockLegalHoldStatus::On))
            }
            Err(e) if code(&e).as_deref() == Some("NoSuchObjectLockConfiguration") => Ok(false),
            Err(e) => Err(self.call(StorageOp::Head, key.as_str()).error(e)),
        }
    }

    /// Every version and delete marker of `keys`: per directory of keys (`wal/<16 hex>/`,
    /// `backups/<id>/bundles/`, ...), one ListObjectVersions walk under the common prefix of
    /// its keys, so that the listing stays about as long as the batch.
    async fn versions_of(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<(ObjectKey, String)>, StorageError> {
        let mut groups: std::collections::BTreeMap<&str, Vec<ObjectKey>> = Default::default();
        for key in keys {
            let dir = key.as_str().rsplit_once('/').map_or("", |(dir, _)| dir);
            groups.entry(dir).or_default().push(key.clone());
        }
        let mut out = Vec::new();
        for group in groups.values() {
            out.extend(self.versions_under_common_prefix(group).await?);
        }
        Ok(out)
    }

    /// One ListObjectVersions walk under the common prefix of `keys`, kept to those keys.
    async fn versions_under_common_prefix(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<(ObjectKey, String)>, StorageError> {
        let wanted: BTreeSet<String> = keys.iter().map(|k| self.full_key(k.as_str())).collect();
        let prefix = common_prefix(&wanted);
        let call = self.call(StorageOp::List, keys.first().map_or("", |k| k.as_str()));
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| call.error(e))?;
            let found = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (full, version) in found {
                let (Some(full), Some(version)) = (full, version) else {
                    continue;
                };
                if !wanted.contains(full) {
                    continue;
                }
                let relative = full.strip_prefix(self.prefix.as_str()).unwrap_or(full);
                if let Some(key) = keys.iter().find(|k| k.as_str() == relative) {
                    out.push((key.clone(), version.to_owned()));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// DeleteObjects naming every version of `keys`; the versions refused come back.
    pub(crate) async fn delete_all_versions(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<DeleteRefusal>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let versions = self.versions_of(keys).await?;
        let call = self.call(StorageOp::Delete, keys[0].as_str());
        let mut refused = Vec::new();
        for batch in versions.chunks(DELETE_BATCH) {
            let out = self
                .delete_objects(&call, batch.iter().map(|(k, v)| (k, Some(v.as_str()))))
                .await?;
            for err in out.errors() {
                if err.code() == Some("NoSuchKey") || err.code() == Some("NoSuchVersion") {
                    continue;
                }
                let full = err.key().unwrap_or_default();
                let relative = full.strip_prefix(self.prefix.as_str()).unwrap_or(full);
                let Some(key) = keys.iter().find(|k| k.as_str() == relative) else {
                    return Err(
                        call.permanent(format!("DeleteObjects answered for unknown key {full:?}"))
                    );
                };
                // One refusal per key is enough to keep it listed and reported.
                if refused.iter().any(|r: &DeleteRefusal| &r.key == key) {
                    continue;
                }
                refused.push(DeleteRefusal {
                    key: key.clone(),
                    reason: format!(
                        "{}: {} (version {})",
                        err.code().unwrap_or("error"),
                        err.message().unwrap_or("refused"),
                        err.version_id().unwrap_or("?")
                    ),
                });
            }
        }
        Ok(refused)
    }
}

/// The longest prefix all of `keys` share.
fn common_prefix(keys: &BTreeSet<String>) -> String {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return String::new();
    };
    // In sorted order the first and last differ the most.
    let len = first
        .char_indices()
        .zip(last.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, a), _)| i + a.len_utf8());
    first[..len].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_of_keys() {
        let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            common_prefix(&set(&["wal/a/01", "wal/a/02", "wal/a/1"])),
            "wal/a/"
        );
        assert_eq!(common_prefix(&set(&["x"])), "x");
        assert_eq!(common_prefix(&set(&["a", "b"])), "");
        assert_eq!(common_prefix(&BTreeSet::new()), "");
    }

    #[test]
    fn retain_until_rounds_up_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        assert_eq!(sdk_time(t).secs(), 2);
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        assert_eq!(sdk_time(t).secs(), 7);
    }
}
