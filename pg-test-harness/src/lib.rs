//! Throwaway PostgreSQL clusters of every installed major version and a real S3 server
//! (SeaweedFS) on loopback, for walship's integration tests, benchmarks and demo.
//!
//! Brief overview:
//! - [`installs`] / [`installs_under_test`] find one [`PgInstall`] per major (Debian's
//!   `/usr/lib/postgresql/<v>/bin`, `PG_BIN_DIRS`, and the npm builds cached by
//!   `scripts/setup-test-deps`); [`client_tool`] locates the Debian 15 referee tools.
//! - [`Cluster`] is an initdb'd, started server on 127.0.0.1 and a free port, run as the
//!   `postgres` OS user when the tests run as root, removed on drop.
//! - [`S3Server`] is SeaweedFS `weed mini` bound to loopback with a fresh bucket;
//!   [`s3_under_test`] skips (or fails under `CI=true`) when it is not installed.
//! - [`test_dir`] makes a directory the cluster user can write (archives, restores).
//! - [`bench`] is the skeleton of the `bench` binary.
//!
//! ```no_run
//! use pg_test_harness::{Cluster, StopMode, installs_under_test};
//!
//! for install in installs_under_test() {
//!     let mut pg = Cluster::builder(&install).setting("wal_level", "replica").start();
//!     pg.execute("create table t(x int); insert into t values (1)");
//!     pg.stop(StopMode::Immediate);
//!     pg.start();
//!     assert_eq!(pg.query_string("select count(*) from t"), "1");
//! }
//! ```

#![deny(missing_docs)]

pub mod bench;
pub mod ci;
mod cluster;
mod install;
mod os_user;
pub mod ports;
pub mod s3;

pub use cluster::{Cluster, ClusterBuilder, StopMode};
pub use install::{
    CLIENT_TOOLS_MAJOR, DEFAULT_TEST_DEPS_DIR, MAJORS_UNDER_TEST, PgInstall, client_tool, installs,
    installs_under_test, parse_major, test_deps_dir,
};
pub use os_user::{CLUSTER_OS_USER, Owner, chown_to_owner_recursive, cluster_owner, test_dir};
pub use s3::{S3Server, s3_https_under_test, s3_under_test};
