//! Byte streams in and out of storage: [`ObjectReader`] (what `get` returns) and the
//! bounded-memory chunking that streaming uploads use.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio_util::io::SyncIoBridge;

/// A streaming reader over one object's bytes, as returned by `get`.
///
/// Read it as an `AsyncRead`, or on a blocking thread through [`ObjectReader::into_blocking`]
/// (decoders are synchronous): a local object is then read with plain `read` calls straight
/// into the caller's buffer, with no trip through the async runtime and no copy in between.
///
/// Errors met mid-stream are `io::Error`s; [`super::StorageError::from_read_error`] turns
/// them back into storage errors (a cut connection is transient, so the caller may `get`
/// again). The reader holds no lock or temporary state: dropping it early is fine.
pub struct ObjectReader {
    source: Source,
    size: Option<u64>,
}

enum Source {
    /// Any async stream (an S3 body, a wrapped reader).
    Stream(Pin<Box<dyn AsyncRead + Send>>),
    /// A local file at the object's first byte, of which `len` bytes are the object's. It
    /// becomes a `Stream` (tokio's file) on the first async read.
    File { file: std::fs::File, len: u64 },
}

impl ObjectReader {
    /// Wraps any reader. `size` is the number of bytes it will yield, when known.
    pub fn new(inner: impl AsyncRead + Send + 'static, size: Option<u64>) -> ObjectReader {
        ObjectReader {
            source: Source::Stream(Box::pin(inner)),
            size,
        }
    }

    /// The next `len` bytes of a local file (open, positioned at the object's start).
    pub(crate) fn from_file(file: std::fs::File, len: u64) -> ObjectReader {
        ObjectReader {
            source: Source::File { file, len },
            size: Some(len),
        }
    }

    /// The object as a blocking reader, for a blocking thread (a decoder). A local file is
    /// read directly; any other stream through `SyncIoBridge` on `runtime`.
    pub fn into_blocking(self, runtime: &tokio::runtime::Handle) -> Box<dyn Read + Send> {
        match self.source {
            Source::File { file, len } => Box::new(DropBehind::new(file, len)),
            Source::Stream(_) => Box::new(SyncIoBridge::new_with_handle(self, runtime.clone())),
        }
    }

    /// How many bytes the stream will yield, when the backend said so.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Reads the whole stream into memory, but never more than `max_len + 1` bytes: a result
    /// longer than `max_len` means the object is larger than the caller allows.
    ///
    /// A local file is read by one blocking task, not through tokio's file (one task per
    /// 1 MiB): each task is a hand-over between threads, and the prefetch worker's
    /// hand-overs, woken beside a recovery on two cores, preempt its startup process.
    pub async fn read_all(self, max_len: u64) -> io::Result<Bytes> {
        let cap = max_len.saturating_add(1);
        let capacity = self.size.unwrap_or(0).min(cap).min(1 << 30);
        let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        match self.source {
            Source::File { file, len } => {
                let read = move || file.take(len.min(cap)).read_to_end(&mut buf).map(|_| buf);
                crate::task::run_blocking(read).await.map(Bytes::from)
            }
            Source::Stream(stream) => {
                stream.take(cap).read_to_end(&mut buf).await?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Source::File { .. } = this.source {
            let placeholder = Source::Stream(Box::pin(tokio::io::empty()));
            if let Source::File { file, len } = std::mem::replace(&mut this.source, placeholder) {
                let file = tokio::fs::File::from_std(file).take(len);
                this.source =
                    Source::Stream(Box::pin(BufReader::with_capacity(read_buffer(len), file)));
            }
        }
        match &mut this.source {
            Source::Stream(inner) => inner.as_mut().poll_read(cx, buf),
            Source::File { .. } => unreachable!("a local file becomes a stream above"),
        }
    }
}

/// The read buffer of a local object read asynchronously: up to 1 MiB, never more than the
/// object. Each fill is one blocking read on tokio's thread pool; without it, every read of
/// the caller's own (often 64 KiB) buffer was a round trip to that pool.
fn read_buffer(len: u64) -> usize {
    const MAX: u64 = 1 << 20;
    const MIN: u64 = 8 << 10;
    usize::try_from(len.clamp(MIN, MAX)).unwrap_or(MAX as usize)
}

/// Reads `len` bytes of a local file and drops the pages it has read from the page cache
/// every [`DROP_BEHIND`] bytes (`posix_fadvise(DONTNEED)`), as a streaming read of an object
/// read once (a bundle restored or verified, a segment fetched) should: the next pages the
/// kernel reads ahead then reuse that memory instead of memory not touched for long, which
/// on a VM whose host reclaims freed guest memory is slow to touch again (see
/// `fsutil::drop_cached_pages`). Sequential access is advised up front (a larger read-ahead).
struct DropBehind {
    file: io::Take<std::fs::File>,
    /// Bytes read, and up to where the pages have been dropped.
    read: u64,
    dropped: u64,
}

/// How far a [`DropBehind`] reads before it drops what it read.
const DROP_BEHIND: u64 = 4 << 20;

impl DropBehind {
    fn new(file: std::fs::File, len: u64) -> DropBehind {
        let at = file_position(&file);
        advise(
            &file,
            at,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
        );
        DropBehind {
            file: file.take(len),
            read: at,
            dropped: at,
        }
    }
}

impl Read for DropBehind {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read - self.dropped >= DROP_BEHIND || (n == 0 && self.read > self.dropped) {
            let len = self.read - self.dropped;
            advise(
                self.file.get_ref(),
                self.dropped,
                len,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            self.dropped = self.read;
        }
        Ok(n)
    }
}

/// The file's current offset (0 if it cannot be told: advice only).
fn file_position(file: &std::fs::File) -> u64 {
    use std::io::Seek;
    let mut file = file;
    file.stream_position().unwrap_or(0)
}

/// `posix_fadvise` on `len` bytes (0: to the end) from `offset`; advice only, errors ignored.
fn advise(file: &std::fs::File, offset: u64, len: u64, advice: nix::fcntl::PosixFadviseAdvice) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(file), offset, len, advice);
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Reads from `reader` until `limit` bytes are gathered or the stream ends; a result
/// shorter than `limit` means the stream ended. Memory use is bounded by `limit`.
pub async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(limit.min(64 << 20));
    while buf.len() < limit {
        let want = (limit - buf.len()).min(1 << 20);
        let n = (&mut *reader).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_chunk_fills_up_to_limit_then_reports_the_end() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut reader = &data[..];
        let a = read_chunk(&mut reader, 4096).await.unwrap();
        let b = read_chunk(&mut reader, 4096).await.unwrap();
        let c = read_chunk(&mut reader, 4096).await.unwrap();
        let d = read_chunk(&mut reader, 4096).await.unwrap();
        assert_eq!((a.len(), b.len(), c.len(), d.len()), (4096, 4096, 1808, 0));
        assert_eq!([a, b, c].concat(), data);
    }

    #[tokio::test]
    async fn object_reader_reads_all() {
        let reader = ObjectReader::new(&b"hello"[..], Some(5));
        assert_eq!(reader.size(), Some(5));
        assert_eq!(&reader.read_all(5).await.unwrap()[..], b"hello");
        let reader = ObjectReader::new(&b"hello"[..], None);
        assert_eq!(&reader.read_all(2).await.unwrap()[..], b"hel");
    }
}
