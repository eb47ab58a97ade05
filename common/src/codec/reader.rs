//! [`ObjectReader`]: the streaming decoder. Reads and checks the header up front, decompresses
//! the chunked payload as the caller reads, and at the end of the payload checks the trailer,
//! the length and crc32c of everything it handed out, and that nothing follows.
//!
//! It is also a [`BufRead`]: [`BufRead::fill_buf`] hands out the decoder's own buffer (an lz4
//! block as it was decompressed, with no copy), and [`BufRead::consume`] checksums what the
//! caller took; [`ObjectReader::content_crc32c`] is the running crc32c of the content handed
//! out so far, from which a caller derives the crc32c of any piece it read
//! ([`super::crc_of_piece`]) without hashing those bytes again.
//!
//! Memory: the decompressor's state only (a zstd window, at most 2^27 bytes, zstd's default
//! limit; an lz4 block of at most 4 MiB, held compressed and decompressed: 8 MiB, measured in
//! `common/tests/parsers_prop.rs`); chunks are not buffered. How much content it hands
//! out is bounded by [`ObjectReader::with_limit`].

use std::io::{self, BufRead, BufReader, Read};

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

/// Content decoded for [`BufRead`] by a decoder without a buffer of its own (none, zstd).
const PENDING_LEN: usize = 256 << 10;

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
    /// Content decoded by `fill_buf` and not consumed yet, `pending[pending_at..]` (none and
    /// zstd only: lz4's decoder keeps its own block buffer).
    pending: Vec<u8>,
    pending_at: usize,
}

impl<R: Read> ObjectReader<R> {
    /// Reads and checks the header of the object on `inner`.
    pub fn new(mut inner: R) -> Result<Self, CodecError> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut offset = 0;
        read_full(&mut inner, &mut bytes, &mut offset, "header")?;
        let header = ObjectHeader::decode(&bytes)?;
        let chunks = ChunkReader::new(inner, offset, crate::crc::crc32c(&bytes));
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
            pending: Vec::new(),
            pending_at: 0,
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

    /// The crc32c of the content handed out so far (read, or consumed after `fill_buf`).
    pub fn content_crc32c(&self) -> u32 {
        self.crc32c
    }

    /// How many bytes of content have been handed out so far.
    pub fn content_len(&self) -> u64 {
        self.raw_len
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
        if matches!(self.decoder, Decoder::Lz4(_)) || self.pending_at < self.pending.len() {
            // Out of the decoded block (lz4 decodes into a buffer of its own anyway).
            let n = self.buffered_len()?.min(buf.len());
            if n == 0 {
                self.end()?;
                return Ok(0);
            }
            self.check_length(n)?;
            buf[..n].copy_from_slice(&self.buffered()[..n]);
            self.take(n);
            return Ok(n);
        }
        let n = match self.decoder.reader().read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(CodecError::Io(e)),
            Err(e) => return Err(self.classify(e)),
        };
        if n > 0 {
            self.check_length(n)?;
            self.crc32c = crate::crc::crc32c_append(self.crc32c, &buf[..n]);
            self.raw_len += n as u64;
            return Ok(n);
        }
        self.end()?;
        Ok(0)
    }

    /// Refuses `n` more bytes of content past the limit or the header's recorded length.
    fn check_length(&self, n: usize) -> Result<(), CodecError> {
        let found = self.raw_len + n as u64;
        if found > self.limit {
            return Err(CodecError::TooLarge {
                limit: self.limit,
                found,
            });
        }
        if let Some(recorded) = self.header.summary
            && found > recorded.len
        {
            return Err(CodecError::LengthMismatch {
                recorded: Recorded::Header,
                expected: recorded.len,
                found,
            });
        }
        Ok(())
    }

    /// The end of the content: checks it ([`Self::verify_end`]) and records the verdict.
    fn end(&mut self) -> Result<(), CodecError> {
        let summary = self.verify_end()?;
        self.state = State::Verified(summary);
        Ok(())
    }

    /// Decodes more content unless some is buffered; the number of bytes buffered, 0 at the
    /// end of the content (not yet checked).
    fn buffered_len(&mut self) -> Result<usize, CodecError> {
        if let Decoder::Lz4(lz4) = &mut self.decoder {
            return match lz4.fill_buf() {
                Ok(block) => Ok(block.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(CodecError::Io(e)),
                Err(e) => Err(self.classify(e)),
            };
        }
        if self.pending_at == self.pending.len() {
            self.pending.resize(PENDING_LEN, 0);
            self.pending_at = 0;
            let mut filled = 0;
            while filled < PENDING_LEN {
                match self.decoder.reader().read(&mut self.pending[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.pending.clear();
                        return Err(self.classify(e));
                    }
                }
            }
            self.pending.truncate(filled);
        }
        Ok(self.pending.len() - self.pending_at)
    }

    /// The buffered content (after [`Self::buffered_len`] said how much there is).
    fn buffered(&mut self) -> &[u8] {
        match &mut self.decoder {
            // With a block buffered, lz4's `fill_buf` returns it without reading.
            Decoder::Lz4(lz4) => lz4.fill_buf().unwrap_or_default(),
            Decoder::None(_) | Decoder::Zstd(_) => &self.pending[self.pending_at..],
        }
    }

    /// Hands out the first `n` buffered bytes: checksums and counts them.
    fn take(&mut self, n: usize) {
        let before = self.crc32c;
        self.crc32c = crate::crc::crc32c_append(before, &self.buffered()[..n]);
        self.raw_len += n as u64;
        match &mut self.decoder {
            Decoder::Lz4(lz4) => lz4.consume(n),
            Decoder::None(_) | Decoder::Zstd(_) => self.pending_at += n,
        }
    }

    /// Records `err` as the reader's failure and returns it as an `io::Error`.
    fn fail(&mut self, err: CodecError) -> io::Error {
        if let CodecError::Io(e) = &err
            && e.kind() == io::ErrorKind::Interrupted
        {
            return err.into();
        }
        self.state = State::Failed(err.to_string());
        err.into()
    }

    /// The state's answer before any decoding: `Some(Ok(()))` at the verified end.
    fn check_state(&self) -> Option<io::Result<()>> {
        match &self.state {
            State::Verified(_) => Some(Ok(())),
            State::Failed(first) => Some(Err(CodecError::AlreadyFailed {
                first: first.clone(),
            }
            .into())),
            State::Reading => None,
        }
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
            stored_crc32c: crate::crc::crc32c_append(stored_crc, &trailer_bytes),
        })
    }
}

impl<R: Read> Read for ObjectReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(answer) = self.check_state() {
            return answer.map(|()| 0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_content(buf).map_err(|err| self.fail(err))
    }
}

/// Decoded content straight out of the decoder's buffer. The same checks as `read`: a
/// `fill_buf` that returns nothing has checked the whole object; the content handed out
/// before that is unverified. `consume` checksums the bytes it takes, and `fill_buf` refuses
/// a block that would take the content past the limit or the recorded length.
impl<R: Read> BufRead for ObjectReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(answer) = self.check_state() {
            return answer.map(|()| &[][..]);
        }
        let checked = match self.buffered_len() {
            Ok(0) => self.end().map(|()| 0),
            Ok(n) => self.check_length(n).map(|()| n),
            Err(e) => Err(e),
        };
        match checked {
            Ok(0) => Ok(&[]),
            Ok(_) => Ok(self.buffered()),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Takes `amt` bytes of what `fill_buf` returned (more is a caller's bug: it panics).
    fn consume(&mut self, amt: usize) {
        if amt > 0 {
            self.take(amt);
        }
    }
}
