//! Fixtures shared by the storage tests: a fresh repository per test, local or on a real
//! SeaweedFS started by the test harness.

#![allow(dead_code)] // each test file uses a different subset

use bytes::Bytes;
use pg_test_harness::{S3Server, s3_under_test};
use walship_common::storage::{
    AnyStorage, LocalStorage, ObjectKey, RetryPolicy, S3Credentials, S3Options,
};

pub fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// A body source that fails: what a crashed producer looks like to `put_stream`.
pub struct BrokenReader;

impl tokio::io::AsyncRead for BrokenReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("producer crashed")))
    }
}

/// A repository for one test, with whatever keeps it alive.
pub struct Repo {
    pub storage: AnyStorage,
    /// The S3 server, for tests that stop it.
    pub server: Option<S3Server>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh local repository (its directory does not exist yet: the first put creates it).
pub async fn local_repo() -> Option<Repo> {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnyStorage::from(LocalStorage::new(dir.path().join("repo")).unwrap());
    Some(Repo {
        storage,
        server: None,
        _dir: Some(dir),
    })
}

/// Options that reach `server` with its credentials, and short timeouts and retries so
/// that failure tests finish quickly.
pub fn s3_options(server: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint.clone()),
        region: Some(server.region.clone()),
        credentials: Some(S3Credentials {
            access_key_id: server.access_key.clone(),
            secret_access_key: server.secret_key.clone(),
            session_token: None,
        }),
        // As patient as the product's default in attempts (a SeaweedFS sharing two busy
        // cores with the whole suite once answered three HEADs in a row with HTTP 500), with
        // shorter backoffs so that the tests of failures stay quick.
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: std::time::Duration::from_millis(100),
            max_delay: std::time::Duration::from_secs(1),
            deadline: None,
            not_after: None,
        },
        ..S3Options::default()
    }
}

/// A fresh repository on a new SeaweedFS, under a prefix (so that the prefix handling is
/// exercised too); `None` after a loud SKIP when SeaweedFS is not installed (a panic
/// under CI=true).
pub async fn s3_repo() -> Option<Repo> {
    s3_repo_with(|_| {}).await
}

/// Like [`s3_repo`], with options adjusted by `adjust`.
pub async fn s3_repo_with(adjust: impl FnOnce(&mut S3Options)) -> Option<Repo> {
    let server = tokio::task::spawn_blocking(s3_under_test).await.unwrap()?;
    let mut opts = s3_options(&server);
    adjust(&mut opts);
    let url = format!("s3://{}/repo/prefix", server.bucket);
    let storage = AnyStorage::open(&url, &opts).await.unwrap();
    Some(Repo {
        storage,
        server: Some(server),
        _dir: None,
    })
}
