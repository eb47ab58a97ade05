//! Shared by the tests that craft repositories by hand (`plan_crafted.rs`,
//! `materialise_crafted.rs`): a local repository of one cluster in a temporary directory.

use walship_common::codec::Codec;
use walship_common::repo::{RepoIdentity, Repository};
use walship_common::storage::{AnyStorage, LocalStorage};

/// A `file://` repository under `<tempdir>/repo` with the `walship.json` of a Postgres 15
/// cluster of `system_id` and `segment_size`, storing lz4 objects. The directory lives as long
/// as the returned guard.
pub async fn local_repo(system_id: u64, segment_size: u32) -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap());
    let repo = Repository::new(storage, Codec::Lz4);
    repo.ensure_identity(&RepoIdentity::new(system_id, 15, segment_size))
        .await
        .unwrap();
    (dir, repo)
}
