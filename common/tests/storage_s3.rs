//! What only a network backend can do wrong, against SeaweedFS or a fake server on
//! loopback: be unreachable (closed port), never answer, stall mid-body, stop and come
//! back; and what failed multipart uploads leave behind (nothing).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use walship_common::storage::{
    AnyStorage, PutOptions, RetryPolicy, S3Credentials, S3Options, Storage, StorageError,
};

use support::{BrokenReader, key, pattern, s3_options, s3_repo, s3_repo_with};

fn quick(endpoint: String) -> S3Options {
    S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        // Explicit credentials: the SDK must not go looking for instance metadata.
        credentials: Some(S3Credentials {
            access_key_id: "walship-test".into(),
            secret_access_key: "walship-test-secret".into(),
            session_token: None,
        }),
        connect_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            deadline: None,
            not_after: None,
        },
        ..S3Options::default()
    }
}

fn assert_unreachable(err: &StorageError, endpoint: &str) {
    eprintln!("expected failure: {err}");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(endpoint),
        "error does not name the endpoint: {text}"
    );
    assert!(
        text.contains("wal/x"),
        "error does not name the key: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_fails_fast_naming_the_endpoint() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let storage = AnyStorage::open("s3://walship-test/p", &quick(endpoint.clone()))
        .await
        .unwrap();
    let started = Instant::now();
    let err = storage.get(&key("wal/x")).await.unwrap_err();
    assert_unreachable(&err, &endpoint);
    let err = storage
        .put(
            &key("wal/x"),
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert_unreachable(&err, &endpoint);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_instead_of_hanging() {
    // Accepts connections (the kernel does) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let storage = AnyStorage::open("s3://walship-test", &quick(endpoint.clone()))
        .await
        .unwrap();
    let started = Instant::now();
    let err = storage.head(&key("wal/x")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, StorageError::Timeout { .. }), "{err}");
    assert_unreachable(&err, &endpoint);
    // 3 attempts of at most 2 s each, plus backoff.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    drop(listener);
}

/// Answers every request with headers promising 1000 bytes, sends 10, then stalls.
fn stalling_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n0123456789",
                );
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_download_fails_instead_of_hanging() {
    let endpoint = format!("http://{}", stalling_server());
    let mut opts = quick(endpoint.clone());
    opts.operation_timeout = Duration::from_secs(30); // the stall guard must act, not this
    let storage = AnyStorage::open("s3://walship-test", &opts).await.unwrap();
    let k = key("wal/x");
    let started = Instant::now();
    let mut reader = storage.get(&k).await.unwrap();
    let mut buf = Vec::new();
    let err = reader.read_to_end(&mut buf).await.unwrap_err();
    let err = StorageError::from_read_error(err, &k, storage.location());
    eprintln!("expected failure: {err}");
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&endpoint), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // get_bytes retries the whole download, and still ends.
    let err = storage.get_bytes(&k, u64::MAX).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_a_retryable_failure_not_missing() {
    let Some(mut repo) = s3_repo().await else {
        return;
    };
    let k = key("wal/x");
    repo.storage
        .put(&k, Bytes::from_static(b"segment"), PutOptions::default())
        .await
        .unwrap();
    let mut server = repo.server.take().unwrap();
    let endpoint = server.endpoint.clone();
    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let started = Instant::now();
    for err in [
        repo.storage.get(&k).await.unwrap_err(),
        repo.storage.head(&k).await.unwrap_err(),
        repo.storage.get_bytes(&k, u64::MAX).await.unwrap_err(),
    ] {
        assert_unreachable(&err, &endpoint);
    }
    assert!(repo.storage.list("wal/").await.unwrap_err().is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Back on the same port and data: the same storage works again.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    assert_eq!(
        repo.storage.get_bytes(&k, u64::MAX).await.unwrap(),
        &b"segment"[..]
    );
    drop(server);
}

/// Multipart uploads that fail (broken body, lost race) are aborted: no parts linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_multipart_uploads_are_aborted() {
    let Some(repo) = s3_repo().await else { return };
    let s = &repo.storage;
    let body = pattern(20 << 20, 10);
    let k = key("backups/b/bundle");
    s.put_stream(&k, (&body[..]).chain(BrokenReader), PutOptions::default())
        .await
        .unwrap_err();
    let (a, b) = tokio::join!(
        s.put_stream(&k, &body[..], PutOptions::if_absent()),
        s.put_stream(&k, &body[..], PutOptions::if_absent()),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let server = repo.server.as_ref().unwrap();
    let uploads = server
        .http("GET", &format!("/{}?uploads", server.bucket), b"")
        .unwrap();
    assert_eq!(uploads.status, 200, "{}", uploads.body_text());
    assert!(
        !uploads.body_text().contains("<Upload>"),
        "multipart uploads left behind: {}",
        uploads.body_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_from_the_harness_reach_the_bucket() {
    let Some(repo) = s3_repo().await else { return };
    let server = repo.server.as_ref().unwrap();
    // A second client on the same bucket without a prefix sees the first one's key
    // under the prefix.
    let opts = s3_options(server);
    let root = AnyStorage::open(&format!("s3://{}", server.bucket), &opts)
        .await
        .unwrap();
    repo.storage
        .put(&key("a"), Bytes::from_static(b"1"), PutOptions::default())
        .await
        .unwrap();
    let listed = root.list("").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(names, ["repo/prefix/a"]);
    assert!(root.location().contains(&server.endpoint));
}

/// For servers without conditional writes: `if_absent` still refuses an existing key
/// (check-then-put), and the capability says the guard is not atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_absent_without_conditional_writes_checks_first() {
    let Some(repo) = s3_repo_with(|o| o.conditional_create = false).await else {
        return;
    };
    let s = &repo.storage;
    assert!(!s.capabilities().conditional_create);
    let k = key("wal/00000002.history");
    s.put(&k, Bytes::from_static(b"first"), PutOptions::if_absent())
        .await
        .unwrap();
    let err = s
        .put(&k, Bytes::from_static(b"second"), PutOptions::if_absent())
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(s.get_bytes(&k, u64::MAX).await.unwrap(), &b"first"[..]);
}
