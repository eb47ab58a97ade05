//! `[encryption] passphrase_command`: the KEK derived from a passphrase that a command prints
//! (`docs/FORMAT.md`, "Keys: envelope encryption"). The command's text and its output never
//! appear in errors or logs: a command like `echo ...` may hold the passphrase itself.

use std::num::NonZeroU32;
use std::process::{Command, Stdio};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::pbkdf2::{PBKDF2_HMAC_SHA256, derive};
use zeroize::Zeroize;

use super::keyring::KekId;
use super::secret::SecretKey;

/// PBKDF2 iterations (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const ITERATIONS: u32 = 600_000;
/// The shortest passphrase accepted.
pub const MIN_LEN: usize = 12;

/// Why no key came from the passphrase command. Names neither the command nor its output.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// The command could not be started.
    #[error("[encryption] passphrase_command could not be started: {0}")]
    Spawn(#[source] std::io::Error),
    /// The command failed.
    #[error("[encryption] passphrase_command failed ({status}); no key")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// It printed too little (nothing, or fewer than [`MIN_LEN`] bytes).
    #[error(
        "[encryption] passphrase_command printed a passphrase of {len} bytes; at least {MIN_LEN} are required"
    )]
    TooShort {
        /// What it printed, in bytes.
        len: usize,
    },
}

/// Runs `command` with `sh -c` and returns its stdout without one trailing newline.
pub fn run(command: &str) -> Result<Vec<u8>, PassphraseError> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(PassphraseError::Spawn)?;
    let mut text = out.stdout;
    if !out.status.success() {
        text.zeroize();
        return Err(PassphraseError::Failed { status: out.status });
    }
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    if text.len() < MIN_LEN {
        let len = text.len();
        text.zeroize();
        return Err(PassphraseError::TooShort { len });
    }
    Ok(text)
}

/// The KEK of `passphrase` for the cluster `system_identifier` (the salt), and its id: 16 hex
/// digits of SHA-256 of the KEK, a fingerprint that does not reveal it.
pub fn derive_kek(passphrase: &[u8], system_identifier: u64) -> (KekId, SecretKey) {
    let salt = format!("walship-kek-v1\0{system_identifier}");
    let mut key = [0u8; 32];
    derive(
        PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("nonzero"),
        salt.as_bytes(),
        passphrase,
        &mut key,
    );
    let kek = SecretKey::from_bytes(key);
    key.zeroize();
    let mut tagged = b"walship-kek-id\0".to_vec();
    tagged.extend_from_slice(kek.expose());
    let hash = digest(&SHA256, &tagged);
    tagged.zeroize();
    let hex: String = hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (KekId::parse(&hex).expect("16 hex digits"), kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_becomes_a_stable_key_and_failures_say_nothing_secret() {
        let pass = run("printf 'correct horse battery staple\\n'").unwrap();
        assert_eq!(pass, b"correct horse battery staple");
        let (id1, k1) = derive_kek(&pass, 7);
        let (id2, k2) = derive_kek(&pass, 7);
        assert_eq!((id1.clone(), k1.clone()), (id2, k2));
        let (id3, _) = derive_kek(&pass, 8);
        assert_ne!(id1, id3, "the cluster is the salt");

        let err = run("echo hunter2-is-my-pass; exit 3")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!err.contains("echo"), "{err}");
        let err = run("printf short").unwrap_err().to_string();
        assert!(err.contains("5 bytes"), "{err}");
        assert!(!err.contains("short"), "{err}");
    }
}
