//! FaultyStorage and the retry layer together: transient faults below the attempt budget
//! are ridden over, faults above it surface as retryable errors, permanent answers are
//! never retried, and a stream cut midway is detected and recovered by `get_bytes`.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use walship_common::storage::{
    AnyStorage, FaultPlan, FaultyStorage, LocalStorage, ObjectKey, PutOptions, RetryPolicy,
    Storage, StorageError, StorageOp,
};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

fn local() -> (tempfile::TempDir, AnyStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap()).with_retry(
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            deadline: None,
            not_after: None,
        },
    );
    (dir, storage)
}

fn faulty(inner: &AnyStorage, plan: FaultPlan) -> (std::sync::Arc<FaultyStorage>, AnyStorage) {
    let wrapped = AnyStorage::from(FaultyStorage::new(inner.clone(), plan));
    (wrapped.faulty().unwrap(), wrapped)
}

#[tokio::test]
async fn transient_faults_within_the_budget_are_retried_away() {
    let (_dir, inner) = local();
    let (probe, s) = faulty(&inner, FaultPlan::fail_first(3));
    let k = key("wal/seg");
    s.put(&k, Bytes::from_static(b"data"), PutOptions::if_absent())
        .await
        .unwrap();
    assert_eq!(probe.attempts(StorageOp::Put, "wal/seg"), 4);
    assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), &b"data"[..]);
    assert_eq!(s.head(&k).await.unwrap().size, 4);
    assert_eq!(s.list("wal/").await.unwrap().len(), 1);
    s.delete(&k).await.unwrap();
    assert_eq!(probe.attempts(StorageOp::Delete, "wal/seg"), 4);
}

#[tokio::test]
async fn faults_beyond_the_budget_surface_as_retryable_errors() {
    let (_dir, inner) = local();
    let (probe, s) = faulty(&inner, FaultPlan::fail_first(10).only(&[StorageOp::Get]));
    let k = key("wal/seg");
    s.put(&k, Bytes::from_static(b"data"), PutOptions::default())
        .await
        .unwrap();
    let err = s.get(&k).await.unwrap_err();
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");
    assert!(err.to_string().contains("wal/seg"), "{err}");
    assert_eq!(probe.attempts(StorageOp::Get, "wal/seg"), 4);
    // Other operations are untouched by a plan restricted to get.
    assert_eq!(s.head(&k).await.unwrap().size, 4);
}

#[tokio::test]
async fn permanent_answers_are_not_retried() {
    let (_dir, inner) = local();
    let (probe, s) = faulty(&inner, FaultPlan::fail_first(1).only(&[StorageOp::Put]));
    let k = key("wal/seg");
    s.put(&k, Bytes::from_static(b"a"), PutOptions::if_absent())
        .await
        .unwrap();
    assert_eq!(probe.attempts(StorageOp::Put, "wal/seg"), 2);
    let err = s
        .put(&k, Bytes::from_static(b"b"), PutOptions::if_absent())
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(probe.attempts(StorageOp::Put, "wal/seg"), 3);
    let missing = key("wal/none");
    assert!(s.head(&missing).await.unwrap_err().is_not_found());
    assert_eq!(probe.attempts(StorageOp::Head, "wal/none"), 1);
}

#[tokio::test]
async fn streaming_puts_are_not_retried_by_the_caller_layer() {
    let (_dir, inner) = local();
    let (probe, s) = faulty(&inner, FaultPlan::fail_first(1));
    let k = key("backups/b/bundle");
    let err = s
        .put_stream(&k, &b"body"[..], PutOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(probe.attempts(StorageOp::Put, "backups/b/bundle"), 1);
    s.put_stream(&k, &b"body"[..], PutOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stream_cut_midway_is_an_error_and_get_bytes_recovers() {
    let (_dir, inner) = local();
    let (_probe, s) = faulty(
        &inner,
        FaultPlan::fail_first(2)
            .only(&[StorageOp::Get])
            .cut_get_after(1000),
    );
    let k = key("wal/seg");
    let body = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
    s.put(&k, body.clone(), PutOptions::default())
        .await
        .unwrap();

    // A raw reader breaks after 1000 bytes, with a retryable error.
    let mut reader = s.get(&k).await.unwrap();
    let mut buf = Vec::new();
    let err = reader.read_to_end(&mut buf).await.unwrap_err();
    assert_eq!(buf.len(), 1000);
    assert_eq!(&buf[..], &body[..1000]);
    let err = StorageError::from_read_error(err, &k, s.location());
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");

    // The second attempt is cut too; get_bytes retries the whole read and gets it all.
    assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), body);

    // Objects shorter than the cut are delivered whole.
    let (_probe, s) = faulty(&inner, FaultPlan::fail_first(1).cut_get_after(1 << 20));
    assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), body);
}
