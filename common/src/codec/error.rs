//! [`CodecError`]: every way reading or writing an object can fail, typed so that callers can
//! tell corruption (never hand the bytes to Postgres) from an unreadable source (retry, or exit
//! above 125) from a format this build does not support.
//!
//! Errors carry stored-byte offsets and the values involved, but not the object's key: the codec
//! does not know it, so storage and commands add it when they wrap a `CodecError`.

use std::io;

/// Where a recorded length or checksum came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The header (present when the writer knew the content up front).
    Header,
    /// The trailer (always present).
    Trailer,
    /// The summary a writer's caller declared before writing the content.
    Declared,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recorded::Header => "header",
            Recorded::Trailer => "trailer",
            Recorded::Declared => "declared summary",
        })
    }
}

/// Why an object could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The first bytes are not the walship object magic: not an object at all.
    #[error("not a walship object: bad magic {found:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 8],
    },
    /// The object was written by a newer format version this build does not know.
    #[error("unsupported object format version {found} (this walship reads version {supported})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The header's checksum does not match its bytes.
    #[error(
        "corrupt object header: header checksum is {found:#010x}, its bytes give {expected:#010x}"
    )]
    HeaderChecksumMismatch {
        /// The crc32c computed over the header bytes.
        expected: u32,
        /// The crc32c stored in the header.
        found: u32,
    },
    /// The header names a codec this build does not know.
    #[error("unsupported object codec id {id}")]
    UnsupportedCodec {
        /// The codec id byte.
        id: u8,
    },
    /// The header has flag bits this build does not know.
    #[error("unsupported object flags {flags:#010x}")]
    UnsupportedFlags {
        /// The unknown bits.
        flags: u32,
    },
    /// The object is encrypted; this build cannot decrypt, and refuses rather than return ciphertext.
    #[error(
        "object is encrypted, and no encryption key is configured ([encryption] key_file or passphrase_command)"
    )]
    Encrypted,
    /// A sealed chunk of an encrypted object fails authentication: the wrong data key, or the
    /// object was altered, reordered, spliced from another object or stored under another
    /// key. Never "absent": the object is there and cannot be trusted.
    #[error(
        "cannot decrypt object: sealed chunk {chunk} fails authentication (wrong key, or the object was altered or moved)"
    )]
    Decrypt {
        /// Index of the chunk (0 is the first).
        chunk: u64,
    },
    /// The object ends before its end: cut off while being read, or never completed.
    #[error("object truncated: it ends at stored byte {offset}, inside the {section}")]
    Truncated {
        /// Stored bytes read before the end.
        offset: u64,
        /// Which part of the object was being read.
        section: &'static str,
    },
    /// The payload does not decode.
    #[error("corrupt object payload at stored byte {offset}: {detail}")]
    CorruptPayload {
        /// Stored byte offset at (or just after) the fault.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The trailer's end marker is wrong.
    #[error("corrupt object trailer at stored byte {offset}: end marker is {found:02x?}")]
    BadTrailer {
        /// Stored byte offset of the trailer.
        offset: u64,
        /// The bytes found where the end marker belongs.
        found: [u8; 4],
    },
    /// The decoded length differs from the recorded one.
    #[error("length mismatch: {recorded} says {expected} bytes, content has {found}")]
    LengthMismatch {
        /// Which record disagrees.
        recorded: Recorded,
        /// The recorded length.
        expected: u64,
        /// The length of the content.
        found: u64,
    },
    /// The content is larger than the caller's limit: the most an object of its kind may
    /// legitimately hold (a WAL segment: the segment size). A decompression bomb, or an object
    /// under the wrong key; decoding stops there, so memory stays bounded.
    #[error(
        "content is larger than the {limit} bytes this object may hold ({found} bytes or more; a decompression bomb or an object of another kind)"
    )]
    TooLarge {
        /// The limit.
        limit: u64,
        /// The length found (declared in the header, or decoded so far).
        found: u64,
    },
    /// The crc32c of the decoded content differs from the recorded one.
    #[error(
        "checksum mismatch: {recorded} says crc32c {expected:#010x}, content has {found:#010x}"
    )]
    ChecksumMismatch {
        /// Which record disagrees.
        recorded: Recorded,
        /// The recorded crc32c.
        expected: u32,
        /// The crc32c of the content.
        found: u32,
    },
    /// The content checks out but the stored bytes before the trailer changed (in a place the
    /// decompressor ignores, or in the trailer's own record of them).
    #[error(
        "stored checksum mismatch: trailer says crc32c {expected:#010x} for the stored bytes, they have {found:#010x}"
    )]
    StoredChecksumMismatch {
        /// The crc32c recorded in the trailer.
        expected: u32,
        /// The crc32c of the stored bytes read.
        found: u32,
    },
    /// Bytes follow the trailer.
    #[error("trailing junk: bytes follow the object's trailer at stored byte {offset}")]
    TrailingJunk {
        /// Stored byte offset where the junk starts.
        offset: u64,
    },
    /// A read after this reader had already failed.
    #[error("object reader already failed: {first}")]
    AlreadyFailed {
        /// The first failure's message.
        first: String,
    },
    /// The underlying reader or writer failed: the object may be fine, the source is not.
    #[error("object I/O failed: {0}")]
    Io(#[source] io::Error),
}

impl CodecError {
    /// True when the object's bytes are wrong (corrupt, truncated, or not an object), as
    /// opposed to an I/O failure or a format this build does not support.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            CodecError::BadMagic { .. }
                | CodecError::HeaderChecksumMismatch { .. }
                | CodecError::Truncated { .. }
                | CodecError::CorruptPayload { .. }
                | CodecError::BadTrailer { .. }
                | CodecError::LengthMismatch { .. }
                | CodecError::TooLarge { .. }
                | CodecError::ChecksumMismatch { .. }
                | CodecError::StoredChecksumMismatch { .. }
                | CodecError::TrailingJunk { .. }
                | CodecError::Decrypt { .. }
        )
    }
}

/// Recovers the typed error from an `io::Error` returned by the object adapters' `Read` or
/// `Write` methods; any other I/O error becomes [`CodecError::Io`].
impl From<io::Error> for CodecError {
    fn from(err: io::Error) -> Self {
        let kind = err.kind();
        if !err.get_ref().is_some_and(|inner| inner.is::<CodecError>()) {
            return CodecError::Io(err);
        }
        match err.into_inner().map(|inner| inner.downcast::<CodecError>()) {
            Some(Ok(codec)) => *codec,
            Some(Err(other)) => CodecError::Io(io::Error::new(kind, other)),
            None => CodecError::Io(io::Error::from(kind)),
        }
    }
}

/// Wraps the typed error so it can cross `Read`/`Write`; `CodecError::from` recovers it.
impl From<CodecError> for io::Error {
    fn from(err: CodecError) -> Self {
        match err {
            CodecError::Io(inner) => inner,
            CodecError::Truncated { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, err),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
