//! The repository's reads are bounded by what each kind of object may hold (issue 18, item
//! 12) and `walship.json` is checked before it is trusted (item 10): a hostile object fails
//! with a typed error naming its key, never by exhausting memory.

use std::io::Write;

use bytes::Bytes;
use walship_common::codec::{Codec, CodecError, ObjectWriter};
use walship_common::repo::{RepoError, Repository, layout, limits};
use walship_common::storage::{
    AnyStorage, LocalStorage, ObjectKey, PutOptions, Storage, StorageError,
};

fn repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap());
    (dir, Repository::new(storage, Codec::Lz4))
}

/// 64 MiB of zeros in a zstd frame without a content size: under 64 KiB stored.
fn bomb() -> Bytes {
    let mut stored = Vec::new();
    let mut writer = ObjectWriter::new(&mut stored, Codec::Zstd { level: 1 }).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        writer.write_all(&zeros).unwrap();
    }
    writer.finish().unwrap();
    Bytes::from(stored)
}

#[tokio::test]
async fn get_content_refuses_more_than_the_limit_naming_the_key() {
    let (_dir, repo) = repo();
    let key = ObjectKey::new("wal/0000000100000000/000000010000000000000003").unwrap();
    repo.storage()
        .put(&key, bomb(), PutOptions::default())
        .await
        .unwrap();
    let err = repo.get_content(&key, 16 << 20).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Corrupt {
                source: CodecError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(key.as_str()), "{err}");
    assert_eq!(
        repo.get_content(&key, 64 << 20).await.unwrap().len(),
        64 << 20
    );
}

#[tokio::test]
async fn stored_bytes_are_bounded_too() {
    let (_dir, repo) = repo();
    let key = ObjectKey::new("wal/00000002.history").unwrap();
    let big = Bytes::from(vec![1u8; (limits::stored_limit(1000) + 1) as usize]);
    repo.storage()
        .put(&key, big, PutOptions::default())
        .await
        .unwrap();
    let err = repo.get_content(&key, 1000).await.unwrap_err();
    assert!(
        matches!(&err, RepoError::Storage(StorageError::TooLarge { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(key.as_str()), "{err}");
}

#[tokio::test]
async fn walship_json_is_read_with_a_limit_and_its_version_checked() {
    let (_dir, repo) = repo();
    let key = layout::identity_key();
    let json = |version: u32| {
        format!(
            r#"{{"format_version":{version},"system_identifier":"1","pg_major":15,"wal_segment_size":16777216}}"#
        )
    };
    repo.storage()
        .put(&key, Bytes::from(json(2)), PutOptions::default())
        .await
        .unwrap();
    let err = repo.identity().await.unwrap_err();
    assert!(matches!(&err, RepoError::BadIdentity { .. }), "{err}");
    assert!(err.to_string().contains("format_version 2"), "{err}");

    let mut padded = json(1).into_bytes();
    padded.resize(limits::IDENTITY_MAX as usize + 1, b' ');
    repo.storage()
        .put(&key, Bytes::from(padded), PutOptions::default())
        .await
        .unwrap();
    let err = repo.identity().await.unwrap_err();
    assert!(
        err.to_string().contains("walship.json") && err.to_string().contains("larger than"),
        "{err}"
    );

    repo.storage()
        .put(&key, Bytes::from(json(1)), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(repo.identity().await.unwrap().unwrap().pg_major, 15);
}
