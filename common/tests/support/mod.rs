//! Fixtures shared by the storage tests: a fresh repository per test, local or on a real
//! SeaweedFS started by the test harness.

#![allow(dead_code)] // each test file uses a different subset

mod weed;

use walship_common::storage::{AnyStorage, LocalStorage, RetryPolicy, S3Credentials, S3Options};

pub use weed::{S3Server, s3_under_test};

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
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::from_millis(50),
            max_delay: std::time::Duration::from_millis(500),
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
