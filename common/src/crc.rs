//! CRC-32C of large buffers on the hot paths of replay (the `fetch` spool check, the
//! prefetch worker's decode).
//!
//! The `crc32c` crate, used everywhere else, runs three SSE4.2 `crc32` streams at once: about
//! 0.6 ms for a 16 MiB segment on this project's benchmark machine. `crc-fast` (already
//! linked for the AWS SDK's checksums) folds with carry-less multiplication (PCLMULQDQ, and
//! VPCLMULQDQ with AVX-512 where the CPU has it) and takes 0.27 ms for the same 16 MiB
//! (BENCHMARKS.md, "Design measurements"). Both compute the same CRC-32C (Castagnoli,
//! iSCSI); the tests below hold them to it, so values stored by either are checked by either.

use crc_fast::{CrcAlgorithm, Digest};

/// The CRC-32C of `bytes`, as `crc32c::crc32c` computes it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    // The algorithm's width is 32 bits: the value always fits.
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// A CRC-32C computed piece by piece (as `crc32c::crc32c_append` from 0).
pub struct Crc32c(Digest);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(Digest::new(CrcAlgorithm::Crc32Iscsi))
    }
}

impl Crc32c {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC-32C of everything added so far.
    pub fn value(&self) -> u32 {
        self.0.finalize() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (no RNG dependency needed): an xorshift stream.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn equals_the_crc32c_crate_on_every_length_and_alignment() {
        let data = bytes((1 << 20) + 77, 42);
        for len in (0..300).chain([4095, 4096, 4097, 65_536, 1 << 20]) {
            for start in [0, 1, 3, 7, 13] {
                let slice = &data[start..start + len];
                assert_eq!(crc32c(slice), crc32c::crc32c(slice), "len {len} at {start}");
            }
        }
        assert_eq!(
            crc32c(b"123456789"),
            0xE306_9283,
            "the standard check value"
        );
    }

    #[test]
    fn pieces_give_the_crc_of_the_whole() {
        let data = bytes(3 << 20, 7);
        let mut crc = Crc32c::default();
        for piece in data.chunks(256 * 1024 + 5) {
            crc.update(piece);
        }
        assert_eq!(crc.value(), crc32c::crc32c(&data));
        assert_eq!(Crc32c::default().value(), 0);
    }
}
