//! How many objects each data key protects, for `walship key list`: the repository is listed
//! page by page and only the first [`ENVELOPE_HEADER_LEN`] bytes of each object are read (the
//! envelope header names its data key, `docs/FORMAT.md`, "Envelope layout"), so the cost is one
//! small ranged read per object and the memory is one listing page plus a counter per data key,
//! whatever the repository's size. Nothing is decrypted: no key is needed to count.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

use crate::codec::is_envelope;
use crate::crypto::{DekId, ENVELOPE_HEADER_LEN, EnvelopeHeader};
use crate::storage::{LIST_PAGE, ObjectKey, ObjectMeta, Storage};

use super::encryption::KEYS_PREFIX;
use super::{RepoError, Repository, layout};

/// Header reads in flight at once.
const PARALLEL_READS: usize = 16;

/// What the objects of a repository are sealed with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DekUsage {
    /// Objects whose envelope header names each data key.
    pub by_dek: BTreeMap<DekId, u64>,
    /// Objects that are not encrypted, besides `walship.json` and the wrapped keys under
    /// `keys/` (which are never encrypted, and not counted): records written by a walship
    /// before audit records, pins and drill reports were sealed, or objects planted there.
    pub plain: u64,
    /// Objects that carry the encrypted flag but whose envelope header does not parse
    /// (truncated or damaged): `walship verify` names them.
    pub damaged: u64,
}

/// What one object's first bytes say.
enum Seen {
    Sealed(DekId),
    Plain,
    Damaged,
}

impl Repository {
    /// Counts, for every data key, the objects sealed with it, reading only each object's
    /// envelope header (see the module documentation). A storage failure is an error, never a
    /// smaller count.
    pub async fn dek_usage(&self) -> Result<DekUsage, RepoError> {
        let mut usage = DekUsage::default();
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = self
                .storage()
                .list_after("", after.as_ref(), LIST_PAGE)
                .await?;
            let done = page.len() < LIST_PAGE;
            after = page.last().map(|m| m.key.clone());
            let wanted = page.into_iter().filter(counted);
            let mut seen = futures::stream::iter(wanted)
                .map(|meta| self.first_bytes(meta))
                .buffer_unordered(PARALLEL_READS);
            while let Some(found) = seen.try_next().await? {
                match found {
                    Seen::Sealed(dek) => *usage.by_dek.entry(dek).or_default() += 1,
                    Seen::Plain => usage.plain += 1,
                    Seen::Damaged => usage.damaged += 1,
                }
            }
            if done {
                return Ok(usage);
            }
        }
    }

    /// Reads the envelope header of one object (a ranged read of its first bytes).
    async fn first_bytes(&self, meta: ObjectMeta) -> Result<Seen, RepoError> {
        let reader = match self
            .storage()
            .get_range(&meta.key, 0..ENVELOPE_HEADER_LEN as u64)
            .await
        {
            Ok(reader) => reader,
            // Removed since the listing (expire ran meanwhile): not there to count.
            Err(e) if e.is_not_found() => return Ok(Seen::Plain),
            Err(e) => return Err(e.into()),
        };
        let bytes = reader
            .read_all(ENVELOPE_HEADER_LEN as u64)
            .await
            .map_err(|e| {
                crate::storage::StorageError::from_read_error(e, &meta.key, self.location())
            })?;
        if !is_envelope(&bytes) {
            return Ok(Seen::Plain);
        }
        Ok(match EnvelopeHeader::read(&mut &bytes[..]) {
            Ok(header) => Seen::Sealed(*header.dek_id()),
            Err(_) => Seen::Damaged,
        })
    }
}

/// Objects that are never encrypted are not counted: `walship.json` and `keys/`.
fn counted(meta: &ObjectMeta) -> bool {
    let key = meta.key.as_ref();
    key != layout::identity_key().as_ref() && !key.starts_with(KEYS_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::crypto::Keyring;
    use crate::repo::RepoIdentity;
    use crate::storage::{AnyStorage, LocalStorage};
    use bytes::Bytes;

    #[tokio::test]
    async fn counts_objects_per_data_key_from_headers() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys");
        Keyring::init(&key_file).unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap());
        let repo = Repository::new(storage, Codec::Lz4).with_key_file(Some(key_file));
        repo.ensure_identity(&RepoIdentity::new(42, 15, 16 << 20))
            .await
            .unwrap();
        for tli in 2..5 {
            let key = ObjectKey::new(format!("wal/{tli:08X}.history")).unwrap();
            repo.put_content(&key, Bytes::from_static(b"1\t0/3000000\tx\n"), true)
                .await
                .unwrap();
        }
        let usage = repo.dek_usage().await.unwrap();
        assert_eq!(usage.by_dek.len(), 1, "{usage:?}");
        assert_eq!(usage.by_dek.values().sum::<u64>(), 3);
        assert_eq!((usage.plain, usage.damaged), (0, 0));

        // A truncated envelope is damaged; a plain object is plain.
        let root = dir.path().join("repo");
        let sealed = std::fs::read(root.join("wal/00000002.history")).unwrap();
        std::fs::write(root.join("wal/00000005.history"), &sealed[..40]).unwrap();
        let plain = crate::codec::encode_to_vec(b"plain", Codec::None).unwrap();
        std::fs::write(root.join("wal/00000006.history"), plain).unwrap();
        let usage = repo.dek_usage().await.unwrap();
        assert_eq!(usage.by_dek.values().sum::<u64>(), 3);
        assert_eq!((usage.plain, usage.damaged), (1, 1));
    }
}
