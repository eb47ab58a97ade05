//! walship-common: the library every walship command stands on.
//!
//! - [`lsn`]: WAL positions.
//! - [`pg`]: PostgreSQL formats (timelines, WAL file names, history files, page headers).

#![deny(missing_docs)]

pub mod lsn;
pub mod pg;

pub use lsn::Lsn;
