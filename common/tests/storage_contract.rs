//! The storage contract: one set of test bodies (`contract::*`), run against the local
//! backend (always) and against SeaweedFS (when the harness can start it), plus the
//! failure modes that only a network backend has (unreachable, hanging, stopped server).

mod support;

use support::{BrokenReader, key, pattern};

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use walship_common::storage::{AnyStorage, ObjectKey, PutOptions, Storage, StorageError};

async fn read_all(storage: &AnyStorage, k: &ObjectKey) -> Result<Bytes, StorageError> {
    let mut reader = storage.get(k).await?;
    let mut buf = Vec::new();
    reader
        .read_to_end(&mut buf)
        .await
        .map_err(|e| StorageError::from_read_error(e, k, storage.location()))?;
    Ok(Bytes::from(buf))
}

/// The test bodies, written once. Each takes a fresh, empty repository.
mod contract {
    use super::*;

    pub async fn put_get_head_delete(s: &AnyStorage) {
        let k = key("dir/sub/object.bin");
        let body = pattern(100_000, 1);
        let crc = crc32c::crc32c(&body);
        let meta = s
            .put(&k, body.clone(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!((meta.size, meta.crc32c), (100_000, Some(crc)));

        assert_eq!(read_all(s, &k).await.unwrap(), body);
        assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), body);
        let head = s.head(&k).await.unwrap();
        assert_eq!(head.key, k);
        assert_eq!(head.size, 100_000);
        if s.capabilities().crc32c_in_head {
            assert_eq!(head.crc32c, Some(crc));
        }
        let mut range = s.get_range(&k, 10..20).await.unwrap();
        let mut part = Vec::new();
        range.read_to_end(&mut part).await.unwrap();
        assert_eq!(part, &body[10..20]);
        let mut tail = s.get_range(&k, 99_990..200_000).await.unwrap();
        let mut part = Vec::new();
        tail.read_to_end(&mut part).await.unwrap();
        assert_eq!(part, &body[99_990..]);

        // A plain put replaces.
        let second = pattern(10, 2);
        s.put(&k, second.clone(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), second);

        // Empty objects exist too.
        let empty = key("empty");
        s.put(&empty, Bytes::new(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.head(&empty).await.unwrap().size, 0);
        assert!(s.get_bytes(&empty, u64::MAX).await.unwrap().is_empty());

        s.delete(&k).await.unwrap();
        assert!(s.head(&k).await.unwrap_err().is_not_found());
        // Deleting what is not there succeeds.
        s.delete(&k).await.unwrap();
    }

    pub async fn not_found_is_an_answer_not_a_failure(s: &AnyStorage) {
        let missing = key("wal/0000000100000000/000000010000000000000001");
        let started = Instant::now();
        for err in [
            s.get(&missing).await.unwrap_err(),
            s.head(&missing).await.unwrap_err(),
            s.get_bytes(&missing, u64::MAX).await.unwrap_err(),
            s.get_range(&missing, 0..10).await.unwrap_err(),
        ] {
            assert!(err.is_not_found(), "{err}");
            assert!(err.is_permanent() && !err.is_retryable(), "{err}");
            assert!(err.to_string().contains(missing.as_str()), "{err}");
        }
        // Not found is final: no retries, no backoff.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(s.list("wal/").await.unwrap().is_empty());
    }

    pub async fn if_absent_never_overwrites(s: &AnyStorage) {
        let k = key("wal/00000002.history");
        let first = Bytes::from_static(b"1\t0/3000000\tno recovery target specified\n");
        s.put(&k, first.clone(), PutOptions::if_absent())
            .await
            .unwrap();
        let err = s
            .put(&k, Bytes::from_static(b"other"), PutOptions::if_absent())
            .await
            .unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        assert!(err.to_string().contains(k.as_str()), "{err}");
        assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), first);

        if s.capabilities().conditional_create {
            // Racing creators: exactly one wins, and its bytes are what is stored.
            let race = key("race/object");
            let results = futures::future::join_all((0..8u64).map(|i| {
                let race = race.clone();
                async move {
                    (
                        i,
                        s.put(&race, pattern(1000, i), PutOptions::if_absent())
                            .await,
                    )
                }
            }))
            .await;
            let winners: Vec<u64> = results
                .iter()
                .filter_map(|(i, r)| match r {
                    Ok(_) => Some(*i),
                    Err(e) => {
                        assert!(e.is_already_exists(), "{e}");
                        None
                    }
                })
                .collect();
            assert_eq!(winners.len(), 1, "{winners:?}");
            assert_eq!(
                s.get_bytes(&race, u64::MAX).await.unwrap(),
                pattern(1000, winners[0])
            );
        }
    }

    pub async fn checksum_mismatch_stores_nothing(s: &AnyStorage) {
        let k = key("corrupt");
        let body = pattern(5000, 3);
        let wrong = crc32c::crc32c(&body) ^ 1;
        let opts = PutOptions {
            if_absent: false,
            crc32c: Some(wrong),
            lock: None,
        };
        let err = s.put(&k, body.clone(), opts).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(s.head(&k).await.unwrap_err().is_not_found());
        let err = s.put_stream(&k, &body[..], opts).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(s.head(&k).await.unwrap_err().is_not_found());
        let right = PutOptions {
            if_absent: false,
            crc32c: Some(crc32c::crc32c(&body)),
            lock: None,
        };
        s.put(&k, body.clone(), right).await.unwrap();
    }

    pub async fn lists_more_than_a_thousand_keys_in_order(s: &AnyStorage) {
        const N: usize = 1050;
        let mut expected: Vec<String> = (0..N)
            .map(|i| format!("wal/{:016X}/{:024X}", i / 300, i))
            .collect();
        futures::stream::iter(expected.clone())
            .map(|name| async move {
                s.put(
                    &key(&name),
                    Bytes::from(name.clone()),
                    PutOptions::default(),
                )
                .await
            })
            .buffer_unordered(16)
            .for_each(|r| async {
                r.unwrap();
            })
            .await;
        s.put(
            &key("walship.json"),
            Bytes::from_static(b"{}"),
            PutOptions::default(),
        )
        .await
        .unwrap();
        s.put(
            &key("wal-other"),
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
        .unwrap();
        expected.sort();

        let listed = s.list("wal/").await.unwrap();
        let names: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(names, expected);
        assert!(listed.iter().all(|m| m.size == m.key.as_str().len() as u64));

        let all = s.list("").await.unwrap();
        assert_eq!(all.len(), N + 2);
        assert!(
            all.windows(2).all(|w| w[0].key < w[1].key),
            "not in key order"
        );
        // A string prefix, not a directory: also "wal-other" and "walship.json".
        assert_eq!(s.list("wal").await.unwrap().len(), N + 2);

        // A partial last segment is a plain string prefix.
        let partial = s
            .list("wal/0000000000000003/00000000000000000000040")
            .await
            .unwrap();
        let names: Vec<&str> = partial.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            names,
            expected
                .iter()
                .filter(|n| n.contains("/00000000000000000000040"))
                .map(String::as_str)
                .collect::<Vec<_>>()
        );

        // Pages that resume after a key.
        let after = key(&expected[499]);
        let page = s.list_after("wal/", Some(&after), 10).await.unwrap();
        let names: Vec<&str> = page.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            names,
            expected[500..510]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        let tail = s
            .list_after("wal/", Some(&key(&expected[N - 3])), 10)
            .await
            .unwrap();
        assert_eq!(tail.len(), 2);
        assert!(s.list("backups/").await.unwrap().is_empty());

        // Paging by hand through everything visits each key exactly once, whatever the
        // backend's listing order.
        let mut seen: Vec<ObjectKey> = Vec::new();
        loop {
            let page = s.list_after("", seen.last(), 97).await.unwrap();
            let done = page.len() < 97;
            seen.extend(page.into_iter().map(|m| m.key));
            if done {
                break;
            }
        }
        assert_eq!(seen.len(), N + 2);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), N + 2);
    }

    pub async fn large_objects_round_trip_byte_identical(s: &AnyStorage) {
        // 40 MiB: three parts of the default 16 MiB on S3.
        let body = pattern(40 << 20, 4);
        let crc = crc32c::crc32c(&body);
        let streamed = key("backups/20261120T140300Z/data/bundle-1");
        let meta = s
            .put_stream(&streamed, &body[..], PutOptions::if_absent())
            .await
            .unwrap();
        assert_eq!((meta.size, meta.crc32c), (body.len() as u64, Some(crc)));
        assert_eq!(read_all(s, &streamed).await.unwrap(), body);
        let head = s.head(&streamed).await.unwrap();
        assert_eq!(head.size, body.len() as u64);
        if s.capabilities().crc32c_in_head {
            assert_eq!(head.crc32c, Some(crc));
        }
        let err = s
            .put_stream(&streamed, &body[..1000], PutOptions::if_absent())
            .await
            .unwrap_err();
        assert!(err.is_already_exists(), "{err}");

        let in_memory = key("backups/20261120T140300Z/data/bundle-2");
        s.put(&in_memory, body.clone(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get_bytes(&in_memory, u64::MAX).await.unwrap(), body);

        if s.capabilities().conditional_create {
            // Two large creators racing for one key: exactly one wins, even though both
            // pass the early existence check and upload all their parts.
            let contested = key("backups/contested");
            let (a, b) = (pattern(20 << 20, 7), pattern(20 << 20, 8));
            let (ra, rb) = tokio::join!(
                s.put_stream(&contested, &a[..], PutOptions::if_absent()),
                s.put_stream(&contested, &b[..], PutOptions::if_absent()),
            );
            let stored = s.get_bytes(&contested, u64::MAX).await.unwrap();
            match (ra, rb) {
                (Ok(_), Err(e)) => {
                    assert!(e.is_already_exists(), "{e}");
                    assert!(stored == a);
                }
                (Err(e), Ok(_)) => {
                    assert!(e.is_already_exists(), "{e}");
                    assert!(stored == b);
                }
                (ra, rb) => panic!("expected one winner, got {ra:?} and {rb:?}"),
            }
        }

        // A stream that ends exactly at a part boundary.
        let exact = key("exact");
        let body = pattern(32 << 20, 5);
        s.put_stream(&exact, &body[..], PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get_bytes(&exact, u64::MAX).await.unwrap(), body);
    }

    pub async fn no_partial_object_is_visible_during_upload(s: &AnyStorage) {
        for (name, size) in [("small", 100_000usize), ("multipart", 20 << 20)] {
            let k = key(&format!("inflight/{name}"));
            let body = pattern(size, 6);
            let (mut writer, reader) = tokio::io::duplex(64 << 10);
            let upload = {
                let (s, k) = (s.clone(), k.clone());
                tokio::spawn(async move { s.put_stream(&k, reader, PutOptions::if_absent()).await })
            };
            use tokio::io::AsyncWriteExt;
            let chunk = size / 4 + 1;
            for (i, piece) in body.chunks(chunk).enumerate() {
                writer.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(
                    s.head(&k).await.unwrap_err().is_not_found(),
                    "{name}: visible after piece {i}"
                );
                assert!(
                    s.get(&k).await.unwrap_err().is_not_found(),
                    "{name}: readable after piece {i}"
                );
                assert!(
                    s.list("inflight/").await.unwrap().is_empty(),
                    "{name}: listed after piece {i}"
                );
            }
            drop(writer);
            let meta = upload.await.unwrap().unwrap();
            assert_eq!(meta.size, size as u64);
            assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), body);
            assert_eq!(s.list("inflight/").await.unwrap().len(), 1);
            s.delete(&k).await.unwrap();
        }
    }
}

mod contract_more {
    use super::*;

    /// A body that fails midway (after one whole part) stores nothing.
    pub async fn failed_streaming_upload_leaves_nothing(s: &AnyStorage) {
        let k = key("backups/b/broken");
        for len in [1000usize, 20 << 20] {
            let body = pattern(len, 9);
            let err = s
                .put_stream(&k, (&body[..]).chain(BrokenReader), PutOptions::if_absent())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("producer crashed"), "{err}");
            assert!(s.head(&k).await.unwrap_err().is_not_found());
            assert!(s.list("backups/").await.unwrap().is_empty());
        }
        // The key is still free.
        s.put(&k, Bytes::from_static(b"ok"), PutOptions::if_absent())
            .await
            .unwrap();
    }
}

/// Runs every contract body against one backend fixture.
macro_rules! contract_suite {
    ($module:ident, $fixture:path) => {
        mod $module {
            contract_suite!(@tests $fixture;
                put_get_head_delete,
                not_found_is_an_answer_not_a_failure,
                if_absent_never_overwrites,
                checksum_mismatch_stores_nothing,
                lists_more_than_a_thousand_keys_in_order,
                large_objects_round_trip_byte_identical,
                no_partial_object_is_visible_during_upload
            );
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_streaming_upload_leaves_nothing() {
                let Some(fixture) = $fixture().await else { return };
                super::contract_more::failed_streaming_upload_leaves_nothing(&fixture.storage).await;
            }
        }
    };
    (@tests $fixture:path; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $fixture().await else { return };
                super::contract::$name(&fixture.storage).await;
            }
        )+
    };
}

contract_suite!(local, crate::support::local_repo);
contract_suite!(seaweedfs, crate::support::s3_repo);

/// The listing contract with tiny pages: many more requests, same answers.
mod seaweedfs_small_pages {
    use crate::support::s3_repo_with;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_more_than_a_thousand_keys_in_order() {
        let Some(repo) = s3_repo_with(|o| o.list_page_size = 7).await else {
            return;
        };
        super::contract::lists_more_than_a_thousand_keys_in_order(&repo.storage).await;
    }
}
