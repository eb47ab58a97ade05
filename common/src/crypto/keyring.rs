//! The operator's keyring: a JSON file of key-encryption keys (KEKs) with ids, one active, mode
//! 0600 (`docs/FORMAT.md`, "Keys: envelope encryption"). Created by `walship key init`, extended
//! by `walship key rotate`; never stored in the repository. Errors name the file and key ids,
//! never key bytes.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::dek::parse_hex;
use super::secret::{SecretKey, random_bytes};

/// A KEK's id: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KekId(String);

impl KekId {
    /// A new random id.
    pub fn generate() -> KekId {
        let bytes = random_bytes::<8>();
        KekId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Parses 16 lowercase hex digits.
    pub fn parse(text: &str) -> Option<KekId> {
        (text.len() == 16 && parse_hex(text).is_some()).then(|| KekId(text.to_string()))
    }
}

impl std::fmt::Display for KekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a keyring cannot be read or written. Never holds key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file cannot be read, created or replaced.
    #[error("key file {path}: {source}")]
    Io {
        /// The keyring file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may access the file: a key readable by other accounts is not secret.
    #[error(
        "key file {path} has mode {mode:04o}: refusing a key file that group or others may access (chmod 600 it)"
    )]
    TooOpen {
        /// The keyring file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `key init` on a file that exists: never overwrite a key.
    #[error("key file {path} exists: walship key init never overwrites a key")]
    Exists {
        /// The keyring file.
        path: PathBuf,
    },
    /// Not a keyring of this format (the detail names the field, never its value).
    #[error("key file {path} is not a walship keyring: {detail}")]
    Malformed {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format_version: u32,
    active: String,
    keys: Vec<KeyEntryFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntryFile {
    id: String,
    created: String,
    key: String,
}

impl Drop for KeyEntryFile {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// One KEK of a keyring.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its id.
    pub id: KekId,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The key.
    pub key: SecretKey,
}

/// The KEKs of a key file, one active (new data keys are wrapped by it).
#[derive(Debug, Clone)]
pub struct Keyring {
    path: PathBuf,
    active: KekId,
    keys: Vec<KeyEntry>,
}

impl Keyring {
    /// Reads `path`, refusing a file that group or others may access.
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let malformed = |detail: String| KeyringError::Malformed {
            path: path.to_path_buf(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = std::fs::read(path).map_err(io)?;
        // serde's messages quote offending values; report only the position.
        let parsed: Result<KeyringFile, _> = serde_json::from_slice(&text);
        text.zeroize();
        let file = parsed.map_err(|e| malformed(format!("invalid JSON at line {}", e.line())))?;
        if file.format_version != 1 {
            return Err(malformed(format!("format_version {}", file.format_version)));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in &file.keys {
            let id = KekId::parse(&entry.id)
                .ok_or_else(|| malformed("a key id is not 16 lowercase hex digits".into()))?;
            let mut bytes = BASE64
                .decode(&entry.key)
                .map_err(|_| malformed(format!("key {id} is not base64")))?;
            let key: Result<[u8; 32], _> = bytes.as_slice().try_into();
            bytes.zeroize();
            let key = key.map_err(|_| malformed(format!("key {id} is not 32 bytes")))?;
            if keys.iter().any(|k: &KeyEntry| k.id == id) {
                return Err(malformed(format!("key {id} is listed twice")));
            }
            keys.push(KeyEntry {
                id,
                created: entry.created.clone(),
                key: SecretKey::from_bytes(key),
            });
        }
        let active = keys
            .iter()
            .find(|k| k.id.0 == file.active)
            .map(|k| k.id.clone())
            .ok_or_else(|| malformed("the active id names no key of the file".into()))?;
        Ok(Keyring {
            path: path.to_path_buf(),
            active,
            keys,
        })
    }

    /// Creates a new keyring at `path` (mode 0600, never over an existing file) with one random
    /// key, active.
    pub fn init(path: &Path) -> Result<Keyring, KeyringError> {
        let entry = new_entry();
        let ring = Keyring {
            path: path.to_path_buf(),
            active: entry.id.clone(),
            keys: vec![entry],
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyringError::Exists {
                    path: path.to_path_buf(),
                },
                _ => KeyringError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        ring.write_to(&mut file)?;
        Ok(ring)
    }

    /// Adds a new random key, makes it active and replaces the file atomically (a 0600 temporary
    /// file beside it, fsynced, renamed). The old keys stay, so data keys they wrap stay
    /// readable until `walship key rewrap`.
    pub fn rotate(&mut self) -> Result<KekId, KeyringError> {
        let entry = new_entry();
        let id = entry.id.clone();
        self.keys.push(entry);
        self.active = id.clone();
        let tmp = self.path.with_extension("walship-tmp");
        let _ = std::fs::remove_file(&tmp);
        let io = |source| KeyringError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // Keep the file's owner (root rotating the database user's key file must leave it
        // readable by that user).
        let owner = std::fs::metadata(&self.path).map_err(io)?;
        std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid())).map_err(io)?;
        self.write_to(&mut file)?;
        std::fs::rename(&tmp, &self.path).map_err(|source| KeyringError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(id)
    }

    fn write_to(&self, file: &mut std::fs::File) -> Result<(), KeyringError> {
        let doc = KeyringFile {
            format_version: 1,
            active: self.active.0.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntryFile {
                    id: k.id.0.clone(),
                    created: k.created.clone(),
                    key: BASE64.encode(k.key.expose()),
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&doc).expect("a keyring serialises");
        text.push(b'\n');
        let result = file.write_all(&text).and_then(|()| file.sync_all());
        text.zeroize();
        result.map_err(|source| KeyringError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// A ring of one key that is not in a file (derived from a passphrase); `label` stands in
    /// for the file in messages. It cannot be rotated.
    pub fn single(label: PathBuf, id: KekId, key: SecretKey) -> Keyring {
        Keyring {
            path: label,
            active: id.clone(),
            keys: vec![KeyEntry {
                id,
                created: String::new(),
                key,
            }],
        }
    }

    /// The file this keyring was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The active KEK: new data keys are wrapped by it.
    pub fn active(&self) -> &KeyEntry {
        self.get(&self.active)
            .expect("the active key is in the ring")
    }

    /// The KEK with this id, if the ring holds it.
    pub fn get(&self, id: &KekId) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// Every KEK, oldest first.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }
}

fn new_entry() -> KeyEntry {
    KeyEntry {
        id: KekId::generate(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        key: SecretKey::generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_load_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let ring = Keyring::init(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.active().id, ring.active().id);
        assert_eq!(loaded.active().key, ring.active().key);
        assert!(matches!(
            Keyring::init(&path),
            Err(KeyringError::Exists { .. })
        ));

        let mut loaded = loaded;
        let new = loaded.rotate().unwrap();
        let again = Keyring::load(&path).unwrap();
        assert_eq!(again.active().id, new);
        assert_eq!(again.keys().len(), 2);
        assert!(again.get(&ring.active().id).is_some());
    }

    #[test]
    fn refuses_open_modes_and_hides_key_bytes_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        Keyring::init(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyringError::TooOpen { mode: 0o640, .. }),
            "{err}"
        );

        // A malformed file: the error must not quote the key text.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        std::fs::write(
            &path,
            format!(r#"{{"format_version":1,"active":"0123456789abcdef","keys":[{{"id":"0123456789abcdef","created":"x","key":"{secret}"}}]}}"#),
        )
        .unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("not 32 bytes"), "{err}");
        std::fs::write(&path, format!(r#"{{"active": {secret}"#)).unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
    }
}
