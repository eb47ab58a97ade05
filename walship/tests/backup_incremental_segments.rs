//! An incremental chain over a relation larger than one 1 GiB segment file, on real
//! PostgreSQL 17 and 18 with a local repository: the full holds a table just under 1 GiB;
//! before the first incremental it grows past 1 GiB (a second segment file `<relfile>.1`
//! appears: sent whole, while segment 0 is sent as `INCREMENTAL.<relfile>`); before the
//! second incremental its tail is deleted and `VACUUM` truncates `<relfile>.1` (sent as
//! `INCREMENTAL.<relfile>.1` whose truncation length is below the parent's size). The chain
//! restored to the second incremental has both segment files at the server's sizes, checks
//! against its `backup_manifest`, and holds the recorded rows at the recorded places (`ctid`).
//!
//! Kept cheap: `fillfactor = 10` and rows of 420 bytes put one row on each 8 kB page, so 1 GiB
//! of relation costs about 65 MB of WAL; the table is vacuumed in the checkpoint cycle that
//! wrote it, so later scans and vacuums log no full-page images. Page checksums (the harness's
//! clusters have them) are checked by a sequential scan of the whole restored table: Postgres
//! verifies each page it reads from disk, and its `checksum_failures` stays 0.

mod restore_support;
mod support;

use std::path::Path;

use restore_support::verify::verify_restored;
use restore_support::{restore, start_restored};
use support::TestRepo;
use support::describe;
use support::incremental::{backup_ok, cluster, install};

/// Blocks in one relation segment file (1 GiB of 8 kB blocks).
const SEGMENT_BLOCKS: u64 = 131_072;
/// Rows (one per block) in the table when the full is taken.
const FULL_ROWS: i64 = 120_000;
/// Rows after the first workload: past the first segment.
const GROWN_ROWS: i64 = 133_000;
/// Rows deleted at the tail before the second incremental (at least 1000 blocks, so that
/// `VACUUM` truncates).
const TAIL_DELETED: i64 = 1_500;

#[test]
fn chain_over_a_relation_past_1_gib_restores_on_17_and_18() {
    for major in [17, 18] {
        let Some(install) = install(major) else {
            continue;
        };
        let repo = TestRepo::local();
        let pg = cluster(&install, &repo, true);
        pg.execute(
            "create table big (id bigint, v text) with (fillfactor = 10, autovacuum_enabled = off)",
        );
        fill(&pg, 1, FULL_ROWS);
        pg.execute("checkpoint");
        let relfile = pg.query_string("select pg_relation_filepath('big')");
        let full = backup_ok(&pg, &repo, &[]);

        // Workload 1: the table grows past 1 GiB; some rows of segment 0 change.
        fill(&pg, FULL_ROWS + 1, GROWN_ROWS);
        pg.execute("update big set v = upper(v) where id % 1200 = 0");
        let second = pg.data_dir().join(format!("{relfile}.1"));
        assert!(
            second.exists(),
            "PG{major}: the table has a second segment file {}",
            second.display()
        );
        let i1 = backup_ok(&pg, &repo, &["--incremental"]);
        assert_eq!(i1["parent"], full["id"], "PG{major}: {i1}");
        let (dir_of, name) = relfile.rsplit_once('/').unwrap();
        let i1_files = stored_files(&repo, &i1);
        for want in [
            format!("{dir_of}/INCREMENTAL.{name}"),
            format!("{dir_of}/{name}.1"),
        ] {
            assert!(
                i1_files.contains(&want),
                "PG{major}: the first incremental holds {want}"
            );
        }

        // Workload 2: the tail is deleted and VACUUM truncates the second segment; rows in
        // both segments change.
        let before = relation_blocks(&pg);
        pg.execute(&format!(
            "delete from big where id > {}",
            GROWN_ROWS - TAIL_DELETED
        ));
        pg.execute(
            "update big set v = lower(v) where id % 1200 = 0 or (id > 131100 and id % 50 = 0)",
        );
        pg.execute("vacuum big");
        let after = relation_blocks(&pg);
        assert!(
            after + 1000 <= before && after > SEGMENT_BLOCKS,
            "PG{major}: VACUUM truncated the second segment ({before} blocks, then {after})"
        );
        let sizes = segment_sizes(pg.data_dir(), &relfile);
        let want_rows = rows(&pg);
        let i2 = backup_ok(&pg, &repo, &["--incremental"]);
        assert_eq!(i2["parent"], i1["id"], "PG{major}: {i2}");
        assert_eq!(i2["chain_depth"], 2, "PG{major}: {i2}");
        let want = format!("{dir_of}/INCREMENTAL.{name}.1");
        assert!(
            stored_files(&repo, &i2).contains(&want),
            "PG{major}: the second incremental holds {want}"
        );
        drop(pg);

        let dir = pg_test_harness::test_dir("incr-segments");
        let to = dir.path().join("data");
        let i2_id = i2["id"].as_str().unwrap();
        let out = restore(&repo, &to, &["--backup", i2_id, "--target", "immediate"]);
        assert!(
            out.status.success(),
            "PG{major}: restore: {}",
            describe(&out)
        );
        assert_eq!(
            segment_sizes(&to, &relfile),
            sizes,
            "PG{major}: the restored segment files of {relfile} have the server's sizes"
        );
        verify_restored(&install, &to, false);
        let mut restored = start_restored(&install, &to);
        assert_eq!(
            rows(&restored),
            want_rows,
            "PG{major}: rows after the chain restore"
        );
        let failures = restored
            .query_string("select coalesce(sum(checksum_failures), 0)::text from pg_stat_database");
        assert_eq!(failures, "0", "PG{major}: page checksum failures");
        restored.stop(pg_test_harness::StopMode::Fast);
        eprintln!("PG{major}: chain over a 2-segment relation restored, rows equal");
    }
}

/// Inserts rows `from..=to`, one per block, and sets their hint bits and visibility in the
/// same checkpoint cycle (no full-page images later).
fn fill(pg: &pg_test_harness::Cluster, from: i64, to: i64) {
    pg.execute(&format!(
        "insert into big select g, repeat(md5(g::text), 13) from generate_series({from}, {to}) g"
    ));
    pg.execute("vacuum big");
}

fn relation_blocks(pg: &pg_test_harness::Cluster) -> u64 {
    pg.query_string("select (pg_relation_size('big') / 8192)::text")
        .parse()
        .unwrap()
}

/// The sizes of the main fork's segment files `<relfile>`, `<relfile>.1`, ...
fn segment_sizes(data: &Path, relfile: &str) -> Vec<u64> {
    let mut sizes = Vec::new();
    for n in 0.. {
        let name = if n == 0 {
            relfile.to_string()
        } else {
            format!("{relfile}.{n}")
        };
        match std::fs::metadata(data.join(name)) {
            Ok(m) => sizes.push(m.len()),
            Err(_) => break,
        }
    }
    sizes
}

/// The paths of the files stored in `backup` (`walship info --json`).
fn stored_files(repo: &TestRepo, backup: &serde_json::Value) -> Vec<String> {
    let out = repo.walship(&["info", backup["id"].as_str().unwrap(), "--json"]);
    assert!(out.status.success(), "info: {}", describe(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

/// What the test compares: the row count, and a digest of every row with its place.
fn rows(pg: &pg_test_harness::Cluster) -> Vec<Vec<Option<String>>> {
    pg.query_rows(
        "select count(*)::text, \
                md5(string_agg(ctid::text || ':' || id::text || ':' || md5(v), ',' order by id)) \
         from big",
    )
}
