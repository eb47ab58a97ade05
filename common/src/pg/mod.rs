//! Everything that knows PostgreSQL's on-disk and on-wire formats lives here, under
//! Postgres's own names, each item citing the C source it mirrors. Nothing outside `pg`
//! parses Postgres bytes.

pub mod timeline;
