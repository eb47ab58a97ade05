//! The repository's side of client-side encryption: the keys a [`super::Repository`] holds,
//! finding and creating wrapped data keys under `keys/`, and sealing or opening the stored
//! bytes of objects (`docs/FORMAT.md`, "Encrypted objects").
//!
//! Every object is still encoded by the codec first; sealing wraps the encoded object whole,
//! opening gives the encoded object back, so compression precedes encryption and every
//! check of the codec still runs after decryption. Errors name ids and keys, never key bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::crypto::dek::WrapError;
use crate::crypto::{
    DekId, EnvelopeHeader, KekId, Keyring, KeyringError, OpeningReader, SealingWriter, SecretKey,
    WrappedDek,
};
use crate::storage::{ObjectKey, Storage};

/// Prefix of the wrapped data keys.
pub const KEYS_PREFIX: &str = "keys/";
/// The scheme `walship.json` records for an encrypted repository.
pub const SCHEME: &str = "walship-envelope-v1";
/// The most a wrapped-key object may hold.
const WRAPPED_MAX: u64 = 64 << 10;

/// The key of a data key wrapped under a KEK: `keys/<dek-id>/<kek-id>.json`.
pub fn wrapped_key(dek: &DekId, kek: &KekId) -> ObjectKey {
    ObjectKey::new(format!("{KEYS_PREFIX}{dek}/{kek}.json")).expect("hex ids make a valid key")
}

/// Parses `keys/<dek-id>/<kek-id>.json`.
pub fn parse_wrapped_key(key: &str) -> Option<(DekId, KekId)> {
    let rest = key.strip_prefix(KEYS_PREFIX)?.strip_suffix(".json")?;
    let (dek, kek) = rest.split_once('/')?;
    Some((DekId::parse(dek)?, KekId::parse(kek)?))
}

/// Why encryption keys cannot be used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The key file cannot be read.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// No key held by this walship unwraps the data key an object names.
    #[error(
        "object {object} is encrypted with data key {dek}, and no key in {key_file} unwraps it (tried key-encryption keys {tried}): the key file is not the one this repository was written with, or the old key was removed before `walship key rewrap`"
    )]
    NoKey {
        /// The object being read.
        object: String,
        /// Its data key.
        dek: DekId,
        /// The key file.
        key_file: PathBuf,
        /// The KEK ids tried.
        tried: String,
    },
    /// A wrapped data key does not unwrap or is malformed.
    #[error("wrapped data key {key}: {source}")]
    Wrapped {
        /// Its repository key.
        key: String,
        /// What is wrong.
        #[source]
        source: WrapError,
    },
    /// An encrypted repository holds an object that is not encrypted: never trusted, since
    /// anyone with write access could have put it there.
    #[error(
        "object {object} is not encrypted, but this repository is: refusing it (objects are never mixed)"
    )]
    PlainObject {
        /// The object.
        object: String,
    },
    /// The repository is encrypted and this walship has no key.
    #[error(
        "repository {location} is encrypted ({scheme}); set [encryption] key_file (WALSHIP_ENCRYPTION_KEY_FILE) to the key file it was written with"
    )]
    NoKeyConfigured {
        /// The repository.
        location: String,
        /// Its scheme.
        scheme: String,
    },
    /// A passphrase key is salted with the cluster's identity, which the repository does not
    /// record yet.
    #[error(
        "a passphrase_command key needs the repository's walship.json (the first walship archive creates it); none yet"
    )]
    NeedsIdentity,
    /// The passphrase command gave no key.
    #[error(transparent)]
    Passphrase(#[from] crate::crypto::passphrase::PassphraseError),
    /// The repository was created unencrypted and this walship has a key.
    #[error(
        "repository {location} was created without encryption, and this walship is configured to encrypt: refusing to mix encrypted and plain objects (use a new repository for encrypted backups)"
    )]
    NotEncrypted {
        /// The repository.
        location: String,
    },
}

/// Where the key-encryption keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    /// A keyring file (`walship key init`).
    File(PathBuf),
    /// A passphrase printed by a command; the KEK is derived with the cluster as salt, so
    /// the ring exists only once walship.json is known.
    Command(String),
}

/// The keys a repository reads and writes with: the keyring (read on first use), the data keys
/// already unwrapped, and the one new objects are written with.
pub struct RepoKeys {
    source: KeySource,
    keyring: OnceLock<Keyring>,
    deks: Mutex<HashMap<DekId, SecretKey>>,
    writer: tokio::sync::OnceCell<(DekId, SecretKey)>,
}

impl std::fmt::Debug for RepoKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the command (it may hold the passphrase) nor any key.
        f.debug_struct("RepoKeys")
            .field("key_file", &self.key_file())
            .finish_non_exhaustive()
    }
}

impl RepoKeys {
    /// Keys from the keyring at `key_file`, read when first needed.
    pub fn new(key_file: PathBuf) -> RepoKeys {
        RepoKeys::with_source(KeySource::File(key_file))
    }

    /// A key derived from the passphrase `command` prints, when first needed.
    pub fn from_passphrase_command(command: String) -> RepoKeys {
        RepoKeys::with_source(KeySource::Command(command))
    }

    fn with_source(source: KeySource) -> RepoKeys {
        RepoKeys {
            source,
            keyring: OnceLock::new(),
            deks: Mutex::new(HashMap::new()),
            writer: tokio::sync::OnceCell::new(),
        }
    }

    /// The key file, or a label naming the passphrase command (for messages).
    pub fn key_file(&self) -> &Path {
        match &self.source {
            KeySource::File(path) => path,
            KeySource::Command(_) => Path::new("[encryption] passphrase_command"),
        }
    }

    /// True for a key file (which `key rotate` can extend), false for a passphrase.
    pub fn is_key_file(&self) -> bool {
        matches!(self.source, KeySource::File(_))
    }

    /// The keyring: a key file is read on first use; a passphrase's ring exists once
    /// [`super::Repository::keyring`] derived it (it needs the cluster's identity).
    pub fn keyring(&self) -> Result<&Keyring, EncryptionError> {
        if let Some(ring) = self.keyring.get() {
            return Ok(ring);
        }
        match &self.source {
            KeySource::File(path) => {
                let ring = Keyring::load(path)?;
                Ok(self.keyring.get_or_init(|| ring))
            }
            KeySource::Command(_) => Err(EncryptionError::NeedsIdentity),
        }
    }

    pub(crate) fn cached(&self, dek: &DekId) -> Option<SecretKey> {
        self.deks.lock().expect("dek cache").get(dek).cloned()
    }

    pub(crate) fn remember(&self, dek: DekId, key: SecretKey) {
        self.deks.lock().expect("dek cache").insert(dek, key);
    }

    pub(crate) fn writer(&self) -> &tokio::sync::OnceCell<(DekId, SecretKey)> {
        &self.writer
    }
}

/// Seals an encoded object for `key` (blocking: run it off the async threads).
pub(crate) fn seal_bytes(
    encoded: &[u8],
    dek_id: DekId,
    dek: &SecretKey,
    key: &ObjectKey,
) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(encoded.len() + encoded.len() / 8192 + 256);
    let mut sealer = SealingWriter::new(out, dek_id, dek, key.as_ref())?;
    sealer.write_all(encoded)?;
    sealer.finish()
}

/// Opens a sealed object held in memory into the encoded object (blocking).
pub(crate) fn open_bytes(
    stored: &[u8],
    header: &EnvelopeHeader,
    dek: &SecretKey,
    key: &ObjectKey,
) -> Result<Vec<u8>, crate::codec::CodecError> {
    let body = &stored[crate::crypto::ENVELOPE_HEADER_LEN.min(stored.len())..];
    let mut opener = OpeningReader::new(body, header, dek, key.as_ref());
    let mut out = Vec::with_capacity(stored.len());
    opener.read_to_end(&mut out)?;
    Ok(out)
}

/// Parses a wrapped key object and unwraps it with `kek`.
pub(crate) fn unwrap_stored(
    bytes: &[u8],
    dek: &DekId,
    kek_id: &KekId,
    kek: &SecretKey,
) -> Result<SecretKey, EncryptionError> {
    let wrapped_err = |source| EncryptionError::Wrapped {
        key: wrapped_key(dek, kek_id).to_string(),
        source,
    };
    WrappedDek::from_json(bytes)
        .map_err(wrapped_err)?
        .unwrap(dek, kek_id, kek)
        .map_err(wrapped_err)
}

impl super::Repository {
    /// Seals the encoded object `encoded` for `key` when this repository encrypts; returns it
    /// unchanged otherwise. Every write of an object goes through here.
    pub async fn seal_stored(
        &self,
        key: &ObjectKey,
        encoded: bytes::Bytes,
    ) -> Result<bytes::Bytes, super::RepoError> {
        // Boxed: keeps every caller's future small (the key lookup nests several).
        let Some((dek_id, dek)) = Box::pin(self.sealing_key()).await? else {
            return Ok(encoded);
        };
        let object = key.clone();
        let sealed = crate::task::run_blocking(move || {
            seal_bytes(&encoded, dek_id, &dek, &object).map_err(crate::codec::CodecError::from)
        })
        .await
        .map_err(|e| self.corrupt(key, e))?;
        Ok(bytes::Bytes::from(sealed))
    }

    /// The data key new objects are sealed with, or `None` for a plain repository, after
    /// checking that writing matches what walship.json says (never mixed; walship.json is
    /// read once per process). A repository without walship.json yet is plain until the first
    /// archive creates it; see `refuse_plain_creation` for that archive.
    pub async fn sealing_key(&self) -> Result<Option<(DekId, SecretKey)>, super::RepoError> {
        // Without walship.json yet (a backup before the first archive), the data key under
        // `keys/` marks the repository as encrypted: the archive that creates walship.json
        // then records encryption, or refuses if it has no key (`refuse_plain_creation`).
        if let Some(identity) = self.identity().await? {
            self.check_encryption(&identity)?;
        }
        match self.keys.clone() {
            None => Ok(None),
            Some(keys) => Ok(Some(self.writer_dek(&keys).await?)),
        }
    }

    /// Before a walship without keys creates walship.json: refuses when `keys/` holds a data
    /// key (an encrypting walship wrote there first, e.g. a backup before any archive).
    pub(crate) async fn refuse_plain_creation(&self) -> Result<(), super::RepoError> {
        if self.keys.is_some() {
            return Ok(());
        }
        let found = self.storage.list_after(KEYS_PREFIX, None, 1).await?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(EncryptionError::NoKeyConfigured {
                location: self.location().to_string(),
                scheme: SCHEME.to_string(),
            }
            .into())
        }
    }

    /// The encoded object inside the stored bytes of `key`: opened when it is sealed, refused
    /// when it is sealed and this walship has no key (`CodecError::Encrypted`), and refused
    /// when it is plain in a repository this walship encrypts. Every read of an object goes
    /// through here.
    pub async fn open_stored(
        &self,
        key: &ObjectKey,
        stored: bytes::Bytes,
    ) -> Result<bytes::Bytes, super::RepoError> {
        let sealed = crate::codec::is_envelope(&stored);
        let keys = match (&self.keys, sealed) {
            (None, false) => return Ok(stored),
            (None, true) => return Err(self.corrupt(key, crate::codec::CodecError::Encrypted)),
            (Some(_), false) => {
                return Err(EncryptionError::PlainObject {
                    object: key.to_string(),
                }
                .into());
            }
            (Some(keys), true) => keys.clone(),
        };
        let header = EnvelopeHeader::read(&mut &stored[..]).map_err(|e| self.corrupt(key, e))?;
        let dek = Box::pin(self.reader_dek(&keys, header.dek_id(), key)).await?;
        let object = key.clone();
        let opened = crate::task::run_blocking(move || open_bytes(&stored, &header, &dek, &object))
            .await
            .map_err(|e| self.corrupt(key, e))?;
        Ok(bytes::Bytes::from(opened))
    }

    /// The keyring of `keys`, deriving a passphrase's key (once per process) from the
    /// command's output and the cluster's system identifier.
    pub async fn keyring<'k>(&self, keys: &'k RepoKeys) -> Result<&'k Keyring, super::RepoError> {
        let KeySource::Command(command) = &keys.source else {
            return Ok(keys.keyring()?);
        };
        if let Some(ring) = keys.keyring.get() {
            return Ok(ring);
        }
        let identity = self
            .identity()
            .await?
            .ok_or(EncryptionError::NeedsIdentity)?;
        let command = command.clone();
        let derived = tokio::task::spawn_blocking(move || {
            let mut passphrase = crate::crypto::passphrase::run(&command)?;
            let kek =
                crate::crypto::passphrase::derive_kek(&passphrase, identity.system_identifier);
            zeroize::Zeroize::zeroize(&mut passphrase);
            Ok::<_, EncryptionError>(kek)
        })
        .await
        .map_err(|e| {
            EncryptionError::Keyring(KeyringError::Io {
                path: keys.key_file().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })
        })??;
        let (id, key) = derived;
        let ring = Keyring::single(keys.key_file().to_path_buf(), id, key);
        Ok(keys.keyring.get_or_init(|| ring))
    }

    /// For a blocking reader of an object streamed from storage (`source`, its stored bytes):
    /// a reader of the encoded object inside, opened when sealed, with the same refusals as
    /// [`Self::open_stored`]. Runs on a blocking thread; `runtime` finds the data key.
    pub fn open_blocking<R: Read + Send + 'static>(
        &self,
        key: &ObjectKey,
        mut source: R,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Box<dyn Read + Send>, super::RepoError> {
        let mut first = [0u8; 16];
        let mut got = 0;
        while got < first.len() {
            match source.read(&mut first[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.corrupt(key, crate::codec::CodecError::from(e))),
            }
        }
        let prefix = std::io::Cursor::new(first[..got].to_vec());
        let sealed = crate::codec::is_envelope(&first[..got]);
        let keys = match (&self.keys, sealed) {
            (None, false) => return Ok(Box::new(prefix.chain(source))),
            (None, true) => return Err(self.corrupt(key, crate::codec::CodecError::Encrypted)),
            (Some(_), false) => {
                return Err(EncryptionError::PlainObject {
                    object: key.to_string(),
                }
                .into());
            }
            (Some(keys), true) => keys.clone(),
        };
        let mut whole = prefix.chain(source);
        let header = EnvelopeHeader::read(&mut whole).map_err(|e| self.corrupt(key, e))?;
        let dek = runtime.block_on(self.reader_dek(&keys, header.dek_id(), key))?;
        Ok(Box::new(OpeningReader::new(
            whole,
            &header,
            &dek,
            key.as_ref(),
        )))
    }

    /// The data key `dek` for reading `object`: from the cache, else unwrapped from
    /// `keys/<dek>/<kek>.json` with the first KEK of the keyring that has one.
    pub async fn reader_dek(
        &self,
        keys: &RepoKeys,
        dek: &DekId,
        object: &ObjectKey,
    ) -> Result<SecretKey, super::RepoError> {
        if let Some(found) = keys.cached(dek) {
            return Ok(found);
        }
        let ring = self.keyring(keys).await?;
        let mut order: Vec<_> = ring.keys().iter().collect();
        order.sort_by_key(|k| k.id != ring.active().id);
        for kek in &order {
            let wrapped = wrapped_key(dek, &kek.id);
            match self.get_plain(&wrapped, WRAPPED_MAX).await {
                Ok(bytes) => {
                    let key = unwrap_stored(&bytes, dek, &kek.id, &kek.key)?;
                    keys.remember(*dek, key.clone());
                    return Ok(key);
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EncryptionError::NoKey {
            object: object.to_string(),
            dek: *dek,
            key_file: keys.key_file().to_path_buf(),
            tried: order
                .iter()
                .map(|k| k.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into())
    }

    /// The data key new objects are written with: the newest one under `keys/` wrapped by the
    /// active KEK, or a new one (wrapped and stored create-only first) when there is none.
    async fn writer_dek(&self, keys: &RepoKeys) -> Result<(DekId, SecretKey), super::RepoError> {
        let found = keys
            .writer()
            .get_or_try_init(|| async {
                let ring = self.keyring(keys).await?;
                let active = ring.active();
                let newest = self
                    .storage
                    .list(KEYS_PREFIX)
                    .await?
                    .iter()
                    .filter_map(|meta| parse_wrapped_key(meta.key.as_ref()))
                    .filter(|(_, kek)| kek == &active.id)
                    .map(|(dek, _)| dek)
                    .max();
                if let Some(dek) = newest {
                    let bytes = self
                        .get_plain(&wrapped_key(&dek, &active.id), WRAPPED_MAX)
                        .await?;
                    let key = unwrap_stored(&bytes, &dek, &active.id, &active.key)?;
                    return Ok::<_, super::RepoError>((dek, key));
                }
                let dek_id = DekId::generate();
                let dek = SecretKey::generate();
                let wrapped = WrappedDek::wrap(&dek_id, &dek, &active.id, &active.key);
                self.put_plain(
                    &wrapped_key(&dek_id, &active.id),
                    bytes::Bytes::from(wrapped.to_json()),
                    true,
                )
                .await?;
                tracing::info!(dek = %dek_id, kek = %active.id, "created a data key");
                Ok((dek_id, dek))
            })
            .await?;
        keys.remember(found.0, found.1.clone());
        Ok(found.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, CodecError};
    use crate::repo::{RepoError, RepoIdentity, Repository};
    use crate::storage::{AnyStorage, LocalStorage};
    use bytes::Bytes;

    fn repo(dir: &Path, key_file: Option<PathBuf>) -> Repository {
        let storage = AnyStorage::from(LocalStorage::new(dir.join("repo")).unwrap());
        Repository::new(storage, Codec::Lz4).with_key_file(key_file)
    }

    #[tokio::test]
    async fn never_mixed_and_never_readable_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys");
        Keyring::init(&key_file).unwrap();
        let identity = RepoIdentity::new(42, 15, 16 << 20);
        let keyed = repo(dir.path(), Some(key_file.clone()));
        let created = keyed.ensure_identity(&identity).await.unwrap();
        assert!(created.encryption.is_some());
        let key = ObjectKey::new("wal/00000002.history").unwrap();
        let content = Bytes::from_static(b"1\t0/3000000\tno recovery target specified\n");
        keyed
            .put_content(&key, content.clone(), true)
            .await
            .unwrap();
        assert_eq!(keyed.get_content(&key, 1 << 20).await.unwrap(), content);
        let stored = std::fs::read(dir.path().join("repo").join(key.as_ref())).unwrap();
        assert!(crate::codec::is_envelope(&stored));

        // Without the key: every command refuses the repository, and an object read anyway
        // is "encrypted", never content and never "absent".
        let keyless = repo(dir.path(), None);
        let err = keyless.require_identity().await.unwrap_err();
        assert!(err.to_string().contains("is encrypted"), "{err}");
        assert!(!err.is_not_found());
        let err = keyless.get_content(&key, 1 << 20).await.unwrap_err();
        assert!(
            matches!(
                &err,
                RepoError::Corrupt {
                    source: CodecError::Encrypted,
                    ..
                }
            ),
            "{err}"
        );
        let err = keyless.ensure_identity(&identity).await.unwrap_err();
        assert!(err.to_string().contains("is encrypted"), "{err}");

        // A plain object planted in the encrypted repository is refused.
        let planted = ObjectKey::new("wal/00000003.history").unwrap();
        let plain = crate::codec::encode_to_vec(b"planted", Codec::None).unwrap();
        std::fs::write(dir.path().join("repo").join(planted.as_ref()), plain).unwrap();
        let err = keyed.get_content(&planted, 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("is not encrypted"), "{err}");
    }

    #[tokio::test]
    async fn a_keyed_walship_refuses_a_plain_repository() {
        let dir = tempfile::tempdir().unwrap();
        let identity = RepoIdentity::new(42, 15, 16 << 20);
        repo(dir.path(), None)
            .ensure_identity(&identity)
            .await
            .unwrap();
        let key_file = dir.path().join("keys");
        Keyring::init(&key_file).unwrap();
        let keyed = repo(dir.path(), Some(key_file));
        let err = keyed.ensure_identity(&identity).await.unwrap_err();
        assert!(err.to_string().contains("without encryption"), "{err}");
        let key = ObjectKey::new("wal/00000002.history").unwrap();
        let err = keyed
            .put_content(&key, Bytes::from_static(b"x"), true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("without encryption"), "{err}");
        assert!(!dir.path().join("repo").join(key.as_ref()).exists());
    }

    #[test]
    fn wrapped_keys_round_trip() {
        let dek = DekId::generate();
        let kek = KekId::generate();
        let key = wrapped_key(&dek, &kek);
        assert_eq!(parse_wrapped_key(key.as_ref()), Some((dek, kek)));
        assert_eq!(parse_wrapped_key("keys/x/y.json"), None);
        assert_eq!(parse_wrapped_key("wal/00000002.history"), None);
    }
}
