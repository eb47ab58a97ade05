//! [`ObjectWriter`]: the streaming encoder. Writes the header at once, compresses what it is
//! given into the chunked payload as it arrives, and writes the trailer in
//! [`ObjectWriter::finish`]. Memory: one chunk (256 KiB) plus the compressor's own state.

use std::io::{self, Write};

use super::algorithm::Codec;
use super::chunk::{ChunkWriter, WRITE_CHUNK_LEN};
use super::error::{CodecError, Recorded};
use super::layout::{FORMAT_VERSION, ObjectHeader, RawSummary, Trailer};
use super::lz4_block::{END_MARK, Lz4Block, OBJECT_BLOCK_SIZE, frame_header};

/// What a finished object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ObjectSummary {
    /// Length of the raw (uncompressed) content.
    pub raw_len: u64,
    /// Length of the stored object: header, payload and trailer.
    pub stored_len: u64,
    /// crc32c of the raw content.
    pub crc32c: u32,
    /// crc32c of the whole stored object (header to trailer): what S3's `x-amz-checksum-crc32c`
    /// checks, so an upload need not hash the object a second time.
    pub stored_crc32c: u32,
}

enum Encoder<W: Write> {
    None(ChunkWriter<W>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<ChunkWriter<W>>>),
    /// An lz4 frame whose blocks the caller compressed ([`ObjectWriter::write_lz4_block`]).
    Lz4Blocks(ChunkWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, ChunkWriter<W>>),
}

impl<W: Write> Encoder<W> {
    /// The writer raw content goes to; `None` for a frame of caller-compressed blocks.
    fn writer(&mut self) -> Option<&mut dyn Write> {
        match self {
            Encoder::None(w) => Some(w),
            Encoder::Lz4(w) => Some(w.as_mut()),
            Encoder::Lz4Blocks(_) => None,
            Encoder::Zstd(w) => Some(w),
        }
    }

    fn finish(self) -> io::Result<ChunkWriter<W>> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Lz4(w) => w.finish().map_err(io::Error::from),
            Encoder::Lz4Blocks(mut w) => w.write_all(&END_MARK).map(|()| w),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// Streams content into an object on `W`.
///
/// Dropping the writer without calling [`finish`](Self::finish) leaves an object without its end
/// chunk and trailer, which every reader reports as truncated: a half-written object never reads
/// as complete.
pub struct ObjectWriter<W: Write> {
    encoder: Encoder<W>,
    raw_len: u64,
    crc32c: ContentCrc,
    declared: Option<RawSummary>,
    failed: bool,
}

/// Who computes the crc32c of the raw content.
#[derive(Debug, Clone, Copy)]
enum ContentCrc {
    /// The writer, over every byte written (the running value).
    Computed(u32),
    /// The caller, who already hashed the same bytes and gives the value to
    /// [`ObjectWriter::finish_with_crc`].
    Caller,
}

impl<W: Write> ObjectWriter<W> {
    /// Starts an object on `inner` with `codec`, writing its header.
    pub fn new(inner: W, codec: Codec) -> Result<Self, CodecError> {
        Self::start(inner, codec, None, ContentCrc::Computed(0))
    }

    /// Starts an object whose content's crc32c the caller computes while it writes (for
    /// example per file, combined with `crc32c::crc32c_combine`), so that the content is not
    /// hashed a second time here; the caller gives it to [`finish_with_crc`](Self::finish_with_crc),
    /// and [`finish`](Self::finish) refuses. The value goes into the trailer as the content's
    /// crc32c: a wrong one makes an object every reader reports as corrupt
    /// ([`CodecError::ChecksumMismatch`]), never one that reads as success. Meant for large
    /// content written in pieces: lz4 uses 4 MiB blocks whatever the size of the first write.
    pub fn with_caller_crc(inner: W, codec: Codec) -> Result<Self, CodecError> {
        Self::start(inner, codec, None, ContentCrc::Caller)
    }

    /// Starts an object whose content the caller already knows the length and crc32c of; both go
    /// into the header too, and [`finish`](Self::finish) fails if the content written differs
    /// (a file that changed while it was being archived, for example).
    pub fn with_declared_summary(
        inner: W,
        codec: Codec,
        raw_len: u64,
        crc32c: u32,
    ) -> Result<Self, CodecError> {
        Self::start(
            inner,
            codec,
            Some(RawSummary {
                len: raw_len,
                crc32c,
            }),
            ContentCrc::Computed(0),
        )
    }

    /// Starts an lz4 object whose blocks the caller compresses ([`Lz4Block::compress`], on as
    /// many threads as it likes) and hands over in order with
    /// [`write_lz4_block`](Self::write_lz4_block); plain writes are refused. The caller
    /// computes the content's crc32c, as for [`with_caller_crc`](Self::with_caller_crc), and
    /// ends with [`finish_with_crc`](Self::finish_with_crc).
    pub fn with_lz4_blocks(inner: W) -> Result<Self, CodecError> {
        let mut chunks = ChunkWriter::new(inner, WRITE_CHUNK_LEN);
        let header = ObjectHeader {
            version: FORMAT_VERSION,
            codec: Codec::Lz4,
            summary: None,
        };
        chunks
            .write_unframed(&header.encode())
            .map_err(CodecError::Io)?;
        chunks
            .write_all(&frame_header(OBJECT_BLOCK_SIZE))
            .map_err(CodecError::Io)?;
        Ok(ObjectWriter {
            encoder: Encoder::Lz4Blocks(chunks),
            raw_len: 0,
            crc32c: ContentCrc::Caller,
            declared: None,
            failed: false,
        })
    }

    /// Appends the next block of an object started with
    /// [`with_lz4_blocks`](Self::with_lz4_blocks).
    pub fn write_lz4_block(&mut self, block: &Lz4Block) -> io::Result<()> {
        let Encoder::Lz4Blocks(chunks) = &mut self.encoder else {
            return Err(io::Error::other(
                "write_lz4_block needs an object started with_lz4_blocks",
            ));
        };
        if self.failed {
            return Err(already_failed());
        }
        if let Err(e) = chunks.write_all(block.encoded()) {
            self.failed = true;
            return Err(e);
        }
        self.raw_len += block.raw_len() as u64;
        Ok(())
    }

    fn start(
        inner: W,
        codec: Codec,
        declared: Option<RawSummary>,
        crc32c: ContentCrc,
    ) -> Result<Self, CodecError> {
        let mut chunks = ChunkWriter::new(inner, WRITE_CHUNK_LEN);
        let header = ObjectHeader {
            version: FORMAT_VERSION,
            codec,
            summary: declared,
        };
        chunks
            .write_unframed(&header.encode())
            .map_err(CodecError::Io)?;
        let encoder = match codec {
            Codec::None => Encoder::None(chunks),
            Codec::Lz4 => {
                // lz4_flex sizes its blocks by the first write unless told: an object written
                // in small pieces (a backup bundle, fed network messages) would get 64 KiB
                // blocks and a worse ratio than one written at once. Streamed content gets the
                // 4 MiB blocks a large first write gets.
                let frame = match crc32c {
                    ContentCrc::Caller => lz4_flex::frame::FrameInfo::new()
                        .block_size(lz4_flex::frame::BlockSize::Max4MB),
                    ContentCrc::Computed(_) => lz4_flex::frame::FrameInfo::new(),
                };
                Encoder::Lz4(Box::new(lz4_flex::frame::FrameEncoder::with_frame_info(
                    frame, chunks,
                )))
            }
            Codec::Zstd { level } => Encoder::Zstd(
                zstd::stream::write::Encoder::new(chunks, level).map_err(CodecError::Io)?,
            ),
        };
        Ok(ObjectWriter {
            encoder,
            raw_len: 0,
            crc32c,
            declared,
            failed: false,
        })
    }

    /// Raw bytes accepted so far.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Ends the payload, writes the trailer, flushes, and returns what was stored.
    pub fn finish(self) -> Result<ObjectSummary, CodecError> {
        self.finish_into_inner().map(|(summary, _)| summary)
    }

    /// Like [`finish`](Self::finish), and hands back the inner writer (to fsync a file, or to
    /// complete an upload).
    pub fn finish_into_inner(self) -> Result<(ObjectSummary, W), CodecError> {
        match self.crc32c {
            ContentCrc::Computed(crc32c) => self.finish_as(crc32c),
            ContentCrc::Caller => Err(CodecError::Io(io::Error::other(
                "an object started with_caller_crc must end with finish_with_crc",
            ))),
        }
    }

    /// Like [`finish_into_inner`](Self::finish_into_inner), with the content's crc32c as the
    /// caller computed it (see [`with_caller_crc`](Self::with_caller_crc)). On a writer that
    /// computes its own, a different value is a [`CodecError::ChecksumMismatch`].
    pub fn finish_with_crc(self, crc32c: u32) -> Result<(ObjectSummary, W), CodecError> {
        if let ContentCrc::Computed(own) = self.crc32c {
            check_summary(
                RawSummary {
                    len: self.raw_len,
                    crc32c,
                },
                RawSummary {
                    len: self.raw_len,
                    crc32c: own,
                },
                Recorded::Declared,
            )?;
        }
        self.finish_as(crc32c)
    }

    fn finish_as(self, crc32c: u32) -> Result<(ObjectSummary, W), CodecError> {
        if self.failed {
            return Err(CodecError::AlreadyFailed {
                first: "a write to this object failed".to_string(),
            });
        }
        let raw = RawSummary {
            len: self.raw_len,
            crc32c,
        };
        if let Some(declared) = self.declared {
            check_summary(declared, raw, Recorded::Declared)?;
        }
        let mut chunks = self.encoder.finish().map_err(CodecError::Io)?;
        chunks.finish_payload().map_err(CodecError::Io)?;
        let trailer = Trailer {
            content: raw,
            stored_crc32c: chunks.stored_crc(),
        };
        chunks
            .write_unframed(&trailer.encode())
            .map_err(CodecError::Io)?;
        chunks.flush().map_err(CodecError::Io)?;
        let summary = ObjectSummary {
            raw_len: raw.len,
            stored_len: chunks.stored(),
            crc32c: raw.crc32c,
            stored_crc32c: chunks.stored_crc(),
        };
        Ok((summary, chunks.into_inner()))
    }
}

/// Compares a recorded summary with the content's; used by the writer and the reader.
pub(crate) fn check_summary(
    recorded: RawSummary,
    content: RawSummary,
    which: Recorded,
) -> Result<(), CodecError> {
    if recorded.len != content.len {
        return Err(CodecError::LengthMismatch {
            recorded: which,
            expected: recorded.len,
            found: content.len,
        });
    }
    if recorded.crc32c != content.crc32c {
        return Err(CodecError::ChecksumMismatch {
            recorded: which,
            expected: recorded.crc32c,
            found: content.crc32c,
        });
    }
    Ok(())
}

impl<W: Write> Write for ObjectWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(already_failed());
        }
        let Some(writer) = self.encoder.writer() else {
            return Err(io::Error::other(
                "an object started with_lz4_blocks takes only write_lz4_block",
            ));
        };
        match writer.write(buf) {
            Ok(n) => {
                if let ContentCrc::Computed(crc) = &mut self.crc32c {
                    *crc = crate::crc::crc32c_append(*crc, &buf[..n]);
                }
                self.raw_len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Flushes the compressor (ending its current block, which costs a little ratio) and the
    /// inner writer. The object is still incomplete until [`ObjectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.encoder {
            Encoder::Lz4Blocks(chunks) => chunks.flush(),
            encoder => encoder.writer().map_or(Ok(()), |w| w.flush()),
        }
    }
}

fn already_failed() -> io::Error {
    CodecError::AlreadyFailed {
        first: "a write to this object failed".to_string(),
    }
    .into()
}
