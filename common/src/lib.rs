//! walship-common: the library every walship command stands on.
//!
//! - [`codec`]: the self-describing, checksummed, compressed object format of the repository.
//! - [`lsn`]: WAL positions.
//! - [`pg`]: PostgreSQL formats (timelines, WAL file names, history files, page headers).
//! - [`pgconn`]: the replication-protocol client (connection settings, auth, TLS, commands, COPY).

#![deny(missing_docs)]

pub mod codec;
pub mod lsn;
pub mod pg;
pub mod pgconn;

pub use lsn::Lsn;
