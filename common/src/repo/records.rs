//! Records: the small JSON documents walship keeps beside the data (audit records, pin
//! records, drill reports), stored so that people can read them in a plain repository and
//! nobody can without the key in an encrypted one (`docs/FORMAT.md`, "Records").
//!
//! - In a plain repository a record is its JSON as it is, readable with any tool (the format
//!   these objects always had).
//! - In an encrypted repository a record is stored like every other object: encoded by the
//!   codec, then sealed in the envelope. A plain record found there is refused
//!   ([`super::encryption::EncryptionError::PlainObject`]): anyone with write access could
//!   have put it there (an `unpin`, a forged audit record).
//!
//! Either way the *content* a reader gets back is the JSON the writer serialised, byte for
//! byte; the audit chain hashes that content, not the stored bytes.

use bytes::Bytes;

use super::{RepoError, Repository, limits};
use crate::codec;
use crate::storage::{ObjectKey, StorageError};
use crate::task::run_blocking;

impl Repository {
    /// Refuses a walship whose keys do not match what `walship.json` says (keys for a plain
    /// repository, none for an encrypted one), when `walship.json` exists. Read once per
    /// process. Commands that only list records call it first, so that an empty listing
    /// never passes for "nothing there" without the key.
    pub async fn check_keys(&self) -> Result<(), RepoError> {
        match self.identity().await? {
            Some(identity) => self.check_encryption(&identity),
            None => Ok(()),
        }
    }

    /// Stores the record `json` under `key` (see the module documentation): plain in a plain
    /// repository, encoded and sealed in an encrypted one. With `if_absent` an existing
    /// object is never replaced.
    pub async fn put_record(
        &self,
        key: &ObjectKey,
        json: Bytes,
        if_absent: bool,
    ) -> Result<(), RepoError> {
        if self.identity().await?.is_none() {
            // No walship.json yet: a data key under keys/ already marks the repository as
            // encrypted, and a walship without keys must not add plain objects to it.
            self.refuse_plain_creation().await?;
        }
        match Box::pin(self.sealing_key()).await? {
            None => self.put_plain(key, json, if_absent).await,
            Some(_) => self.put_content(key, json, if_absent).await.map(|_| ()),
        }
    }

    /// Reads the record at `key` and returns its JSON, at most `limit` bytes. Without the key
    /// an encrypted repository is refused before anything is read
    /// ([`Repository::check_keys`]); a sealed record without a key is
    /// [`RepoError::Corrupt`] (`CodecError::Encrypted`), never content; a damaged sealed
    /// record is [`RepoError::Corrupt`] naming it.
    pub async fn get_record(&self, key: &ObjectKey, limit: u64) -> Result<Bytes, RepoError> {
        self.check_keys().await?;
        let stored = self
            .storage()
            .get_bytes(key, limits::stored_limit(limit))
            .await?;
        if self.keys().is_none() && !codec::is_envelope(&stored) {
            if stored.len() as u64 > limit {
                return Err(StorageError::TooLarge {
                    key: key.to_string(),
                    limit,
                    size: stored.len() as u64,
                }
                .into());
            }
            return Ok(stored);
        }
        let encoded = Box::pin(self.open_stored(key, stored)).await?;
        let decoded = run_blocking(move || codec::decode_to_vec(&encoded, limit))
            .await
            .map_err(|e| self.corrupt(key, e))?;
        Ok(Bytes::from(decoded))
    }
}

/// True when reading a record failed because *that record* is damaged, forged or sealed
/// with a key nobody holds (a per-record finding for `audit --verify` and `verify`), not
/// because the repository or the key file cannot be reached (which stops the command).
pub fn is_damaged_record(err: &RepoError) -> bool {
    use super::encryption::EncryptionError as E;
    match err {
        RepoError::Corrupt { .. } => true,
        RepoError::Storage(e) => matches!(e, StorageError::TooLarge { .. }),
        RepoError::Encryption(e) => {
            matches!(
                **e,
                E::PlainObject { .. } | E::NoKey { .. } | E::Wrapped { .. }
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, CodecError};
    use crate::crypto::Keyring;
    use crate::repo::RepoIdentity;
    use crate::storage::{AnyStorage, LocalStorage};

    fn repo(dir: &std::path::Path, key_file: Option<std::path::PathBuf>) -> Repository {
        let storage = AnyStorage::from(LocalStorage::new(dir.join("repo")).unwrap());
        Repository::new(storage, Codec::Lz4).with_key_file(key_file)
    }

    const JSON: &[u8] = b"{\"reason\": \"a secret reason\"}";

    #[tokio::test]
    async fn plain_repositories_keep_plain_json() {
        let dir = tempfile::tempdir().unwrap();
        let plain = repo(dir.path(), None);
        plain
            .ensure_identity(&RepoIdentity::new(42, 15, 16 << 20))
            .await
            .unwrap();
        let key = ObjectKey::new("drills/x.json").unwrap();
        plain
            .put_record(&key, Bytes::from_static(JSON), true)
            .await
            .unwrap();
        let stored = std::fs::read(dir.path().join("repo/drills/x.json")).unwrap();
        assert_eq!(stored, JSON);
        assert_eq!(plain.get_record(&key, 1 << 10).await.unwrap(), JSON);
        // Larger than the limit: refused, not truncated.
        assert!(plain.get_record(&key, 4).await.is_err());
    }

    #[tokio::test]
    async fn encrypted_repositories_seal_records_and_refuse_plain_ones() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys");
        Keyring::init(&key_file).unwrap();
        let keyed = repo(dir.path(), Some(key_file));
        keyed
            .ensure_identity(&RepoIdentity::new(42, 15, 16 << 20))
            .await
            .unwrap();
        let key = ObjectKey::new("drills/x.json").unwrap();
        keyed
            .put_record(&key, Bytes::from_static(JSON), true)
            .await
            .unwrap();
        let path = dir.path().join("repo/drills/x.json");
        let stored = std::fs::read(&path).unwrap();
        assert!(codec::is_envelope(&stored));
        assert!(!stored.windows(6).any(|w| w == b"secret"));
        assert_eq!(keyed.get_record(&key, 1 << 10).await.unwrap(), JSON);

        // A flipped byte: damage naming the record.
        let mut flipped = stored.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = keyed.get_record(&key, 1 << 10).await.unwrap_err();
        assert!(is_damaged_record(&err), "{err}");
        assert!(err.to_string().contains("drills/x.json"), "{err}");

        // A plain record planted in the encrypted repository: refused.
        std::fs::write(&path, JSON).unwrap();
        let err = keyed.get_record(&key, 1 << 10).await.unwrap_err();
        assert!(is_damaged_record(&err), "{err}");
        assert!(err.to_string().contains("is not encrypted"), "{err}");

        // Without the key: the repository is refused before any record is read.
        std::fs::write(&path, &stored).unwrap();
        let keyless = repo(dir.path(), None);
        let err = keyless.get_record(&key, 1 << 10).await.unwrap_err();
        assert!(err.to_string().contains("is encrypted"), "{err}");
        assert!(!err.is_not_found() && !is_damaged_record(&err), "{err}");
        let err = keyless
            .put_record(&key, Bytes::from_static(JSON), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is encrypted"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), stored);
        // And a sealed record met without walship.json's check is never content.
        std::fs::remove_file(dir.path().join("repo/walship.json")).unwrap();
        let err = repo(dir.path(), None)
            .get_record(&key, 1 << 10)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RepoError::Corrupt {
                    source: CodecError::Encrypted,
                    ..
                }
            ),
            "{err}"
        );
    }
}
