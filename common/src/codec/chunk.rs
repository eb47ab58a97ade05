//! The payload framing: the codec's output cut into length-prefixed chunks and closed by a
//! zero-length chunk, so that a reader finds the payload's end exactly, without buffering the
//! object or knowing its size up front, and tells truncation and trailing junk apart.
//!
//! [`ChunkWriter`] sits under the compressor and buffers at most one chunk; [`ChunkReader`] sits
//! under the decompressor and buffers nothing. Both count stored bytes, for error offsets and
//! for [`super::ObjectSummary::stored_len`].

use std::io::{self, Read, Write};

use super::error::CodecError;
use super::layout::MAX_CHUNK_LEN;

/// The chunk size writers use: 256 KiB, far below [`MAX_CHUNK_LEN`], 4 bytes of framing each.
pub(crate) const WRITE_CHUNK_LEN: usize = 256 * 1024;

/// Frames whatever is written into chunks on `inner`.
pub(crate) struct ChunkWriter<W> {
    inner: W,
    buf: Vec<u8>,
    chunk_len: usize,
    stored: u64,
    stored_crc: u32,
}

impl<W: Write> ChunkWriter<W> {
    /// A chunk writer emitting chunks of `chunk_len` bytes (1..=[`MAX_CHUNK_LEN`]).
    pub(crate) fn new(inner: W, chunk_len: usize) -> Self {
        let chunk_len = chunk_len.clamp(1, MAX_CHUNK_LEN as usize);
        ChunkWriter {
            inner,
            buf: Vec::new(),
            chunk_len,
            stored: 0,
            stored_crc: 0,
        }
    }

    /// Writes unframed bytes (the header and trailer) straight to the inner writer.
    pub(crate) fn write_unframed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.stored += bytes.len() as u64;
        self.stored_crc = crate::crc::crc32c_append(self.stored_crc, bytes);
        Ok(())
    }

    /// Emits the buffered chunk, if any, then the zero-length end chunk.
    pub(crate) fn finish_payload(&mut self) -> io::Result<()> {
        self.emit_buffered()?;
        self.write_unframed(&0u32.to_le_bytes())
    }

    /// Stored bytes written so far.
    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    /// crc32c of the stored bytes written so far.
    pub(crate) fn stored_crc(&self) -> u32 {
        self.stored_crc
    }

    /// The inner writer.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }

    fn emit(&mut self, chunk: &[u8]) -> io::Result<()> {
        // chunk.len() <= chunk_len <= MAX_CHUNK_LEN, so it fits in a u32.
        let len = u32::try_from(chunk.len()).map_err(io::Error::other)?;
        self.write_unframed(&len.to_le_bytes())?;
        self.inner.write_all(chunk)?;
        self.stored += chunk.len() as u64;
        self.stored_crc = crate::crc::crc32c_append(self.stored_crc, chunk);
        Ok(())
    }

    fn emit_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.emit(&buf);
        self.buf = buf;
        self.buf.clear();
        result
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.is_empty() && data.len() >= self.chunk_len {
            self.emit(&data[..self.chunk_len])?;
            return Ok(self.chunk_len);
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.chunk_len);
        }
        let n = data.len().min(self.chunk_len - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk_len {
            self.emit_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit_buffered()?;
        self.inner.flush()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    NeedLength,
    InChunk(u32),
    Ended,
}

/// Reads the chunked payload as one byte stream, ending exactly at the end chunk.
///
/// A fault (truncation, a bad chunk length, an I/O error of the inner reader) is kept here for
/// the object reader to report typed, because the decompressor between them may rewrap errors.
pub(crate) struct ChunkReader<R> {
    inner: R,
    state: ChunkState,
    offset: u64,
    stored_crc: u32,
    fault: Option<CodecError>,
}

impl<R: Read> ChunkReader<R> {
    /// A chunk reader whose first byte is stored byte `offset`, the bytes before it having
    /// crc32c `stored_crc`.
    pub(crate) fn new(inner: R, offset: u64, stored_crc: u32) -> Self {
        ChunkReader {
            inner,
            state: ChunkState::NeedLength,
            offset,
            stored_crc,
            fault: None,
        }
    }

    /// crc32c of the stored bytes read so far.
    pub(crate) fn stored_crc(&self) -> u32 {
        self.stored_crc
    }

    /// Reads on to the end chunk if no payload bytes are left before it; true if so, false if
    /// payload bytes remain.
    pub(crate) fn at_end(&mut self) -> Result<bool, CodecError> {
        let mut probe = [0u8; 1];
        loop {
            match self.read(&mut probe) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.take_fault().unwrap_or_else(|| CodecError::from(e))),
            }
        }
    }

    /// The stored byte offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The fault that stopped this reader, if any.
    pub(crate) fn take_fault(&mut self) -> Option<CodecError> {
        self.fault.take()
    }

    /// Reads exactly `buf.len()` unframed bytes (the trailer) after the payload.
    pub(crate) fn read_unframed(
        &mut self,
        buf: &mut [u8],
        section: &'static str,
    ) -> Result<(), CodecError> {
        read_full(&mut self.inner, buf, &mut self.offset, section)
    }

    /// Reads at most `buf.len()` unframed bytes, for the end-of-object check.
    pub(crate) fn read_some_unframed(&mut self, buf: &mut [u8]) -> Result<usize, CodecError> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CodecError::from(e)),
            }
        }
    }

    fn fail(&mut self, err: CodecError) -> io::Error {
        let message = err.to_string();
        self.fault = Some(err);
        io::Error::new(io::ErrorKind::InvalidData, message)
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                ChunkState::Ended => return Ok(0),
                ChunkState::NeedLength => {
                    let mut len = [0u8; 4];
                    if let Err(err) =
                        read_full(&mut self.inner, &mut len, &mut self.offset, "payload")
                    {
                        return Err(self.fail(err));
                    }
                    self.stored_crc = crate::crc::crc32c_append(self.stored_crc, &len);
                    let len = u32::from_le_bytes(len);
                    self.state = match len {
                        0 => ChunkState::Ended,
                        len if len > MAX_CHUNK_LEN => {
                            let detail =
                                format!("chunk length {len} exceeds the maximum {MAX_CHUNK_LEN}");
                            let offset = self.offset - 4;
                            return Err(self.fail(CodecError::CorruptPayload { offset, detail }));
                        }
                        len => ChunkState::InChunk(len),
                    };
                }
                ChunkState::InChunk(remaining) => {
                    let want = buf.len().min(remaining as usize);
                    let n = match self.inner.read(&mut buf[..want]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                        Err(e) => return Err(self.fail(CodecError::from(e))),
                    };
                    if n == 0 {
                        let offset = self.offset;
                        return Err(self.fail(CodecError::Truncated {
                            offset,
                            section: "payload",
                        }));
                    }
                    self.offset += n as u64;
                    self.stored_crc = crate::crc::crc32c_append(self.stored_crc, &buf[..n]);
                    // n <= want <= remaining, which is a u32.
                    let left = remaining - n as u32;
                    self.state = if left == 0 {
                        ChunkState::NeedLength
                    } else {
                        ChunkState::InChunk(left)
                    };
                    return Ok(n);
                }
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes, advancing `offset`; the end of input is
/// [`CodecError::Truncated`] in `section`.
pub(crate) fn read_full<R: Read>(
    inner: &mut R,
    buf: &mut [u8],
    offset: &mut u64,
    section: &'static str,
) -> Result<(), CodecError> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(CodecError::Truncated {
                    offset: *offset,
                    section,
                });
            }
            Ok(n) => {
                filled += n;
                *offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CodecError::from(e)),
        }
    }
    Ok(())
}
