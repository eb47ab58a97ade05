//! Copying one object as stored: streamed from the source into a create-only put on the
//! target, checked on arrival, and compared with what is already there.
//!
//! Checks: the target's put computes (and on S3 has the server echo) the CRC32C of the bytes
//! it stored; that must equal the CRC32C of the bytes read from the source, which must equal
//! the source's own CRC32C where the source records one (S3 returns it on `head`; a local
//! source does not, and then the size from its listing is the check). The put is told the
//! expected CRC32C up front, so a mismatch fails it before anything becomes visible.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::CopyError;
use crate::storage::{AnyStorage, ObjectKey, ObjectMeta, PutOptions, Storage, StorageOp};

/// What became of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored on the target; this many bytes.
    Copied(u64),
    /// The target had the same bytes already (a concurrent or earlier copy).
    Present,
}

/// Copies `meta.key` from `source` to `target`. `replaceable` keys (a stream's `.partial`
/// tail, which the source itself replaces) may overwrite different bytes on the target; any
/// other key that exists there with different bytes is [`CopyError::Conflict`].
pub(crate) async fn copy_object(
    source: &AnyStorage,
    target: &AnyStorage,
    meta: &ObjectMeta,
    replaceable: bool,
) -> Result<Outcome, CopyError> {
    let key = &meta.key;
    let source_head = if source.capabilities().crc32c_in_head {
        Some(source.head(key).await.map_err(CopyError::source(key))?)
    } else {
        None
    };
    let expected_crc = source_head.as_ref().and_then(|h| h.crc32c);
    let expected_size = source_head.as_ref().map_or(meta.size, |h| h.size);
    let opts = PutOptions {
        if_absent: !replaceable,
        crc32c: expected_crc,
        // Copies carry no per-object lock: a WORM target relies on its bucket's default
        // retention (README, "Copy to a second region").
        lock: None,
    };
    let result = target
        .retry_policy()
        .run(StorageOp::Put, key.as_str(), || async {
            let reader = source.get(key).await?;
            let mut counted = CrcReader::new(reader);
            let stored = target.put_stream(key, &mut counted, opts).await?;
            Ok((stored, counted.size, counted.crc))
        })
        .await;
    match result {
        Ok((stored, read_size, read_crc)) => {
            let arrived_crc = stored.crc32c.unwrap_or(read_crc);
            if stored.size != expected_size || read_size != expected_size {
                return Err(CopyError::Mismatch {
                    key: key.to_string(),
                    detail: format!(
                        "the source lists {expected_size} bytes, {read_size} were read and the target stored {}",
                        stored.size
                    ),
                });
            }
            if arrived_crc != read_crc || expected_crc.is_some_and(|e| e != read_crc) {
                return Err(CopyError::Mismatch {
                    key: key.to_string(),
                    detail: format!(
                        "CRC32C read {read_crc:08x}, stored {arrived_crc:08x}, source records {}",
                        expected_crc.map_or("none".to_string(), |c| format!("{c:08x}"))
                    ),
                });
            }
            Ok(Outcome::Copied(stored.size))
        }
        Err(e) if e.is_already_exists() => {
            if same_bytes(source, target, key).await? {
                Ok(Outcome::Present)
            } else {
                Err(CopyError::Conflict {
                    key: key.to_string(),
                    target: target.location().to_string(),
                })
            }
        }
        Err(e) => Err(CopyError::Storage {
            key: key.to_string(),
            source: e,
        }),
    }
}

/// Whether `key` holds the same bytes on both sides: by size and the CRC32C `head` returns
/// where both backends give one, else by reading both (streamed, bounded memory).
pub(crate) async fn same_bytes(
    source: &AnyStorage,
    target: &AnyStorage,
    key: &ObjectKey,
) -> Result<bool, CopyError> {
    let a = stored_checksum(source, key)
        .await
        .map_err(CopyError::source(key))?;
    let b = stored_checksum(target, key)
        .await
        .map_err(CopyError::target(key))?;
    Ok(a == b)
}

/// Size and CRC32C of the stored bytes of `key`.
async fn stored_checksum(
    storage: &AnyStorage,
    key: &ObjectKey,
) -> Result<(u64, u32), crate::storage::StorageError> {
    if storage.capabilities().crc32c_in_head {
        let head = storage.head(key).await?;
        if let Some(crc) = head.crc32c {
            return Ok((head.size, crc));
        }
    }
    storage
        .retry_policy()
        .run(StorageOp::Get, key.as_str(), || async {
            let mut reader = CrcReader::new(storage.get(key).await?);
            let mut sink = tokio::io::sink();
            tokio::io::copy(&mut reader, &mut sink).await.map_err(|e| {
                crate::storage::StorageError::from_read_error(e, key, storage.location())
            })?;
            Ok((reader.size, reader.crc))
        })
        .await
}

/// Passes bytes through, counting them and their CRC32C.
struct CrcReader<R> {
    inner: R,
    size: u64,
    crc: u32,
}

impl<R> CrcReader<R> {
    fn new(inner: R) -> CrcReader<R> {
        CrcReader {
            inner,
            size: 0,
            crc: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CrcReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            self.crc = crate::crc::crc32c_append(self.crc, new);
            self.size += new.len() as u64;
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn crc_reader_counts_what_passes() {
        let data = vec![7u8; 100_000];
        let mut reader = CrcReader::new(&data[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(reader.size, 100_000);
        assert_eq!(reader.crc, crate::crc::crc32c(&data));
    }
}
