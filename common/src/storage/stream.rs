//! Byte streams in and out of storage: [`ObjectReader`] (what `get` returns) and the
//! bounded-memory chunking that streaming uploads use.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// A streaming reader over one object's bytes, as returned by `get`.
///
/// Errors met mid-stream are `io::Error`s; [`super::StorageError::from_read_error`] turns
/// them back into storage errors (a cut connection is transient, so the caller may `get`
/// again). The reader holds no lock or temporary state: dropping it early is fine.
pub struct ObjectReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    size: Option<u64>,
}

impl ObjectReader {
    /// Wraps any reader. `size` is the number of bytes it will yield, when known.
    pub fn new(inner: impl AsyncRead + Send + 'static, size: Option<u64>) -> ObjectReader {
        ObjectReader {
            inner: Box::pin(inner),
            size,
        }
    }

    /// How many bytes the stream will yield, when the backend said so.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Reads the whole stream into memory, but never more than `max_len + 1` bytes: a result
    /// longer than `max_len` means the object is larger than the caller allows.
    pub async fn read_all(self, max_len: u64) -> io::Result<Bytes> {
        let cap = max_len.saturating_add(1);
        let capacity = self.size.unwrap_or(0).min(cap).min(1 << 30);
        let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        self.take(cap).read_to_end(&mut buf).await?;
        Ok(Bytes::from(buf))
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
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
