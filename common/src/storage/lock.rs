//! S3 Object Lock (WORM) seen from the storage layer: the lock a put asks for
//! ([`ObjectLock`] in [`super::PutOptions::lock`]), and the calls that read or change locks
//! after the fact (retention extension, legal holds, the bucket's lock settings, removing
//! every version of a key).
//!
//! Only the S3 backend implements Object Lock; on a local repository every call here is
//! [`StorageError::Permanent`] (the configuration refuses `s3.object_lock` with a `file://`
//! repository before it comes to that). This module knows nothing of WAL or backups: which
//! object gets which lock is decided in [`crate::repo::lock`].

use std::time::SystemTime;

use super::{AnyStorage, Backend, DeleteRefusal, ObjectKey, Plain, S3Storage, StorageError};
use super::{Storage, StorageOp};

/// The Object Lock retention mode of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete or shorten it.
    Governance,
    /// Nobody, the account's root user included, can delete the locked version or shorten
    /// its retention before the retain-until date; it can only be extended.
    Compliance,
}

impl LockMode {
    /// The S3 name (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// A lock on one object version: its mode and until when it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: LockMode,
    /// The version cannot be deleted (nor its retention shortened) before this time.
    pub retain_until: SystemTime,
}

/// What a bucket says about Object Lock and versioning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketLockStatus {
    /// The bucket's name.
    pub bucket: String,
    /// `ObjectLockEnabled = Enabled` in the bucket's Object Lock configuration.
    pub object_lock_enabled: bool,
    /// The bucket's versioning status (`Enabled`, `Suspended`, or `None` when never set).
    pub versioning: Option<String>,
}

impl BucketLockStatus {
    /// True when both Object Lock and versioning are on, as a locked repository needs.
    pub fn is_usable(&self) -> bool {
        self.object_lock_enabled && self.versioning.as_deref() == Some("Enabled")
    }
}

/// What [`AnyStorage::extend_lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// The retain-until date was moved to the one asked for.
    Extended,
    /// The object was already locked at least that long: nothing changed (a lock is never
    /// shortened).
    AlreadyLonger,
}

impl AnyStorage {
    /// The S3 backend inside, when there is one (possibly under fault injection).
    fn s3(&self, op: StorageOp, key: &str) -> Result<&S3Storage, StorageError> {
        let plain = match self.backend() {
            Backend::Plain(plain) => plain,
            Backend::Faulty(faulty) => faulty.inner(),
        };
        match plain {
            Plain::S3(s3) => Ok(s3),
            Plain::Local(local) => Err(StorageError::Permanent {
                op,
                key: key.to_owned(),
                endpoint: local.location().to_owned(),
                message: "S3 Object Lock needs an s3:// repository; a local directory has no \
                          object locks (set s3.object_lock = \"off\")"
                    .to_owned(),
            }),
            // Locks, holds and version removals all change the bucket: never through a view.
            Plain::AsOf(view) => Err(view.refuse(op, key)),
        }
    }

    /// The bucket's Object Lock and versioning settings (GetObjectLockConfiguration,
    /// GetBucketVersioning).
    pub async fn bucket_lock_status(&self) -> Result<BucketLockStatus, StorageError> {
        let s3 = self.s3(StorageOp::Head, "")?;
        self.retry_policy()
            .run(StorageOp::Head, "", || s3.bucket_lock_status())
            .await
    }

    /// The bucket's settings when they allow `s3.object_lock = "<setting>"` (Object Lock
    /// enabled and versioning on); otherwise a [`StorageError::Permanent`] refusal naming
    /// the bucket, what it lacks and the setting. Two requests.
    pub async fn require_object_lock(
        &self,
        setting: &str,
    ) -> Result<BucketLockStatus, StorageError> {
        let status = self.bucket_lock_status().await?;
        if status.is_usable() {
            return Ok(status);
        }
        let lacks = if status.object_lock_enabled {
            format!(
                "has Object Lock enabled but versioning {}",
                status.versioning.as_deref().unwrap_or("never enabled")
            )
        } else {
            "does not have S3 Object Lock enabled".to_string()
        };
        Err(StorageError::Permanent {
            op: StorageOp::Head,
            key: format!("(settings of bucket {})", status.bucket),
            endpoint: self.location().to_owned(),
            message: format!(
                "bucket {} {lacks}, but s3.object_lock = \"{setting}\" asks for every object to be \
                 locked: use a bucket created with Object Lock enabled (aws s3api create-bucket \
                 --object-lock-enabled-for-bucket; it turns versioning on), or set \
                 s3.object_lock = \"off\"",
                status.bucket
            ),
        })
    }

    /// The current version's lock of `key`, `None` when it has no retention.
    pub async fn lock_of(&self, key: &ObjectKey) -> Result<Option<ObjectLock>, StorageError> {
        let s3 = self.s3(StorageOp::Head, key.as_str())?;
        self.retry_policy()
            .run(StorageOp::Head, key.as_str(), || s3.retention(key))
            .await
    }

    /// Moves the retain-until date of `key`'s current version to `lock.retain_until` when
    /// that is later than its own (PutObjectRetention; COMPLIANCE allows only extensions).
    /// An object already locked in a mode keeps it; one without retention gets `lock.mode`.
    pub async fn extend_lock(
        &self,
        key: &ObjectKey,
        lock: ObjectLock,
    ) -> Result<Extension, StorageError> {
        let s3 = self.s3(StorageOp::Put, key.as_str())?;
        self.retry_policy()
            .run(StorageOp::Put, key.as_str(), || {
                s3.extend_retention(key, lock)
            })
            .await
    }

    /// Sets (`on`) or releases the legal hold of `key`'s current version
    /// (PutObjectLegalHold). A version under legal hold cannot be deleted, whatever its
    /// retention says.
    pub async fn set_legal_hold(&self, key: &ObjectKey, on: bool) -> Result<(), StorageError> {
        let s3 = self.s3(StorageOp::Put, key.as_str())?;
        self.retry_policy()
            .run(StorageOp::Put, key.as_str(), || s3.set_legal_hold(key, on))
            .await
    }

    /// Whether `key`'s current version is under legal hold.
    pub async fn legal_hold(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        let s3 = self.s3(StorageOp::Head, key.as_str())?;
        self.retry_policy()
            .run(StorageOp::Head, key.as_str(), || s3.legal_hold(key))
            .await
    }

    /// Removes every version (and delete marker) of each of `keys` (at most
    /// [`super::DELETE_BATCH`]): on a versioned bucket a plain delete only hides an object
    /// behind a delete marker, and its bytes stay (and stay billed). A version the storage
    /// refuses to remove (retention not passed, legal hold) is returned as a
    /// [`DeleteRefusal`] naming its key and version; the key stays listed, and a later run
    /// removes it.
    pub async fn delete_all_versions(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<DeleteRefusal>, StorageError> {
        let first = keys.first().map_or("", |k| k.as_str());
        let s3 = self.s3(StorageOp::Delete, first)?;
        self.retry_policy()
            .run(StorageOp::Delete, first, || s3.delete_all_versions(keys))
            .await
    }
}
