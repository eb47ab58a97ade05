//! walship-common: the library every walship command stands on.
//!
//! - [`lsn`]: WAL positions.
//! - [`pg`]: PostgreSQL formats (timelines, WAL file names, history files, page headers).
//! - [`storage`]: object storage for repositories (S3, local directory), with retries.
//! - [`fsutil`]: crash-safe file writes (temp file, fsync, rename, fsync directory).

#![deny(missing_docs)]

pub mod fsutil;
pub mod lsn;
pub mod pg;
pub mod storage;

pub use lsn::Lsn;
