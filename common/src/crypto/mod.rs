//! Client-side envelope encryption (`docs/FORMAT.md`, "Encrypted objects").
//!
//! - [`SecretKey`]: 32 key bytes that cannot be printed and are zeroised on drop; the only type
//!   that holds key material.
//! - [`keyring`]: the operator's file of key-encryption keys (KEKs), one active.
//! - [`dek`]: data-encryption keys (DEKs), their ids, and their wrapped form under a KEK
//!   (`keys/<dek-id>/<kek-id>.json` in the repository).
//! - [`envelope`]: [`SealingWriter`] and [`OpeningReader`], AES-256-GCM over chunks of a plain
//!   object's stored bytes.
//!
//! The codec knows nothing of keys: an encrypted object is a plain object sealed whole, so
//! compression happens before encryption and every check of a plain object still runs on the
//! decrypted bytes. Errors name key *ids* and object keys, never key material.

pub mod dek;
pub mod envelope;
pub mod keyring;
pub mod passphrase;
mod secret;

pub use dek::{DekId, WrappedDek};
pub use envelope::{
    ENVELOPE_HEADER_LEN, EnvelopeHeader, OpeningReader, SealingWriter, open_to_vec, seal_to_vec,
};
pub use keyring::{KekId, Keyring, KeyringError};
pub use secret::{SecretKey, random_bytes};
