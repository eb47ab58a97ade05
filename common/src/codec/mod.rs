//! The object codec: the self-describing format of every WAL segment and backup bundle in a
//! repository, written and read as streams with bounded memory.
//!
//! An object is a 32-byte header (magic, format version, codec, flags, and optionally the
//! content's length and crc32c), the codec's output cut into length-prefixed chunks and closed
//! by an empty chunk, and a 20-byte trailer with the content's length and crc32c and the crc32c
//! of the stored bytes before it. The byte
//! layout and the versioning rule are in `docs/FORMAT.md` ("Object format").
//!
//! - [`ObjectWriter`]: a `std::io::Write` adapter; [`ObjectWriter::finish`] returns an
//!   [`ObjectSummary`].
//! - [`ObjectReader`]: a `std::io::Read` adapter that reports `Ok(0)` only after the trailer,
//!   length, crc32c and end of input check out; any fault is a typed [`CodecError`].
//! - [`encode_to_vec`], [`decode_to_vec`]: the same for small objects held in memory.
//!
//! Every decode is bounded: [`decode_to_vec`] and [`decode_into`] take the most content the
//! object may hold, [`ObjectReader::with_limit`] sets it on a stream, and past it decoding
//! stops with [`CodecError::TooLarge`] (a decompression bomb costs that much, no more).
//! - [`Codec`]: `none`, `lz4`, `zstd`, `zstd:N`, as written in configuration.
//!
//! Encryption lives in `crate::crypto`: an encrypted object is an envelope (header flag
//! `ENCRYPTED`, [`is_envelope`]) around a plain object. The readers here refuse an envelope
//! ([`CodecError::Encrypted`]) rather than return ciphertext as content.
//!
//! # Async callers
//!
//! The adapters are synchronous because compression and checksums are CPU-bound. From async
//! code, run them on the blocking pool and bridge the async stream with
//! `tokio_util::io::SyncIoBridge`, created inside the runtime and moved into the closure:
//!
//! ```
//! use std::io::Read;
//! use tokio_util::io::SyncIoBridge;
//! use walship_common::codec::{encode_to_vec, Codec, ObjectReader};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stored = encode_to_vec(b"WAL bytes", Codec::Lz4).unwrap();
//! // Any `AsyncRead` works here: an S3 body, a file, a socket.
//! let body: &'static [u8] = Box::leak(stored.into_boxed_slice());
//! let bridge = SyncIoBridge::new(body);
//! let content = tokio::task::spawn_blocking(move || {
//!     let mut reader = ObjectReader::new(bridge)?;
//!     let mut content = Vec::new();
//!     reader.read_to_end(&mut content)?;
//!     Ok::<_, walship_common::codec::CodecError>(content)
//! })
//! .await
//! .unwrap()
//! .unwrap();
//! assert_eq!(content, b"WAL bytes");
//! # });
//! ```

mod algorithm;
mod chunk;
mod error;
mod layout;
mod lz4_block;
mod lz4_direct;
mod reader;
mod writer;

use std::io::Write;

pub use algorithm::{Codec, CodecParseError, DEFAULT_ZSTD_LEVEL};
pub use error::{CodecError, Recorded};
pub use layout::{
    FORMAT_VERSION, HEADER_LEN, MAGIC, ObjectHeader, RawSummary, TRAILER_LEN,
    check_envelope_header, envelope_header, is_envelope,
};
pub(crate) use lz4_block::frame_header as lz4_frame_header;
pub use lz4_block::{BLOCK_LEN as LZ4_BLOCK_LEN, Lz4Block, parallel_compressors};
pub use reader::ObjectReader;
pub use writer::{ObjectSummary, ObjectWriter};

/// Encodes `content` as a complete object (with the content's length and crc32c in the header
/// as well as the trailer, since both are known up front).
pub fn encode_to_vec(content: &[u8], codec: Codec) -> Result<Vec<u8>, CodecError> {
    let crc = crate::crc::crc32c(content);
    let mut out = Vec::with_capacity(HEADER_LEN + TRAILER_LEN + content.len() / 2);
    let mut writer =
        ObjectWriter::with_declared_summary(&mut out, codec, content.len() as u64, crc)?;
    writer.write_all(content)?;
    writer.finish()?;
    Ok(out)
}

/// The crc32c of a piece of content from the running crc32c of the content before it
/// (`before`) and up to its end (`after`), and its length: what
/// [`ObjectReader::content_crc32c`] says around reading it, so that the piece is not hashed
/// twice. CRC-32C is linear: crc(A B) = shift(crc(A), |B|) xor crc(B), where the shift is
/// `crc32c_combine(crc(A), 0, |B|)`; so crc(B) = crc(A B) xor that shift.
pub fn crc_of_piece(before: u32, after: u32, len: u64) -> u32 {
    // A piece longer than the address space cannot have been read.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    after ^ crc32c::crc32c_combine(before, 0, len)
}

/// Decodes and verifies a complete object held in memory, whose content may be at most
/// `limit` bytes (the most an object of its kind may hold; [`CodecError::TooLarge`] past it).
pub fn decode_to_vec(stored: &[u8], limit: u64) -> Result<Vec<u8>, CodecError> {
    let mut content = Vec::new();
    decode_into(stored, &mut content, limit)?;
    Ok(content)
}

/// Decodes and verifies a complete object held in memory into `content` (cleared first),
/// returning the verified summary. A long-lived caller reuses one buffer this way, so that
/// its pages are faulted in once, not for every object. The content may be at most `limit`
/// bytes, as in [`decode_to_vec`]. On error `content` holds garbage.
pub fn decode_into(
    stored: &[u8],
    content: &mut Vec<u8>,
    limit: u64,
) -> Result<ObjectSummary, CodecError> {
    // lz4 objects of independent blocks decode in place; the streaming reader gives every
    // other object, and every fault, its verdict.
    if let Some(summary) = lz4_direct::decode(stored, content, limit) {
        return Ok(summary);
    }
    content.clear();
    let mut reader = ObjectReader::new(stored)?.with_limit(limit)?;
    // Trust the header's length only as a hint, and only up to a modest size.
    let hint = reader
        .header()
        .summary
        .map_or(0, |s| s.len.min(64 << 20) as usize);
    content.reserve(hint);
    copy_bounded(&mut reader, content, limit)
}

/// Decodes a complete object held in memory block by block into `sink`, without a
/// whole-content buffer, when it is an lz4 object of independent blocks (every WAL object
/// walship writes): each block passes through `scratch` (reused) while still in the CPU's
/// cache. `Ok(Some(summary))`: `sink` received exactly the content, which verified.
/// `Ok(None)`: not an object this path decodes, or one that does not verify; what `sink`
/// received must be thrown away, and [`decode_into`] gives the verdict. `Err`: `sink`'s error.
pub fn decode_blocks_to<E>(
    stored: &[u8],
    limit: u64,
    scratch: &mut Vec<u8>,
    sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Option<ObjectSummary>, E> {
    lz4_direct::decode_to(stored, limit, scratch, sink)
}

/// Reads the rest of `reader` into `content`, growing it by doubling but never past `limit`
/// bytes of capacity (the reader refuses content past the limit), so that a bomb refused at
/// the limit has cost the limit, not twice that.
fn copy_bounded(
    reader: &mut ObjectReader<&[u8]>,
    content: &mut Vec<u8>,
    limit: u64,
) -> Result<ObjectSummary, CodecError> {
    use std::io::Read;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CodecError::from(e)),
        };
        let needed = content.len() + n;
        if needed > content.capacity() {
            let grown = content
                .capacity()
                .saturating_mul(2)
                .max(needed)
                .min(limit.max(needed));
            content.reserve_exact(grown - content.len());
        }
        content.extend_from_slice(&buf[..n]);
    }
    reader
        .verified_summary()
        .ok_or_else(|| CodecError::AlreadyFailed {
            first: "not verified".to_string(),
        })
}
