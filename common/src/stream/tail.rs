//! The growing tail: `<segment>.partial` objects that `walship stream` writes, replaces and
//! removes, without ever touching a `.partial` someone else wrote.
//!
//! **The rule** (also in `docs/FORMAT.md`): a stream tail is the first N bytes of a segment,
//! N < segment size, exactly as received (not padded). The stream creates it create-only;
//! afterwards it replaces it only after checking that the object is still the one it wrote
//! (HEAD: stored size and crc32c where the backend reports them, otherwise the decoded
//! content's length and crc32c), and removes it the same way once the complete segment is
//! stored. A `.partial` it finds that it did not write is adopted only when it is shorter than
//! a segment (only a stream writes those: Postgres and pg_receivewal write full-size ones);
//! a full-size `.partial` (Postgres's own at promotion, stored by `walship archive`) is never
//! replaced or removed: the stream stops writing tails for that segment ([`TailOutcome::Foreign`]).
//! Because `walship archive` only ever creates, it can never overwrite a stream tail, and the
//! stream never overwrites anything but its own tail.

use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::repo::{Repository, layout, limits};
use crate::storage::{ObjectKey, PutOptions, Storage};
use crate::task::run_blocking;

use super::error::StreamError;
use super::segment::Tail;
use super::tail_codec::TailEncoder;

/// What [`TailStore::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailOutcome {
    /// The tail is stored (written now, or already there with these bytes or more).
    Stored,
    /// The segment's `.partial` belongs to someone else; nothing was written.
    Foreign,
}

/// What the stream wrote under a tail key, to recognise it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    name: WalFileName,
    raw_len: u64,
    raw_crc32c: u32,
    stored_len: u64,
    stored_crc32c: Option<u32>,
}

/// Writes tails under the rule above; remembers which tail objects are its own.
#[derive(Debug, Default)]
pub struct TailStore {
    own: Vec<Written>,
    foreign: Vec<WalFileName>,
    /// Encodes each tail from where the previous one of the segment ended.
    encoder: TailEncoder,
}

/// The key of a segment's `.partial` object.
pub fn tail_key(name: WalFileName) -> ObjectKey {
    layout::wal_key(&ArchiveFileName::Partial(name))
}

impl TailStore {
    /// Stores `tail` as `<segment>.partial`, following the rule.
    pub async fn store(
        &mut self,
        repo: &Repository,
        tail: &Tail,
    ) -> Result<TailOutcome, StreamError> {
        let name = tail.name;
        if self.foreign.contains(&name) {
            return Ok(TailOutcome::Foreign);
        }
        let key = tail_key(name);
        if let Some(own) = self.own_entry(name) {
            let checking = std::time::Instant::now();
            let ownership = self.still_own(repo, &key, own).await?;
            tracing::trace!("{key}: ownership checked in {:?}", checking.elapsed());
            match ownership {
                Ownership::Own => return self.replace(repo, &key, tail).await,
                Ownership::Gone => {}
                Ownership::Other => return Ok(self.mark_foreign(name, &key)),
            }
        }
        match self.put(repo, &key, tail, true).await {
            Ok(written) => {
                self.remember(written);
                Ok(TailOutcome::Stored)
            }
            Err(StreamError::Storage(e)) if e.is_already_exists() => {
                self.adopt_or_leave(repo, &key, tail).await
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the stream's own tail of `name` (its complete segment is stored, or a later
    /// timeline holds its WAL). Someone else's object is left alone.
    pub async fn release(
        &mut self,
        repo: &Repository,
        name: WalFileName,
    ) -> Result<(), StreamError> {
        let Some(own) = self.own_entry(name) else {
            return Ok(());
        };
        let key = tail_key(name);
        if self.still_own(repo, &key, own).await? == Ownership::Own {
            match repo.storage().delete(&key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.own.retain(|w| w.name != name);
        Ok(())
    }

    /// Takes the base `.partial` of `name` holding `content` (an earlier run's, which the
    /// stream adopted with its pieces) as the stream's own, so that [`TailStore::release`]
    /// removes it once the complete segment is stored (after checking it is unchanged).
    pub fn adopt_existing(&mut self, name: WalFileName, content: &[u8]) {
        self.remember(Written {
            name,
            raw_len: content.len() as u64,
            raw_crc32c: crate::crc::crc32c(content),
            stored_len: 0,
            stored_crc32c: None,
        });
    }

    /// The segments whose tails are currently the stream's own objects.
    pub fn own_tails(&self) -> Vec<WalFileName> {
        self.own.iter().map(|w| w.name).collect()
    }

    async fn adopt_or_leave(
        &mut self,
        repo: &Repository,
        key: &ObjectKey,
        tail: &Tail,
    ) -> Result<TailOutcome, StreamError> {
        let name = tail.name;
        let content = tail.content();
        let limit = name.seg_size().as_u64();
        let existing = match repo.get_content(key, limit).await {
            Ok(existing) => existing,
            // Removed meanwhile: create it on the next call.
            Err(e) if e.is_not_found() => return Ok(TailOutcome::Stored),
            Err(e @ crate::repo::RepoError::Corrupt { .. }) => {
                tracing::error!("{e}; leaving it alone and writing no tail for {name}");
                return Ok(self.mark_foreign(name, key));
            }
            Err(e) => return Err(e.into()),
        };
        if existing.len() as u64 >= name.seg_size().as_u64() {
            return Ok(self.mark_foreign(name, key));
        }
        if existing.len() >= content.len() && existing.starts_with(&content) {
            // An earlier run stored these bytes and more: nothing to write, and ours to replace.
            self.remember(Written {
                name,
                raw_len: existing.len() as u64,
                raw_crc32c: crate::crc::crc32c(&existing),
                stored_len: 0,
                stored_crc32c: None,
            });
            return Ok(TailOutcome::Stored);
        }
        tracing::info!("replacing the stream tail {key} an earlier walship stream left");
        self.replace(repo, key, tail).await
    }

    async fn replace(
        &mut self,
        repo: &Repository,
        key: &ObjectKey,
        tail: &Tail,
    ) -> Result<TailOutcome, StreamError> {
        let written = self.put(repo, key, tail, false).await?;
        self.remember(written);
        Ok(TailOutcome::Stored)
    }

    /// Encodes `tail` (only its new bytes are compressed) and stores it under `key`.
    async fn put(
        &mut self,
        repo: &Repository,
        key: &ObjectKey,
        tail: &Tail,
        if_absent: bool,
    ) -> Result<Written, StreamError> {
        let started = std::time::Instant::now();
        let mut encoder = std::mem::take(&mut self.encoder);
        let snapshot = tail.clone();
        let (encoder, encoded) = run_blocking(move || {
            let encoded = encoder.encode(&snapshot);
            (encoder, encoded)
        })
        .await;
        self.encoder = encoder;
        let encoding = started.elapsed();
        // Sealed when the repository is encrypted; ownership checks then use the sealed bytes.
        let sealed = repo.seal_stored(key, encoded.bytes).await?;
        let stored_crc32c = if repo.keys().is_some() {
            crate::crc::crc32c(&sealed)
        } else {
            encoded.stored_crc32c
        };
        let stored_len = sealed.len() as u64;
        let opts = PutOptions {
            if_absent,
            crc32c: Some(stored_crc32c),
            lock: repo.lock_for(key),
        };
        repo.storage().put(key, sealed, opts).await?;
        tracing::trace!(
            "{key}: {} bytes as {stored_len} (encoded in {encoding:?}, stored in {:?})",
            encoded.raw_len,
            started.elapsed() - encoding
        );
        Ok(Written {
            name: tail.name,
            raw_len: encoded.raw_len,
            raw_crc32c: encoded.raw_crc32c,
            stored_len,
            stored_crc32c: Some(stored_crc32c),
        })
    }

    async fn still_own(
        &self,
        repo: &Repository,
        key: &ObjectKey,
        own: Written,
    ) -> Result<Ownership, StreamError> {
        let meta = match repo.storage().head(key).await {
            Ok(meta) => meta,
            Err(e) if e.is_not_found() => return Ok(Ownership::Gone),
            Err(e) => return Err(e.into()),
        };
        if let (Some(found), Some(wrote)) = (meta.crc32c, own.stored_crc32c) {
            return Ok(if found == wrote && meta.size == own.stored_len {
                Ownership::Own
            } else {
                Ownership::Other
            });
        }
        if let Some(wrote) = own.stored_crc32c {
            if meta.size != own.stored_len {
                return Ok(Ownership::Other);
            }
            // No checksum from HEAD (a local directory): the stored bytes' crc32c, not the
            // decoded content's, so that the check costs one read, not a decompression.
            let limit = limits::stored_limit(own.name.seg_size().as_u64());
            return match repo.storage().get_bytes(key, limit).await {
                Ok(stored) if crate::crc::crc32c(&stored) == wrote => Ok(Ownership::Own),
                Ok(_) => Ok(Ownership::Other),
                Err(e) if e.is_not_found() => Ok(Ownership::Gone),
                Err(e) => Err(e.into()),
            };
        }
        match repo.get_content(key, own.name.seg_size().as_u64()).await {
            Ok(existing) => Ok(
                if existing.len() as u64 == own.raw_len
                    && crate::crc::crc32c(&existing) == own.raw_crc32c
                {
                    Ownership::Own
                } else {
                    Ownership::Other
                },
            ),
            Err(e) if e.is_not_found() => Ok(Ownership::Gone),
            Err(crate::repo::RepoError::Corrupt { .. }) => Ok(Ownership::Other),
            Err(e) => Err(e.into()),
        }
    }

    fn own_entry(&self, name: WalFileName) -> Option<Written> {
        self.own.iter().copied().find(|w| w.name == name)
    }

    fn remember(&mut self, written: Written) {
        self.own.retain(|w| w.name != written.name);
        self.own.push(written);
    }

    fn mark_foreign(&mut self, name: WalFileName, key: &ObjectKey) -> TailOutcome {
        tracing::warn!(
            "{key} was not written by this stream (a promotion's .partial?); leaving it alone and writing no tail for {name}"
        );
        self.own.retain(|w| w.name != name);
        self.foreign.push(name);
        TailOutcome::Foreign
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    Own,
    Gone,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::lsn::Lsn;
    use crate::pg::segment::WalSegSize;
    use crate::pg::timeline::TimelineId;
    use crate::storage::{AnyStorage, LocalStorage};
    use crate::stream::segment::SegmentAssembler;
    use bytes::Bytes;

    fn repo(dir: &std::path::Path) -> Repository {
        let storage = AnyStorage::from(LocalStorage::new(dir).unwrap());
        Repository::new(storage, Codec::Lz4)
    }

    fn tail_of(segno: u64, bytes: &[u8]) -> Tail {
        let size = WalSegSize::from_mib(1).unwrap();
        let start = Lsn(segno << 20);
        let mut asm = SegmentAssembler::new(TimelineId(1), start, size).unwrap();
        asm.push(start, Bytes::copy_from_slice(bytes)).unwrap();
        asm.tail()
    }

    #[tokio::test]
    async fn own_tails_grow_and_go_others_are_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let mut store = TailStore::default();

        // Created, then replaced by a longer one, then removed.
        let t = tail_of(3, &[1; 100]);
        assert_eq!(store.store(&repo, &t).await.unwrap(), TailOutcome::Stored);
        let t = tail_of(3, &[1; 300]);
        assert_eq!(store.store(&repo, &t).await.unwrap(), TailOutcome::Stored);
        let key = tail_key(t.name);
        assert_eq!(repo.get_content(&key, u64::MAX).await.unwrap().len(), 300);
        store.release(&repo, t.name).await.unwrap();
        assert!(!repo.exists(&key).await.unwrap());

        // A full-size .partial (Postgres's, at promotion) is someone else's.
        let t = tail_of(4, &[2; 100]);
        let key = tail_key(t.name);
        let theirs = Bytes::from(vec![7u8; 1 << 20]);
        repo.put_content(&key, theirs.clone(), true).await.unwrap();
        assert_eq!(store.store(&repo, &t).await.unwrap(), TailOutcome::Foreign);
        store.release(&repo, t.name).await.unwrap();
        assert_eq!(repo.get_content(&key, u64::MAX).await.unwrap(), theirs);

        // A shorter one an earlier run left is adopted and replaced.
        let t = tail_of(5, &[3; 500]);
        let key = tail_key(t.name);
        repo.put_content(&key, Bytes::from(vec![3u8; 200]), true)
            .await
            .unwrap();
        assert_eq!(store.store(&repo, &t).await.unwrap(), TailOutcome::Stored);
        assert_eq!(repo.get_content(&key, u64::MAX).await.unwrap().len(), 500);

        // Replaced behind the stream's back: the stream stops touching it.
        let other = Bytes::from(vec![9u8; 1 << 20]);
        repo.put_content(&key, other.clone(), false).await.unwrap();
        let t = tail_of(5, &[3; 800]);
        assert_eq!(store.store(&repo, &t).await.unwrap(), TailOutcome::Foreign);
        store.release(&repo, t.name).await.unwrap();
        assert_eq!(repo.get_content(&key, u64::MAX).await.unwrap(), other);
        assert!(store.own_tails().is_empty());
    }
}
