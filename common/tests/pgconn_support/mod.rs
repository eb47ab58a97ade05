//! Shared helpers of the `pgconn_*` integration tests: a runtime, connection parameters for
//! a harness cluster, and WAL helpers.

#![allow(dead_code)]

use std::time::Duration;

use pg_test_harness::Cluster;
use walship_common::pgconn::{ConnParams, ReplicationClient};

/// A current-thread runtime: harness calls (which run their own runtime) stay outside it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Parameters for `cluster` over TCP plus `extra` settings, ignoring the process environment
/// (so a developer's PG* variables cannot change the test).
pub fn params(cluster: &Cluster, extra: &str) -> ConnParams {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres {extra}",
        cluster.port()
    );
    let mut p = ConnParams::parse_with_env(&conninfo, &|_| None).expect("test connection string");
    p.read_timeout = Duration::from_secs(60);
    p.passfile = Some("/nonexistent/pgpass".into());
    p
}

/// Connects or panics naming the server and the error.
pub async fn connect(params: &ConnParams) -> ReplicationClient {
    match ReplicationClient::connect(params).await {
        Ok(c) => c,
        Err(e) => panic!("connecting with {params:?}: {e}"),
    }
}
