//! `FaultyStorage`: wraps a real backend and fails on purpose, so that tests of commands
//! see what an unreliable S3 does to them.
//!
//! It fails the first `fail_first` attempts of each (operation, key) pair with a transient
//! error (the retry layer should ride over them when `fail_first` is below its attempt
//! count), or, for `get`, hands out a stream that breaks after `cut_get_after` bytes, or, for
//! `put` with `lose_put_reply`, stores the object and then fails as if the reply was lost,
//! or, with `race_put_with`, lets another writer store other bytes just before the put.
//! Wrap it back into an [`AnyStorage`] (`AnyStorage::from`) so that the code under test
//! holds the same type as in production, with the retry policy of the storage it wraps.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::key::ObjectKey;
use super::retry::RetryPolicy;
use super::stream::ObjectReader;
use super::{
    AnyStorage, Backend, Capabilities, ObjectMeta, Plain, PutOptions, Storage, StorageError,
    StorageOp,
};

/// Which faults to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail this many attempts of each (operation, key) before letting calls through.
    pub fail_first: u32,
    /// Operations to fail; empty means all.
    pub ops: Vec<StorageOp>,
    /// For `get`: instead of failing to open, the faulty attempts return a stream that
    /// fails after this many bytes (when the object is longer).
    pub cut_get_after: Option<u64>,
    /// For `put`: the faulty attempts store the object and then fail, as when the server's
    /// reply is lost; the retry then finds the object there (a race its own writer lost).
    pub lose_put_reply: bool,
    /// For `put`: the faulty attempts are raced by another writer that stores these bytes
    /// under the key just before the attempt goes through (so an `if_absent` put finds it).
    pub race_put_with: Option<Bytes>,
}

impl FaultPlan {
    /// Fails the first `n` attempts of every operation on every key.
    pub fn fail_first(n: u32) -> FaultPlan {
        FaultPlan {
            fail_first: n,
            ..FaultPlan::default()
        }
    }

    /// Restricts the faults to `ops`.
    pub fn only(mut self, ops: &[StorageOp]) -> FaultPlan {
        self.ops = ops.to_vec();
        self
    }

    /// Makes faulty `put` attempts store the object, then report a transient failure.
    pub fn lose_put_reply(mut self) -> FaultPlan {
        self.lose_put_reply = true;
        self
    }

    /// Makes another writer store `bytes` under the key just before each faulty `put`.
    pub fn race_put_with(mut self, bytes: Bytes) -> FaultPlan {
        self.race_put_with = Some(bytes);
        self
    }

    /// Makes faulty `get` attempts deliver `bytes` bytes and then break.
    pub fn cut_get_after(mut self, bytes: u64) -> FaultPlan {
        self.cut_get_after = Some(bytes);
        self
    }
}

/// A backend that injects the faults of a [`FaultPlan`] into a real backend.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Plain,
    retry: RetryPolicy,
    plan: FaultPlan,
    attempts: Mutex<HashMap<(StorageOp, String), u32>>,
}

impl FaultyStorage {
    /// Wraps `inner` (if it is itself faulty, its plan is replaced by `plan`).
    pub fn new(inner: AnyStorage, plan: FaultPlan) -> FaultyStorage {
        let retry = inner.retry_policy().clone();
        let inner = match inner.backend() {
            Backend::Plain(plain) => plain.clone(),
            Backend::Faulty(faulty) => faulty.inner.clone(),
        };
        FaultyStorage {
            inner,
            retry,
            plan,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// The retry policy of the wrapped storage.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The backend it wraps (Object Lock calls go to it directly: no faults are injected
    /// there).
    pub(crate) fn inner(&self) -> &Plain {
        &self.inner
    }

    /// How many attempts of `op` on `key` (a list prefix for `List`) were made so far.
    pub fn attempts(&self, op: StorageOp, key: &str) -> u32 {
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.get(&(op, key.to_owned())).copied().unwrap_or(0)
    }

    /// Counts an attempt; true when the plan says it must fail.
    fn is_faulty(&self, op: StorageOp, key: &str) -> bool {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let count = attempts.entry((op, key.to_owned())).or_insert(0);
        *count += 1;
        *count <= self.plan.fail_first && (self.plan.ops.is_empty() || self.plan.ops.contains(&op))
    }

    fn fault(&self, op: StorageOp, key: &str) -> StorageError {
        StorageError::Transient {
            op,
            key: key.to_owned(),
            endpoint: self.inner.location().to_owned(),
            message: format!(
                "injected fault (attempt {} of the {} that fail)",
                self.attempts(op, key),
                self.plan.fail_first
            ),
        }
    }

    fn check(&self, op: StorageOp, key: &str) -> Result<(), StorageError> {
        if self.is_faulty(op, key) {
            Err(self.fault(op, key))
        } else {
            Ok(())
        }
    }

    async fn open(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StorageError> {
        let faulty = self.is_faulty(StorageOp::Get, key.as_str());
        if faulty && self.plan.cut_get_after.is_none() {
            return Err(self.fault(StorageOp::Get, key.as_str()));
        }
        let reader = match range {
            Some(range) => self.inner.get_range(key, range).await?,
            None => self.inner.get(key).await?,
        };
        match self.plan.cut_get_after {
            Some(cut) if faulty && reader.size().is_none_or(|size| size > cut) => {
                let size = reader.size();
                let error = Some(self.fault(StorageOp::Get, key.as_str()));
                Ok(ObjectReader::new(
                    CutReader {
                        inner: reader,
                        remaining: cut,
                        error,
                    },
                    size,
                ))
            }
            _ => Ok(reader),
        }
    }
}

impl Storage for FaultyStorage {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn location(&self) -> &str {
        self.inner.location()
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        if !self.is_faulty(StorageOp::Put, key.as_str()) {
            return self.inner.put(key, body, opts).await;
        }
        if let Some(other) = &self.plan.race_put_with {
            self.inner
                .put(key, other.clone(), PutOptions::default())
                .await?;
            return self.inner.put(key, body, opts).await;
        }
        if self.plan.lose_put_reply {
            self.inner.put(key, body, opts).await?;
        }
        Err(self.fault(StorageOp::Put, key.as_str()))
    }

    async fn put_stream<R>(
        &self,
        key: &ObjectKey,
        body: R,
        opts: PutOptions,
    ) -> Result<ObjectMeta, StorageError>
    where
        R: AsyncRead + Send + Unpin,
    {
        if !self.is_faulty(StorageOp::Put, key.as_str()) {
            return self.inner.put_stream(key, body, opts).await;
        }
        if let Some(other) = &self.plan.race_put_with {
            self.inner
                .put(key, other.clone(), PutOptions::default())
                .await?;
            return self.inner.put_stream(key, body, opts).await;
        }
        if self.plan.lose_put_reply {
            self.inner.put_stream(key, body, opts).await?;
        }
        Err(self.fault(StorageOp::Put, key.as_str()))
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectReader, StorageError> {
        self.open(key, None).await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ObjectReader, StorageError> {
        self.open(key, Some(range)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.check(StorageOp::Head, key.as_str())?;
        self.inner.head(key).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        self.check(StorageOp::List, prefix)?;
        self.inner.list_after(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.check(StorageOp::Delete, key.as_str())?;
        self.inner.delete(key).await
    }
}

/// A reader that passes `remaining` bytes through, then fails with `error`.
struct CutReader {
    inner: ObjectReader,
    remaining: u64,
    error: Option<StorageError>,
}

impl AsyncRead for CutReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            let err = this.error.take().map_or_else(
                || io::Error::other("stream cut by FaultyStorage"),
                StorageError::into_io,
            );
            return Poll::Ready(Err(err));
        }
        let max = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut scratch = vec![0u8; max];
        let mut limited = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let filled = limited.filled();
        this.remaining -= filled.len() as u64;
        buf.put_slice(filled);
        Poll::Ready(Ok(()))
    }
}
