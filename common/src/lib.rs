//! walship-common: the library every walship command stands on.
//!
//! - [`catalog`]: base backups in the repository: ids and manifests.
//! - [`codec`]: the self-describing, checksummed, compressed object format of the repository.
//! - [`config`]: walship's configuration, merged from flags, environment and file.
//! - [`lsn`]: WAL positions.
//! - [`pg`]: PostgreSQL formats (timelines, WAL file names, history files, page headers).

#![deny(missing_docs)]

pub mod catalog;
pub mod codec;
pub mod config;
mod json;
pub mod lsn;
pub mod pg;

pub use lsn::Lsn;
