//! [`ObjectReader`]: the streaming decoder. Reads and checks the header up front, decompresses
//! the chunked payload as the caller reads, and at the end of the payload checks the trailer,
//! the length and crc32c of everything it handed out, and that nothing follows.
//!
//! Memory: the decompressor's state only (a zstd window, at most 2^27 bytes, zstd's default
//! limit; an lz4 block of at most 4 MiB, held compressed and decompressed: 8 MiB, measured in
//! `common/tests/parsers_prop.rs`); chunks are not buffered. How much content it hands
//! out is bounded by [`ObjectReader::with_limit`].

use std::io::{self, BufReader, Read};

use super::Codec;
use super::chunk::{ChunkReader, read_full};
use super::error::{CodecError, Recorded};
use super::layout::{HEADER_LEN, ObjectHeader, RawSummary, TRAILER_LEN, Trailer};
use super::writer::{ObjectSummary, check_summary};

enum Decoder<R: Read> {
    None(ChunkReader<R>),
    Lz4(Box<lz4_flex::frame::FrameDecoder<ChunkReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<ChunkReader<R>>>),
}

impl<R: Read> Decoder<R> {
    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Decoder::None(r) => r,
            Decoder::Lz4(r) => r.as_mut(),
            Decoder::Zstd(r) => r,
        }
    }

    fn chunks(&mut self) -> &mut ChunkReader<R> {
        match self {
            Decoder::None(r) => r,
            Decoder::Lz4(r) => r.get_mut(),
            Decoder::Zstd(r) => r.get_mut().get_mut(),
        }
    }

    /// True when the decompressor holds no undecoded input (zstd reads ahead into a buffer).
    fn input_drained(&self) -> bool {
        match self {
            Decoder::Zstd(r) => r.get_ref().buffer().is_empty(),
            Decoder::None(_) | Decoder::Lz4(_) => true,
        }
    }
}

enum State {
    Reading,
    Verified(ObjectSummary),
    Failed(String),
}

/// Streams the content out of an object read from `R`.
///
/// Content is handed out before the object's end is checked, as in any streaming format: treat
/// it as unverified until a read returns `Ok(0)`, which happens only after the trailer, length,
/// crc32c and end of input all check out (`io::copy` and `read_to_end` do read that far).
/// Every failure is a `std::io::Error` wrapping a [`CodecError`]; `CodecError::from(io_error)`
/// recovers it. After a failure every further read fails too.
pub struct ObjectReader<R: Read> {
    header: ObjectHeader,
    decoder: Decoder<R>,
    raw_len: u64,
    crc32c: u32,
    /// The most content this reader hands out ([`ObjectReader::with_limit`]).
    limit: u64,
    state: State,
}

impl<R: Read> ObjectReader<R> {
    /// Reads and checks the header of the object on `inner`.
    pub fn new(mut inner: R) -> Result<Self, CodecError> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut offset = 0;
        read_full(&mut inner, &mut bytes, &mut offset, "header")?;
        let header = ObjectHeader::decode(&bytes)?;
        let chunks = ChunkReader::new(inner, offset, crc32c::crc32c(&bytes));
        let decoder = match header.codec {
            Codec::None => Decoder::None(chunks),
            Codec::Lz4 => Decoder::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(chunks))),
            Codec::Zstd { .. } => {
                Decoder::Zstd(zstd::stream::read::Decoder::new(chunks).map_err(CodecError::Io)?)
            }
        };
        Ok(ObjectReader {
            header,
            decoder,
            raw_len: 0,
            crc32c: 0,
            limit: u64::MAX,
            state: State::Reading,
        })
    }

    /// Bounds the content to `limit` bytes: the most an object of its kind may hold. A header
    /// declaring more is refused at once, and decoding stops with [`CodecError::TooLarge`] as
    /// soon as the content passes the limit, so a decompression bomb (a zstd frame without a
    /// content size, an lz4 frame of repeated bytes) costs at most `limit` bytes of output.
    pub fn with_limit(mut self, limit: u64) -> Result<Self, CodecError> {
        if let Some(declared) = self.header.summary
            && declared.len > limit
        {
            return Err(CodecError::TooLarge {
                limit,
                found: declared.len,
            });
        }
        self.limit = limit;
        Ok(self)
    }

    /// The object's header.
    pub fn header(&self) -> &ObjectHeader {
        &self.header
    }

    /// The verified summary, once the whole object has been read and checked.
    pub fn verified_summary(&self) -> Option<ObjectSummary> {
        match self.state {
            State::Verified(summary) => Some(summary),
            State::Reading | State::Failed(_) => None,
        }
    }

    /// Reads the rest of the content into `sink` and returns the verified summary.
    pub fn copy_to<W: io::Write>(&mut self, sink: &mut W) -> Result<ObjectSummary, CodecError> {
        io::copy(self, sink)?;
        self.verified_summary()
            .ok_or_else(|| CodecError::AlreadyFailed {
                first: "not verified".to_string(),
            })
    }

    fn read_content(&mut self, buf: &mut [u8]) -> Result<usize, CodecError> {
        let n = match self.decoder.reader().read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(CodecError::Io(e)),
            Err(e) => return Err(self.classify(e)),
        };
        if n > 0 {
            self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
            self.raw_len += n as u64;
            if self.raw_len > self.limit {
                return Err(CodecError::TooLarge {
                    limit: self.limit,
                    found: self.raw_len,
                });
            }
            if let Some(recorded) = self.header.summary
                && self.raw_len > recorded.len
            {
                return Err(CodecError::LengthMismatch {
                    recorded: Recorded::Header,
                    expected: recorded.len,
                    found: self.raw_len,
                });
            }
            return Ok(n);
        }
        let summary = self.verify_end()?;
        self.state = State::Verified(summary);
        Ok(0)
    }

    /// Turns a decompressor error into the typed fault behind it.
    fn classify(&mut self, err: io::Error) -> CodecError {
        if let Some(fault) = self.decoder.chunks().take_fault() {
            return fault;
        }
        let err = CodecError::from(err);
        match err {
            CodecError::Io(e) => {
                let offset = self.decoder.chunks().offset();
                CodecError::CorruptPayload {
                    offset,
                    detail: format!("{} stream does not decode: {e}", self.header.codec),
                }
            }
            typed => typed,
        }
    }

    /// Checks the end of the payload, the trailer, both summaries, and the end of input.
    fn verify_end(&mut self) -> Result<ObjectSummary, CodecError> {
        let drained = self.decoder.input_drained();
        let chunks = self.decoder.chunks();
        // The decompressor may stop at its frame's end without reading the end chunk: read on.
        if !drained || !chunks.at_end()? {
            let offset = chunks.offset();
            let detail = "the compressed stream ends before the payload does".to_string();
            return Err(CodecError::CorruptPayload { offset, detail });
        }
        let trailer_offset = chunks.offset();
        let stored_crc = chunks.stored_crc();
        let mut trailer_bytes = [0u8; TRAILER_LEN];
        chunks.read_unframed(&mut trailer_bytes, "trailer")?;
        let trailer = Trailer::decode(&trailer_bytes, trailer_offset)?;
        let content = RawSummary {
            len: self.raw_len,
            crc32c: self.crc32c,
        };
        check_summary(trailer.content, content, Recorded::Trailer)?;
        if let Some(header) = self.header.summary {
            check_summary(header, content, Recorded::Header)?;
        }
        if trailer.stored_crc32c != stored_crc {
            return Err(CodecError::StoredChecksumMismatch {
                expected: trailer.stored_crc32c,
                found: stored_crc,
            });
        }
        let end = chunks.offset();
        let mut probe = [0u8; 1];
        if chunks.read_some_unframed(&mut probe)? != 0 {
            return Err(CodecError::TrailingJunk { offset: end });
        }
        Ok(ObjectSummary {
            raw_len: content.len,
            stored_len: end,
            crc32c: content.crc32c,
            stored_crc32c: crc32c::crc32c_append(stored_crc, &trailer_bytes),
        })
    }
}

impl<R: Read> Read for ObjectReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Verified(_) => return Ok(0),
            State::Failed(first) => {
                return Err(CodecError::AlreadyFailed {
                    first: first.clone(),
                }
                .into());
            }
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        match self.read_content(buf) {
            Ok(n) => Ok(n),
            Err(CodecError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(err) => {
                self.state = State::Failed(err.to_string());
                Err(err.into())
            }
        }
    }
}
