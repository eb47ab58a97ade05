//! `AnyStorage::as_of` against SeaweedFS: a bucket with Object Lock (so versioning) where
//! objects are overwritten and deleted after a time, read as it was at that time; every
//! write through the view refused; buckets without versions and local directories refused.

mod support;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pg_test_harness::{S3Server, s3_under_test};
use walship_common::storage::{AnyStorage, PutOptions, Storage, StorageError};

use support::{key, local_repo, s3_options};

/// A storage in a new Object Lock bucket of `server`, listing `page` versions per request.
async fn versioned(server: &S3Server, page: i32) -> AnyStorage {
    let bucket = server.create_object_lock_bucket().unwrap();
    let mut opts = s3_options(server);
    opts.list_page_size = page;
    AnyStorage::open(&format!("s3://{bucket}/repo"), &opts)
        .await
        .unwrap()
}

async fn put(storage: &AnyStorage, k: &str, body: &'static [u8]) {
    storage
        .put(&key(k), Bytes::from_static(body), PutOptions::default())
        .await
        .unwrap();
}

async fn read(storage: &AnyStorage, k: &str) -> Result<Bytes, StorageError> {
    storage.get_bytes(&key(k), 1 << 20).await
}

/// A time strictly between what was stored before it and what is stored after it, in the
/// whole seconds S3 records.
async fn a_second_boundary() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t
}

fn keys(listed: &[walship_common::storage::ObjectMeta]) -> Vec<(String, u64)> {
    listed.iter().map(|m| (m.key.to_string(), m.size)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_shows_each_key_as_it_was_and_writes_nothing() {
    let Some(server) = tokio::task::spawn_blocking(s3_under_test).await.unwrap() else {
        return;
    };
    let storage = versioned(&server, 1000).await;
    let before_anything = Utc::now() - chrono::Duration::seconds(2);
    put(&storage, "walship.json", b"identity").await;
    put(&storage, "wal/a", b"a-1").await;
    put(&storage, "wal/a.partial", b"a-partial").await;
    put(&storage, "wal/b", b"b-1").await;
    for body in [&b"m-1"[..], b"m-22", b"m-333", b"m-4444", b"m-55555"] {
        put(&storage, "wal/many", body).await;
    }
    put(&storage, "wal/c", b"c-1").await;
    let t = a_second_boundary().await;

    // The attack: overwrite, delete, add, as anyone with the credentials can.
    put(&storage, "walship.json", b"ransom note").await;
    put(&storage, "wal/a", b"a-2, encrypted by the attacker").await;
    for body in [&b"many overwritten"[..], b"and again"] {
        put(&storage, "wal/many", body).await;
    }
    let everything: Vec<_> = storage
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(storage.delete_many(&everything).await.unwrap().is_empty());
    put(&storage, "wal/d", b"d-after").await;
    assert_eq!(
        keys(&storage.list("").await.unwrap()),
        [("wal/d".to_string(), 7)],
        "the attack did not take"
    );

    let view = storage.clone().as_of(t).await.unwrap();
    assert!(view.location().contains("as of"), "{}", view.location());
    assert_eq!(
        keys(&view.list("wal/").await.unwrap()),
        [
            ("wal/a".to_string(), 3),
            ("wal/a.partial".to_string(), 9),
            ("wal/b".to_string(), 3),
            ("wal/c".to_string(), 3),
            ("wal/many".to_string(), 7),
        ]
    );
    // Page by page, one key at a time, the same keys.
    let mut paged = Vec::new();
    loop {
        let page = view.list_after("", paged.last(), 1).await.unwrap();
        let Some(meta) = page.into_iter().next() else {
            break;
        };
        paged.push(meta.key);
    }
    let paged: Vec<String> = paged.iter().map(ToString::to_string).collect();
    assert_eq!(
        paged,
        [
            "wal/a",
            "wal/a.partial",
            "wal/b",
            "wal/c",
            "wal/many",
            "walship.json"
        ]
    );

    // Read by a fresh view (nothing listed: each key resolved on its own) and by the one
    // that listed.
    let fresh = storage.clone().as_of(t).await.unwrap();
    for v in [&view, &fresh] {
        assert_eq!(read(v, "walship.json").await.unwrap(), &b"identity"[..]);
        assert_eq!(read(v, "wal/a").await.unwrap(), &b"a-1"[..]);
        assert_eq!(read(v, "wal/b").await.unwrap(), &b"b-1"[..]);
        assert_eq!(read(v, "wal/many").await.unwrap(), &b"m-55555"[..]);
        assert!(read(v, "wal/d").await.unwrap_err().is_not_found());
        assert!(read(v, "wal/nothing").await.unwrap_err().is_not_found());
        let head = v.head(&key("wal/a")).await.unwrap();
        assert_eq!(head.size, 3);
        assert_eq!(head.crc32c, Some(crc32c::crc32c(b"a-1")));
        let mut part = Vec::new();
        let mut reader = v.get_range(&key("wal/many"), 2..5).await.unwrap();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut part)
            .await
            .unwrap();
        assert_eq!(part, b"555");
    }

    // Nothing existed before the first put.
    let empty = storage.clone().as_of(before_anything).await.unwrap();
    assert!(empty.list("").await.unwrap().is_empty());
    assert!(
        read(&empty, "walship.json")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Every write through the view is refused before anything is sent, naming the view.
    let refused = [
        view.put(
            &key("wal/e"),
            Bytes::from_static(b"e"),
            PutOptions::if_absent(),
        )
        .await
        .unwrap_err(),
        view.put_stream(&key("wal/e"), &b"e"[..], PutOptions::default())
            .await
            .unwrap_err(),
        view.delete(&key("wal/a")).await.unwrap_err(),
        view.delete_many(&[key("wal/a")]).await.unwrap_err(),
    ];
    for err in refused {
        let text = err.to_string();
        assert!(
            matches!(err, StorageError::ReadOnly { .. }) && text.contains("read-only"),
            "{text}"
        );
        assert!(!err.is_retryable() && !err.is_not_found(), "{text}");
    }
    assert!(read(&storage, "wal/e").await.unwrap_err().is_not_found());
    assert_eq!(read(&fresh, "wal/a").await.unwrap(), &b"a-1"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_that_keeps_no_versions_is_refused() {
    let local = local_repo().await.unwrap();
    let err = local.storage.clone().as_of(Utc::now()).await.unwrap_err();
    assert!(matches!(err, StorageError::NoVersions { .. }), "{err}");
    assert!(err.to_string().contains("local directory"), "{err}");

    let Some(server) = tokio::task::spawn_blocking(s3_under_test).await.unwrap() else {
        return;
    };
    // The harness's own bucket never had versioning.
    let plain = AnyStorage::open(
        &format!("s3://{}/repo", server.bucket),
        &s3_options(&server),
    )
    .await
    .unwrap();
    let err = plain.clone().as_of(Utc::now()).await.unwrap_err();
    assert!(matches!(err, StorageError::NoVersions { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("versioning was never enabled") && text.contains(&server.bucket),
        "{text}"
    );
    // A view of a view is refused too.
    let versioned = versioned(&server, 1000).await;
    let view = versioned.as_of(Utc::now()).await.unwrap();
    assert!(view.as_of(Utc::now()).await.is_err());
}

/// Pages of 2 versions end inside one key's versions and between a key's versions and its
/// delete marker; the view still sees every key once, with the right version.
///
/// The keys are not prefixes of each other: SeaweedFS 4.48 drops versions at a page
/// boundary between `a` and `a.partial` when they have several versions or markers (seen
/// with boto3 as well), a server bug this test does not cover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_ending_inside_a_keys_versions_lose_nothing() {
    let Some(server) = tokio::task::spawn_blocking(s3_under_test).await.unwrap() else {
        return;
    };
    let storage = versioned(&server, 2).await;
    for k in ["k1", "k2", "k3", "k4"] {
        put(&storage, &format!("d/{k}"), b"old").await;
    }
    for body in [&b"m-1"[..], b"m-22", b"m-333", b"m-4444", b"m-55555"] {
        put(&storage, "d/k5", body).await;
    }
    put(&storage, "d/k6", b"old").await;
    let t = a_second_boundary().await;
    for k in ["k1", "k3", "k5"] {
        put(&storage, &format!("d/{k}"), b"overwritten").await;
        put(&storage, &format!("d/{k}"), b"overwritten again").await;
    }
    for k in ["k1", "k2", "k4", "k5", "k6"] {
        storage.delete(&key(&format!("d/{k}"))).await.unwrap();
    }
    put(&storage, "d/k0", b"new").await;
    put(&storage, "d/k7", b"new").await;

    let view = storage.as_of(t).await.unwrap();
    let listed = view.list("d/").await.unwrap();
    assert_eq!(
        keys(&listed),
        [
            ("d/k1".to_string(), 3),
            ("d/k2".to_string(), 3),
            ("d/k3".to_string(), 3),
            ("d/k4".to_string(), 3),
            ("d/k5".to_string(), 7),
            ("d/k6".to_string(), 3),
        ]
    );
    assert_eq!(read(&view, "d/k5").await.unwrap(), &b"m-55555"[..]);
    assert_eq!(read(&view, "d/k3").await.unwrap(), &b"old"[..]);
}
