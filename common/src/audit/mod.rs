//! The audit trail: one create-only record per operation, hash-chained, in the repository.
//!
//! Every backup, restore and drill (and, as they land, expire, verify, pin/unpin, copy and
//! key operations) appends an [`AuditRecord`] under
//! `audit/<YYYY>/<timestamp>-<host>-<operation>-<random>.json` (never overwritten, so the
//! trail works under Object Lock): plain JSON in a plain repository, sealed like every object
//! in an encrypted one ([`crate::repo::Repository::put_record`]). Each record holds the
//! sha256 of the record before it (of its JSON, before any codec or encryption; by key
//! order, which is time order) and that record's key: [`verify`] names a record that was
//! removed or altered. In an encrypted repository the envelope also authenticates each
//! record under its own key, so an altered, renamed or swapped record does not even open.
//! What a hash chain cannot show without an outside anchor: the removal of the newest
//! records.
//!
//! - [`record`]: the record, its key, [`AuditRecord::now`] (time, OS user, host, version).
//! - [`args`]: the command line with secrets removed (passwords in connection strings,
//!   URL userinfo, values of secret-named flags).
//! - [`append`] and [`list`]; [`verify`] checks the chain.

pub mod args;
mod chain;
pub mod record;

pub use chain::{AuditProblem, ListedRecord, append, list, newest_success, verify};
pub use record::{AUDIT_PREFIX, AuditRecord};
