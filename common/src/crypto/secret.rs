//! [`SecretKey`]: the one holder of key bytes. No `Display`, a `Debug` that prints nothing of
//! the key, and zeroised on drop, so that key material cannot reach a log or an error by
//! accident (safety rule 9).

use zeroize::Zeroize;

/// 32 bytes of key material (a KEK, a DEK or a derived per-object key).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Wraps key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> SecretKey {
        SecretKey(random_bytes())
    }

    /// The key bytes, for the AEAD and KDF calls only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// `N` random bytes from the kernel's CSPRNG (`getrandom(2)`, through rand's `OsRng`). Not
/// aws-lc's generator: its first use in a process seeds a CPU-jitter entropy source that
/// costs some 20-50 ms of CPU, paid by every `walship archive` call (one salt per object);
/// measured in BENCHMARKS.md. Failure to get randomness is not recoverable and must never
/// fall back to anything weaker, hence the panic.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::TryRngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut out)
        .expect("the system random number generator failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = SecretKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(SecretKey::generate(), SecretKey::generate());
    }
}
