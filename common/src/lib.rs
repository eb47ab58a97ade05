//! walship-common: the library every walship command stands on.
//!
//! - [`audit`]: the audit trail: create-only, hash-chained records of every operation.
//! - [`archive`]: `walship archive`: checking and storing the files Postgres archives.
//! - [`backup`]: `walship backup`: base backups streamed into bundles, the manifest, listing.
//! - [`check`]: `walship check`: settings, repository, and a WAL switch archived end to end.
//! - [`catalog`]: base backups in the repository: ids and manifests.
//! - [`codec`]: the self-describing, checksummed, compressed object format of the repository.
//! - [`config`]: walship's configuration, merged from flags, environment and file.
//! - [`fetch`]: `walship fetch`: delivering verified files to Postgres, with prefetch.
//! - [`fsutil`]: crash-safe file writes (temp file, fsync, rename, fsync directory).
//! - [`lsn`]: WAL positions.
//! - [`metrics`]: repository metrics for Prometheus (exporter, text files).
//! - [`pg`]: PostgreSQL formats (timelines, WAL file names, history files, page headers).
//! - [`pgconn`]: the replication-protocol client (connection settings, auth, TLS, commands, COPY).
//! - [`redact`]: hiding secrets (URL userinfo) in everything walship prints.
//! - [`repo`]: the repository: identity, layout, encoded objects.
//! - [`retention`]: `walship expire` and pins: the retention policy, its engine, removal.
//! - [`storage`]: the `Storage` trait and its backends (S3, local directory, fault injection).
//! - [`verify`]: `walship verify`: every object decoded and checked, WAL continuity, freshness.

#![deny(missing_docs)]

pub mod archive;
pub mod audit;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod codec;
pub mod config;
pub mod copy;
pub mod crc;
pub mod crypto;
pub mod fetch;
pub mod fsutil;
mod json;
pub mod lsn;
pub mod metrics;
pub mod pg;
pub mod pgconn;
pub mod redact;
pub mod repo;
pub mod retention;
pub mod storage;
pub mod stream;
mod task;
pub mod verify;

pub use lsn::Lsn;
