//! Data-encryption keys: [`DekId`] (time-ordered ids) and [`WrappedDek`], a DEK sealed under a
//! KEK as stored in `keys/<dek-id>/<kek-id>.json` (`docs/FORMAT.md`, "Keys: envelope
//! encryption"). A wrapped key is written create-only and never changed; a rewrap adds another.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::keyring::KekId;
use super::secret::{SecretKey, random_bytes};

/// A data key's id: 8 bytes of creation time (ms since 1970, big-endian) and 8 random bytes,
/// written as 32 lowercase hex digits, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DekId([u8; 16]);

impl DekId {
    /// A new id for a data key created now.
    pub fn generate() -> DekId {
        let ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&ms.to_be_bytes());
        id[8..].copy_from_slice(&random_bytes::<8>());
        DekId(id)
    }

    /// The id from its 16 bytes (as an object header holds it).
    pub fn from_bytes(bytes: [u8; 16]) -> DekId {
        DekId(bytes)
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 lowercase hex digits; `None` for anything else.
    pub fn parse(text: &str) -> Option<DekId> {
        let bytes = parse_hex(text)?;
        Some(DekId(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for DekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Lowercase hex digits to bytes; `None` for odd lengths, upper case or other characters.
pub(crate) fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Why a wrapped data key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// Not the JSON of a wrapped key, or fields of the wrong shape.
    #[error("malformed wrapped data key: {0}")]
    Malformed(String),
    /// The object names another DEK or KEK than its key says.
    #[error(
        "wrapped data key names DEK {found_dek} under KEK {found_kek}, but is stored as DEK {dek} under KEK {kek}"
    )]
    Misplaced {
        /// The DEK id of the object's key.
        dek: DekId,
        /// The KEK id of the object's key.
        kek: KekId,
        /// The DEK id inside.
        found_dek: String,
        /// The KEK id inside.
        found_kek: String,
    },
    /// Authentication failed: this is not the KEK that wrapped it, or the object was altered.
    #[error(
        "cannot unwrap data key {dek} with key-encryption key {kek}: wrong key or altered key object"
    )]
    Unwrap {
        /// The data key.
        dek: DekId,
        /// The KEK tried.
        kek: KekId,
    },
}

/// A data key wrapped under a KEK: the JSON of `keys/<dek-id>/<kek-id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedDek {
    /// Always 1.
    pub format_version: u32,
    /// The data key's id.
    pub dek_id: String,
    /// The id of the KEK that wraps it.
    pub kek_id: String,
    /// Always `aes-256-gcm`.
    pub algorithm: String,
    /// The 12-byte nonce, base64.
    pub nonce: String,
    /// The 32-byte key sealed with its 16-byte tag, base64.
    pub wrapped: String,
    /// When this wrapping was made (RFC 3339).
    pub created: String,
}

const WRAP_ALGORITHM: &str = "aes-256-gcm";

/// The AAD that binds a wrapped key to its ids.
fn wrap_aad(dek: &DekId, kek: &KekId) -> Vec<u8> {
    format!("walship-dek-v1\0{dek}\0{kek}").into_bytes()
}

fn cipher(kek: &SecretKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek.expose()).expect("a 32-byte AES-256 key"))
}

impl WrappedDek {
    /// Wraps `dek` (id `dek_id`) under the KEK `kek` (id `kek_id`), with a fresh nonce.
    pub fn wrap(dek_id: &DekId, dek: &SecretKey, kek_id: &KekId, kek: &SecretKey) -> WrappedDek {
        let nonce = random_bytes::<12>();
        let mut sealed = dek.expose().to_vec();
        cipher(kek)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(dek_id, kek_id)),
                &mut sealed,
            )
            .expect("AES-256-GCM sealing of 32 bytes cannot fail");
        WrappedDek {
            format_version: 1,
            dek_id: dek_id.to_string(),
            kek_id: kek_id.to_string(),
            algorithm: WRAP_ALGORITHM.to_string(),
            nonce: BASE64.encode(nonce),
            wrapped: BASE64.encode(&sealed),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// Unwraps the data key, checking that this object is the one stored as
    /// `keys/<dek_id>/<kek_id>.json` and that `kek` wrapped it.
    pub fn unwrap(
        &self,
        dek_id: &DekId,
        kek_id: &KekId,
        kek: &SecretKey,
    ) -> Result<SecretKey, WrapError> {
        if self.format_version != 1 || self.algorithm != WRAP_ALGORITHM {
            return Err(WrapError::Malformed(format!(
                "format_version {} algorithm {:?}",
                self.format_version, self.algorithm
            )));
        }
        if self.dek_id != dek_id.to_string() || self.kek_id != kek_id.to_string() {
            return Err(WrapError::Misplaced {
                dek: *dek_id,
                kek: kek_id.clone(),
                found_dek: self.dek_id.clone(),
                found_kek: self.kek_id.clone(),
            });
        }
        let nonce: [u8; 12] = BASE64
            .decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| WrapError::Malformed("nonce is not 12 base64 bytes".into()))?;
        let mut sealed = BASE64
            .decode(&self.wrapped)
            .map_err(|_| WrapError::Malformed("wrapped is not base64".into()))?;
        let plain = cipher(kek)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(dek_id, kek_id)),
                &mut sealed,
            )
            .map_err(|_| WrapError::Unwrap {
                dek: *dek_id,
                kek: kek_id.clone(),
            })?;
        let key: [u8; 32] = plain.try_into().map_err(|_| WrapError::Unwrap {
            dek: *dek_id,
            kek: kek_id.clone(),
        })?;
        zeroize::Zeroize::zeroize(&mut sealed);
        Ok(SecretKey::from_bytes(key))
    }

    /// Parses the stored JSON.
    pub fn from_json(bytes: &[u8]) -> Result<WrappedDek, WrapError> {
        serde_json::from_slice(bytes).map_err(|e| WrapError::Malformed(e.to_string()))
    }

    /// The JSON to store.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a WrappedDek serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek_id(s: &str) -> KekId {
        KekId::parse(s).unwrap()
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = DekId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = DekId::generate();
        assert!(a.to_string() < b.to_string());
        assert_eq!(DekId::parse(&a.to_string()), Some(a));
        assert_eq!(DekId::parse("ABCD"), None);
        assert_eq!(DekId::parse("00"), None);
    }

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_kek_fails() {
        let dek_id = DekId::generate();
        let dek = SecretKey::generate();
        let (k1, k2) = (kek_id("0123456789abcdef"), kek_id("fedcba9876543210"));
        let (kek1, kek2) = (SecretKey::generate(), SecretKey::generate());
        let wrapped = WrappedDek::wrap(&dek_id, &dek, &k1, &kek1);
        let json = wrapped.to_json();
        let back = WrappedDek::from_json(&json).unwrap();
        assert_eq!(back.unwrap(&dek_id, &k1, &kek1).unwrap(), dek);
        let err = back.unwrap(&dek_id, &k1, &kek2).unwrap_err();
        assert!(matches!(err, WrapError::Unwrap { .. }), "{err}");
        // Stored under another KEK id: refused before any crypto.
        let err = back.unwrap(&dek_id, &k2, &kek1).unwrap_err();
        assert!(matches!(err, WrapError::Misplaced { .. }), "{err}");
        // No key material in the JSON in the clear.
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains(&BASE64.encode(dek.expose())));
    }

    #[test]
    fn altered_wrapped_key_fails() {
        let dek_id = DekId::generate();
        let k1 = kek_id("0123456789abcdef");
        let kek = SecretKey::generate();
        let mut wrapped = WrappedDek::wrap(&dek_id, &SecretKey::generate(), &k1, &kek);
        let mut raw = BASE64.decode(&wrapped.wrapped).unwrap();
        raw[3] ^= 1;
        wrapped.wrapped = BASE64.encode(raw);
        assert!(matches!(
            wrapped.unwrap(&dek_id, &k1, &kek),
            Err(WrapError::Unwrap { .. })
        ));
    }
}
