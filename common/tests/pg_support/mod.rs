//! Helpers shared by the tests that check `common::pg` against real servers
//! (`page_header_real.rs`, `wal_reader_real.rs`).

use pg_test_harness::Cluster;
use walship_common::Lsn;

/// The LSN `sql` returns on `pg` (a query selecting one `pg_lsn`); panics naming the query,
/// the answer and the major when it is not one.
pub fn lsn(pg: &Cluster, sql: &str) -> Lsn {
    let text = pg.query_string(sql);
    text.parse()
        .unwrap_or_else(|e| panic!("PG{}: `{sql}` gave {text:?}: {e}", pg.install().major))
}
