//! The fixed parts of an object: the 32-byte header and the 20-byte trailer, their constants,
//! encoding and validation. The byte tables are in `docs/FORMAT.md` ("Object format").

use super::algorithm::Codec;
use super::error::CodecError;

/// Magic at offset 0 of every object. PNG-style: a high byte and CR LF catch 7-bit and
/// line-ending mangling.
pub const MAGIC: [u8; 8] = *b"\x89WSOBJ\r\n";
/// The one format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 32;
/// Trailer size in bytes.
pub const TRAILER_LEN: usize = 20;
/// End marker at the end of the trailer.
pub const END_MARKER: [u8; 4] = *b"WEND";
/// The largest payload chunk a writer may emit and a reader accepts.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;

/// Header flag: an encrypted envelope follows (readers without a key refuse it).
pub const FLAG_ENCRYPTED: u32 = 1 << 0;
/// Header flag: the header carries the raw length and crc32c of the content.
pub const FLAG_SUMMARY_IN_HEADER: u32 = 1 << 1;
const KNOWN_FLAGS: u32 = FLAG_ENCRYPTED | FLAG_SUMMARY_IN_HEADER;

/// What an object's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Format version (always [`FORMAT_VERSION`] once accepted).
    pub version: u16,
    /// The payload's codec.
    pub codec: Codec,
    /// The content's length and crc32c, when the writer knew them up front.
    pub summary: Option<RawSummary>,
}

/// Length and crc32c of an object's raw (uncompressed) content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSummary {
    /// Raw length in bytes.
    pub len: u64,
    /// crc32c (Castagnoli) of the raw bytes.
    pub crc32c: u32,
}

impl ObjectHeader {
    /// The header's 32 bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let (flags, len, crc) = match self.summary {
            Some(summary) => (FLAG_SUMMARY_IN_HEADER, summary.len, summary.crc32c),
            None => (0, 0, 0),
        };
        encode_header(
            self.version,
            [self.codec.id(), self.codec.parameter()],
            flags,
            len,
            crc,
        )
    }

    /// Validates and parses a header: magic, then version (so that a future format is reported
    /// as such), then the header checksum, then flags and codec.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<ObjectHeader, CodecError> {
        let (version, flags) = check_common(bytes)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(CodecError::UnsupportedFlags {
                flags: flags & !KNOWN_FLAGS,
            });
        }
        if flags & FLAG_ENCRYPTED != 0 {
            return Err(CodecError::Encrypted);
        }
        let codec = Codec::from_header(bytes[10], bytes[11])
            .ok_or(CodecError::UnsupportedCodec { id: bytes[10] })?;
        let summary = (flags & FLAG_SUMMARY_IN_HEADER != 0).then(|| RawSummary {
            len: u64::from_le_bytes(take(bytes, 16)),
            crc32c: u32::from_le_bytes(take(bytes, 24)),
        });
        Ok(ObjectHeader {
            version,
            codec,
            summary,
        })
    }
}

/// The 32 bytes of a header, checksum included: the one place the layout is written, for
/// plain objects and envelopes alike.
fn encode_header(
    version: u16,
    codec: [u8; 2],
    flags: u32,
    raw_len: u64,
    raw_crc: u32,
) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&version.to_le_bytes());
    out[10..12].copy_from_slice(&codec);
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&raw_len.to_le_bytes());
    out[24..28].copy_from_slice(&raw_crc.to_le_bytes());
    let crc = crate::crc::crc32c(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The checks every header passes, plain or envelope, in the order that gives the most useful
/// error: magic, then version (so that a future format is reported as such), then the header
/// checksum. Returns the version and the flags.
fn check_common(bytes: &[u8; HEADER_LEN]) -> Result<(u16, u32), CodecError> {
    let magic: [u8; 8] = take(bytes, 0);
    if magic != MAGIC {
        return Err(CodecError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes(take(bytes, 8));
    if version != FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let stored_crc = u32::from_le_bytes(take(bytes, 28));
    let computed_crc = crate::crc::crc32c(&bytes[..28]);
    if stored_crc != computed_crc {
        return Err(CodecError::HeaderChecksumMismatch {
            expected: computed_crc,
            found: stored_crc,
        });
    }
    Ok((version, u32::from_le_bytes(take(bytes, 12))))
}

/// The 32-byte header of an encrypted envelope: codec 0, flags `ENCRYPTED` only, no summary,
/// so that nothing about the content is readable (`docs/FORMAT.md`, "Envelope layout").
pub fn envelope_header() -> [u8; HEADER_LEN] {
    encode_header(FORMAT_VERSION, [0, 0], FLAG_ENCRYPTED, 0, 0)
}

/// True when `first` (an object's first bytes, at least 16) starts an encrypted envelope: the
/// object magic with the `ENCRYPTED` flag. Says nothing about validity; the opener checks that.
pub fn is_envelope(first: &[u8]) -> bool {
    first.len() >= 16
        && first[0..8] == MAGIC
        && u32::from_le_bytes(take(first, 12)) & FLAG_ENCRYPTED != 0
}

/// Validates an envelope's 32-byte header: the checks of every header, then exactly
/// [`envelope_header`]'s fields, so that the error says what differs.
pub fn check_envelope_header(bytes: &[u8; HEADER_LEN]) -> Result<(), CodecError> {
    let (_, flags) = check_common(bytes)?;
    if flags != FLAG_ENCRYPTED {
        return Err(CodecError::UnsupportedFlags { flags });
    }
    if bytes[10] != 0 || bytes[11] != 0 || bytes[16..28].iter().any(|&b| b != 0) {
        return Err(CodecError::UnsupportedCodec { id: bytes[10] });
    }
    Ok(())
}

/// What a trailer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    /// Length and crc32c of the raw content.
    pub(crate) content: RawSummary,
    /// crc32c of every stored byte before the trailer (header and framed payload), so that a
    /// changed byte the decompressor would not notice (a zstd window descriptor, say) is caught.
    pub(crate) stored_crc32c: u32,
}

impl Trailer {
    /// The trailer's 20 bytes.
    pub(crate) fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[0..8].copy_from_slice(&self.content.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.content.crc32c.to_le_bytes());
        out[12..16].copy_from_slice(&self.stored_crc32c.to_le_bytes());
        out[16..20].copy_from_slice(&END_MARKER);
        out
    }

    /// Parses a trailer that starts at stored byte `offset`.
    pub(crate) fn decode(bytes: &[u8; TRAILER_LEN], offset: u64) -> Result<Trailer, CodecError> {
        let marker: [u8; 4] = take(bytes, 16);
        if marker != END_MARKER {
            return Err(CodecError::BadTrailer {
                offset,
                found: marker,
            });
        }
        Ok(Trailer {
            content: RawSummary {
                len: u64::from_le_bytes(take(bytes, 0)),
                crc32c: u32::from_le_bytes(take(bytes, 8)),
            },
            stored_crc32c: u32::from_le_bytes(take(bytes, 12)),
        })
    }
}

/// `N` bytes of `bytes` from `at`; callers pass constant in-bounds ranges of fixed-size arrays.
fn take<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}
