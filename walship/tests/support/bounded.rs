//! Hostile objects for the bounded-reader tests (issue 18, item 12): a zstd decompression
//! bomb in walship's object format, and a way to run walship with its memory measured and
//! capped.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{TestRepo, walship_bin};

/// A walship object (`docs/FORMAT.md`) whose payload is one zstd frame of `gib` GiB of zeros
/// with no content size in its header (written as a stream), and no summary in the object
/// header: a few hundred KiB that decode to gigabytes. The trailer records the true length.
pub fn zstd_bomb(gib: u64) -> Vec<u8> {
    zstd_bomb_after(&[], gib)
}

/// Like [`zstd_bomb`], with `prefix` as the first bytes of the content: an object whose
/// honest beginning is followed by `gib` GiB of zeros, and whose trailer (length, crc32c)
/// matches the whole, so only a reader that knows how much content to expect refuses it.
pub fn zstd_bomb_after(prefix: &[u8], gib: u64) -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(prefix).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..gib * 1024 {
        encoder.write_all(&zeros).unwrap();
    }
    let frame = encoder.finish().unwrap();
    let mut object = Vec::new();
    object.extend_from_slice(b"\x89WSOBJ\r\n");
    object.extend_from_slice(&1u16.to_le_bytes()); // format version
    object.push(2); // zstd
    object.push(1); // level
    object.extend_from_slice(&0u32.to_le_bytes()); // flags: no summary in the header
    object.extend_from_slice(&[0u8; 12]); // raw length and crc32c: none
    let header_crc = crc32c::crc32c(&object);
    object.extend_from_slice(&header_crc.to_le_bytes());
    for chunk in frame.chunks(256 << 10) {
        object.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        object.extend_from_slice(chunk);
    }
    object.extend_from_slice(&0u32.to_le_bytes());
    let stored_crc = crc32c::crc32c(&object);
    let raw_len = prefix.len() as u64 + (gib << 30);
    let content_crc = if gib == 0 {
        crc32c::crc32c(prefix)
    } else {
        crc32c::crc32c_combine(
            crc32c::crc32c(prefix),
            zeros_crc32c(gib << 30),
            (gib << 30) as usize,
        )
    };
    object.extend_from_slice(&raw_len.to_le_bytes());
    object.extend_from_slice(&content_crc.to_le_bytes());
    object.extend_from_slice(&stored_crc.to_le_bytes());
    object.extend_from_slice(b"WEND");
    object
}

/// crc32c of `len` zero bytes (a power of two of at least 1 MiB), by combining halves.
fn zeros_crc32c(len: u64) -> u32 {
    let mut n = 1u64 << 20;
    let mut crc = crc32c::crc32c(&vec![0u8; n as usize]);
    while n < len {
        crc = crc32c::crc32c_combine(crc, crc, n as usize);
        n *= 2;
    }
    crc
}

/// Runs walship with `repo`'s config, measured (peak RSS from `wait4`), its address space
/// capped at `max_vm_mib` so that an unbounded reader fails instead of taking the machine.
/// Returns the measurement and stderr.
pub fn measured(
    repo: &TestRepo,
    max_vm_mib: u64,
    args: &[&str],
) -> (pg_test_harness::bench::Measurement, String) {
    let err = repo.dir.path().join("measured.err");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {}; exec \"$0\" \"$@\"",
            max_vm_mib * 1024
        ))
        .arg(walship_bin())
        .arg("--config")
        .arg(&repo.config)
        .args(args)
        .envs(repo.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let run = pg_test_harness::bench::measure(&mut cmd).unwrap();
    (run, std::fs::read_to_string(&err).unwrap())
}
