//! The repository: object storage seen as walship's catalog of WAL and backups.
//!
//! [`Repository`] joins a storage backend, the object codec and the layout: it stores and
//! reads *contents* under keys (encoding, checksumming and verifying on the way), and keeps
//! the repository's identity (`walship.json`) so that no command ever mixes two clusters.

mod dek_usage;
pub mod encryption;
pub mod identity;
pub mod journal;
pub mod layout;
pub mod limits;
pub mod lock;
pub mod partial;
mod records;

pub use dek_usage::DekUsage;
pub use records::is_damaged_record;

use bytes::Bytes;

use crate::codec::{self, Codec, CodecError};
use crate::storage::{AnyStorage, ObjectKey, PutOptions, Storage, StorageError};
use crate::task::run_blocking;
use encryption::{EncryptionError, RepoKeys};
pub use identity::{IdentityEncryption, RepoIdentity};

/// A repository: where WAL and backups live, and how objects are encoded there.
#[derive(Debug, Clone)]
pub struct Repository {
    storage: AnyStorage,
    codec: Codec,
    /// `walship.json` once read: it is create-only and never rewritten, so a process reads it
    /// once (an `--async` archive call needs it for every file it pushes).
    identity: std::sync::Arc<std::sync::OnceLock<RepoIdentity>>,
    /// The encryption keys, when `[encryption]` is configured (`encryption.rs`).
    keys: Option<std::sync::Arc<RepoKeys>>,
    /// The Object Lock every new object gets, when `[s3] object_lock` is on (`lock.rs`).
    lock: Option<lock::LockPolicy>,
}

/// What went wrong with a repository, beyond plain storage errors.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage backend failed or the object is absent (see [`StorageError::is_not_found`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An object's bytes do not decode or do not match their checksum.
    #[error("object {key} in {location} is corrupt: {source}")]
    Corrupt {
        /// The object's key.
        key: String,
        /// The repository.
        location: String,
        /// What the codec found.
        #[source]
        source: CodecError,
    },
    /// The repository has no `walship.json`: nothing was ever archived there, or this is the
    /// wrong place.
    #[error(
        "{location} is not a walship repository: it has no walship.json (nothing was archived there yet, or the repository URL is wrong)"
    )]
    NotInitialised {
        /// The repository.
        location: String,
    },
    /// `walship.json` exists but cannot be understood.
    #[error("walship.json in {location} is unreadable: {message}")]
    BadIdentity {
        /// The repository.
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// The repository belongs to another cluster (or to another segment size or version).
    #[error(
        "repository {location} belongs to another cluster: it holds system identifier {} (PostgreSQL {}, {} byte segments), but this is system identifier {} (PostgreSQL {}, {} byte segments); refusing to mix their WAL",
        repo.system_identifier, repo.pg_major, repo.wal_segment_size,
        found.system_identifier, found.pg_major, found.wal_segment_size
    )]
    OtherCluster {
        /// The repository.
        location: String,
        /// What `walship.json` says.
        repo: Box<RepoIdentity>,
        /// What the cluster at hand says.
        found: Box<RepoIdentity>,
    },
    /// Encryption keys are missing, wrong or do not match the repository.
    #[error(transparent)]
    Encryption(Box<EncryptionError>),
}

impl From<EncryptionError> for RepoError {
    fn from(err: EncryptionError) -> Self {
        RepoError::Encryption(Box::new(err))
    }
}

impl From<crate::crypto::KeyringError> for RepoError {
    fn from(err: crate::crypto::KeyringError) -> Self {
        EncryptionError::from(err).into()
    }
}

impl RepoError {
    /// True when the object (or `walship.json`) definitively does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RepoError::Storage(e) if e.is_not_found())
    }
}

/// What was stored by [`Repository::put_content`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject {
    /// Raw (decoded) length.
    pub raw_len: u64,
    /// crc32c of the raw bytes.
    pub raw_crc32c: u32,
    /// Encoded length as stored.
    pub stored_len: u64,
    /// crc32c of the encoded bytes as stored (what a backend with
    /// [`crate::storage::Capabilities::crc32c_in_head`] reports on HEAD).
    pub stored_crc32c: u32,
}

impl Repository {
    /// A repository over `storage`, writing new objects with `codec`.
    pub fn new(storage: AnyStorage, codec: Codec) -> Repository {
        Repository {
            storage,
            codec,
            identity: Default::default(),
            keys: None,
            lock: None,
        }
    }

    /// The same repository, putting every new object under `lock` (S3 Object Lock), or
    /// none for `None`.
    pub fn with_object_lock(mut self, lock: Option<lock::LockPolicy>) -> Repository {
        self.lock = lock;
        self
    }

    /// The Object Lock policy, when configured.
    pub fn object_lock(&self) -> Option<&lock::LockPolicy> {
        self.lock.as_ref()
    }

    /// The lock a new object at `key` gets now (`None` without Object Lock). Every put of
    /// the repository's objects passes it in [`PutOptions::lock`].
    pub fn lock_for(&self, key: &ObjectKey) -> Option<crate::storage::ObjectLock> {
        self.lock
            .and_then(|policy| policy.lock_for(key, std::time::SystemTime::now()))
    }

    /// The same repository, encrypting new objects and decrypting with the keyring at
    /// `key_file` (read on first use), or unencrypted for `None`.
    pub fn with_key_file(mut self, key_file: Option<std::path::PathBuf>) -> Repository {
        self.keys = key_file.map(|path| std::sync::Arc::new(RepoKeys::new(path)));
        self
    }

    /// The same repository, with its keys derived from the passphrase `command` prints
    /// (`[encryption] passphrase_command`), when set.
    pub fn with_passphrase_command(mut self, command: Option<String>) -> Repository {
        if let Some(command) = command {
            self.keys = Some(std::sync::Arc::new(RepoKeys::from_passphrase_command(
                command,
            )));
        }
        self
    }

    /// The encryption keys, when configured.
    pub fn keys(&self) -> Option<&RepoKeys> {
        self.keys.as_deref()
    }

    /// The codec new objects are written with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The storage backend.
    pub fn storage(&self) -> &AnyStorage {
        &self.storage
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> &str {
        self.storage.location()
    }

    /// The repository's identity, or `None` if `walship.json` does not exist yet.
    pub async fn identity(&self) -> Result<Option<RepoIdentity>, RepoError> {
        if let Some(known) = self.identity.get() {
            return Ok(Some(known.clone()));
        }
        let key = layout::identity_key();
        match self.get_plain(&key, limits::IDENTITY_MAX).await {
            Ok(bytes) => {
                let identity =
                    RepoIdentity::from_json(&bytes).map_err(|message| RepoError::BadIdentity {
                        location: self.location().to_string(),
                        message,
                    })?;
                Ok(Some(self.identity.get_or_init(|| identity).clone()))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The repository's identity; a repository without one is an error, because a command
    /// that reads (fetch, restore) must never take "no walship.json" for "empty archive".
    pub async fn require_identity(&self) -> Result<RepoIdentity, RepoError> {
        let identity = self
            .identity()
            .await?
            .ok_or_else(|| RepoError::NotInitialised {
                location: self.location().to_string(),
            })?;
        self.check_encryption(&identity)?;
        Ok(identity)
    }

    /// Refuses a walship without keys on an encrypted repository, and one with keys on a
    /// plain repository: objects are never mixed silently.
    pub fn check_encryption(&self, identity: &RepoIdentity) -> Result<(), RepoError> {
        match (&identity.encryption, &self.keys) {
            (Some(enc), None) => Err(EncryptionError::NoKeyConfigured {
                location: self.location().to_string(),
                scheme: enc.scheme.clone(),
            }
            .into()),
            (None, Some(_)) => Err(EncryptionError::NotEncrypted {
                location: self.location().to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Checks that the repository belongs to the cluster described by `found`, creating
    /// `walship.json` from it if the repository has none yet. Of two commands creating it at
    /// once, one wins and the other checks against the winner.
    pub async fn ensure_identity(&self, found: &RepoIdentity) -> Result<RepoIdentity, RepoError> {
        let existing = match self.identity().await? {
            Some(existing) => existing,
            None => {
                self.refuse_plain_creation().await?;
                let mut found = found.clone();
                if self.keys.is_some() {
                    // Read the key file before the repository says it is encrypted.
                    if let Some(keys) = self.keys.as_ref().filter(|k| k.is_key_file()) {
                        keys.keyring()?;
                    }
                    found.encryption = Some(IdentityEncryption {
                        scheme: encryption::SCHEME.to_string(),
                    });
                }
                let found = &found;
                let json =
                    serde_json::to_vec_pretty(found).map_err(|e| RepoError::BadIdentity {
                        location: self.location().to_string(),
                        message: e.to_string(),
                    })?;
                match self
                    .put_plain(&layout::identity_key(), Bytes::from(json), true)
                    .await
                {
                    Ok(_) => return Ok(found.clone()),
                    Err(RepoError::Storage(e)) if e.is_already_exists() => {
                        self.require_identity().await?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.check_identity(&existing, found)?;
        self.check_encryption(&existing)?;
        Ok(existing)
    }

    /// Refuses `found` unless it is the cluster `repo` describes (system identifier and
    /// segment size; the major version may differ only if the identifier is the same, which
    /// Postgres never produces, so it is checked too).
    pub fn check_identity(
        &self,
        repo: &RepoIdentity,
        found: &RepoIdentity,
    ) -> Result<(), RepoError> {
        let same = repo.system_identifier == found.system_identifier
            && repo.wal_segment_size == found.wal_segment_size
            && repo.pg_major == found.pg_major;
        if same {
            Ok(())
        } else {
            Err(RepoError::OtherCluster {
                location: self.location().to_string(),
                repo: Box::new(repo.clone()),
                found: Box::new(found.clone()),
            })
        }
    }

    /// Encodes `content` with the repository's codec and stores it under `key`, with the
    /// encoded bytes' crc32c sent along so the backend confirms what it received. With
    /// `if_absent`, an existing object is never replaced (`StorageError::AlreadyExists`).
    pub async fn put_content(
        &self,
        key: &ObjectKey,
        content: Bytes,
        if_absent: bool,
    ) -> Result<StoredObject, RepoError> {
        let raw_len = content.len() as u64;
        let raw_crc32c = crate::crc::crc32c(&content);
        let encoded = self.encode_content(key, content).await?;
        let stored_len = encoded.len() as u64;
        let stored_crc32c = crate::crc::crc32c(&encoded);
        let opts = PutOptions {
            if_absent,
            crc32c: Some(stored_crc32c),
            lock: self.lock_for(key),
        };
        self.storage.put(key, encoded, opts).await?;
        Ok(StoredObject {
            raw_len,
            raw_crc32c,
            stored_len,
            stored_crc32c,
        })
    }

    /// Reads the object at `key` and returns its verified content, which may be at most
    /// `limit` bytes (the most an object of its kind may hold: see [`limits`]). A corrupt
    /// object, or one larger than that, is [`RepoError::Corrupt`], never content; no more
    /// than about `limit` bytes are ever read or decoded.
    pub async fn get_content(&self, key: &ObjectKey, limit: u64) -> Result<Bytes, RepoError> {
        let stored = self
            .storage
            .get_bytes(key, limits::stored_limit(limit))
            .await?;
        self.decode_stored(key, stored, limit).await
    }

    /// The bytes [`Repository::put_content`] would store under `key` for `content` (the
    /// repository's codec, sealed for `key` when the repository encrypts), without storing
    /// them: a tail journal's frame holds such bytes for its piece's key.
    pub async fn encode_content(
        &self,
        key: &ObjectKey,
        content: Bytes,
    ) -> Result<Bytes, RepoError> {
        let codec = self.codec;
        let encoded = run_blocking(move || codec::encode_to_vec(&content, codec))
            .await
            .map_err(|e| self.corrupt(key, e))?;
        self.seal_stored(key, Bytes::from(encoded)).await
    }

    /// The verified content of `stored`, bytes stored for `key` (see
    /// [`Repository::get_content`], which reads them first).
    pub async fn decode_stored(
        &self,
        key: &ObjectKey,
        stored: Bytes,
        limit: u64,
    ) -> Result<Bytes, RepoError> {
        let opened = self.open_stored(key, stored).await?;
        self.decode_opened(key, opened, limit).await
    }

    /// [`Repository::decode_stored`] of bytes [`Repository::open_stored`] already opened
    /// (decrypted), for a caller that tried another decoder on them first.
    pub async fn decode_opened(
        &self,
        key: &ObjectKey,
        opened: Bytes,
        limit: u64,
    ) -> Result<Bytes, RepoError> {
        let decoded = run_blocking(move || codec::decode_to_vec(&opened, limit))
            .await
            .map_err(|e| self.corrupt(key, e))?;
        Ok(Bytes::from(decoded))
    }

    /// Stores `bytes` under `key` as they are (no codec), for documents people read with
    /// ordinary tools (`walship.json`). The backend still checks a crc32c of the upload.
    pub async fn put_plain(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        if_absent: bool,
    ) -> Result<(), RepoError> {
        let opts = PutOptions {
            if_absent,
            crc32c: Some(crate::crc::crc32c(&bytes)),
            lock: self.lock_for(key),
        };
        self.storage.put(key, bytes, opts).await?;
        Ok(())
    }

    /// Reads an object stored with [`Repository::put_plain`], of at most `max_len` bytes.
    pub async fn get_plain(&self, key: &ObjectKey, max_len: u64) -> Result<Bytes, RepoError> {
        Ok(self.storage.get_bytes(key, max_len).await?)
    }

    /// Whether an object exists at `key` (a HEAD; nothing is read or verified).
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool, RepoError> {
        match self.storage.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn corrupt(&self, key: &ObjectKey, source: CodecError) -> RepoError {
        RepoError::Corrupt {
            key: key.to_string(),
            location: self.location().to_string(),
            source,
        }
    }
}
