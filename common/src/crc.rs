//! CRC-32C (Castagnoli, iSCSI), the one checksum of walship's formats: every object's stored
//! and content CRCs, bundle files, WAL records, the `fetch` spool. Every CRC-32C in walship is
//! computed here.
//!
//! The `crc32c` crate runs three SSE4.2 `crc32` streams at once: about 0.6 ms for a 16 MiB
//! segment on this project's benchmark machine, 10 GB/s over 64 KiB blocks. `crc-fast`
//! (already linked for the AWS SDK's checksums) folds with carry-less multiplication
//! (PCLMULQDQ, and VPCLMULQDQ with AVX-512 where the CPU has it): 0.27 ms for the same 16 MiB,
//! about 25 GB/s over 64 KiB blocks (BENCHMARKS.md, "Design measurements"). Both compute the
//! same CRC-32C; the tests below hold them to it (the `crc32c` crate stays as the tests'
//! oracle and for `crc32c_combine`), so values stored by either are checked by either.

use crc_fast::{CrcAlgorithm, Digest};

/// The CRC-32C of `bytes`, as `crc32c::crc32c` computes it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    // The algorithm's width is 32 bits: the value always fits.
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// The CRC-32C of the bytes whose CRC-32C is `crc` followed by `bytes`, as
/// `crc32c::crc32c_append` computes it: for running CRCs kept as a plain `u32` (the codec's
/// stored and content CRCs, updated block by block).
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    // A CRC-32C value is the register inverted (xorout 0xffffffff); the register goes on.
    let mut digest = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    digest.finalize() as u32
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
    fn append_equals_the_crc32c_crate_on_every_split() {
        let data = bytes((1 << 18) + 33, 9);
        for split in [0, 1, 3, 4, 63, 64, 65, 4096, 70_000, data.len()] {
            let (a, b) = data.split_at(split);
            let ours = crc32c_append(crc32c(a), b);
            assert_eq!(ours, crc32c::crc32c(&data), "split at {split}");
            assert_eq!(ours, crc32c::crc32c_append(crc32c::crc32c(a), b));
        }
        let mut running = 0;
        for piece in data.chunks(1000) {
            running = crc32c_append(running, piece);
        }
        assert_eq!(running, crc32c::crc32c(&data));
        assert_eq!(crc32c_append(0x1234_5678, b""), 0x1234_5678);
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
