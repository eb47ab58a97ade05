//! `WalReader` on real WAL: on PG15 every record matches `pg_waldump` (Debian's pg_waldump 15
//! is the referee: position, link, length, xid, commit times, restore point names), records
//! spanning pages and segments included; on every major, commits are found with the xid and
//! the commit timestamp the server reports, and reading stops cleanly at the end of WAL or
//! at a corrupted record.

mod pg_support;

use std::process::Command;

use pg_support::lsn;
use pg_test_harness::{Cluster, PgInstall, client_tool, installs_under_test};
use walship_common::Lsn;
use walship_common::pg::page_header::XLOG_BLCKSZ;
use walship_common::pg::{
    EndReason, RecordKind, SegNo, TimelineId, WalFileName, WalReader, WalRecord, WalSegSize,
};

/// A cluster with two-phase commit and commit timestamps on, and WAL kept.
fn cluster(install: &PgInstall) -> Cluster {
    Cluster::builder(install)
        .setting("wal_keep_size", "'4GB'")
        .setting("max_prepared_transactions", "5")
        .setting("track_commit_timestamp", "on")
        .start()
}

/// What the workload did, to look for in the WAL.
struct Workload {
    committed: Vec<u32>,
    aborted: u32,
    prepared_commit: u32,
    prepared_abort: u32,
    restore_point: Lsn,
    end: Lsn,
}

/// Runs `sql_in_tx` in a transaction ended by `finish` (COMMIT, ROLLBACK or PREPARE
/// TRANSACTION); returns the transaction's xid.
fn xid_of(pg: &Cluster, sql_in_tx: &str, finish: &str) -> u32 {
    let mut client = pg.client();
    client.batch_execute("begin").unwrap();
    client.batch_execute(sql_in_tx).unwrap();
    let xid: String = client
        .query_one("select txid_current()::text", &[])
        .unwrap()
        .get(0);
    client.batch_execute(finish).unwrap();
    xid.parse().unwrap()
}

fn run_workload(pg: &Cluster) -> Workload {
    pg.execute("create table t(id int, payload text); checkpoint");
    let mut committed = Vec::new();
    for round in 0..4 {
        let insert = format!(
            "insert into t select g, repeat(md5(g::text), 10) from generate_series(1, 15000) g; update t set id = id + {round} where id % 7 = 0"
        );
        committed.push(xid_of(pg, &insert, "commit"));
    }
    let aborted = xid_of(pg, "insert into t values (-1, 'rolled back')", "rollback");
    let prepared_commit = xid_of(
        pg,
        "insert into t values (-2, 'prepared')",
        "prepare transaction 'walship-p1'",
    );
    pg.execute("commit prepared 'walship-p1'");
    let prepared_abort = xid_of(
        pg,
        "insert into t values (-3, 'prepared')",
        "prepare transaction 'walship-p2'",
    );
    pg.execute("rollback prepared 'walship-p2'");
    let restore_point = lsn(pg, "select pg_create_restore_point('walship-rp')");
    pg.query_string("select pg_switch_wal()");
    committed.push(xid_of(
        pg,
        "insert into t values (-4, 'after the switch')",
        "commit",
    ));
    let end = lsn(pg, "select pg_current_wal_flush_lsn()");
    Workload {
        committed,
        aborted,
        prepared_commit,
        prepared_abort,
        restore_point,
        end,
    }
}

/// Reads timeline 1 segments from `pg_wal`, optionally corrupting one byte.
fn loader(
    pg: &Cluster,
    size: WalSegSize,
    corrupt: Option<Lsn>,
) -> impl FnMut(SegNo) -> Result<Option<Vec<u8>>, std::io::Error> {
    let dir = pg.data_dir().join("pg_wal");
    move |segno| {
        let name = WalFileName::new(TimelineId(1), segno, size)
            .unwrap()
            .to_string();
        match std::fs::read(dir.join(name)) {
            Ok(mut bytes) => {
                if let Some(at) = corrupt.filter(|at| at.segno(size) == segno) {
                    bytes[at.segment_offset(size) as usize] ^= 0x55;
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn read_all(
    pg: &Cluster,
    start: Lsn,
    corrupt: Option<Lsn>,
) -> (Vec<WalRecord>, walship_common::pg::ReadEnd) {
    let size = WalSegSize::DEFAULT;
    let mut reader = WalReader::new(start, size, loader(pg, size, corrupt));
    let records: Vec<WalRecord> = reader.by_ref().map(|r| r.unwrap()).collect();
    let end = reader
        .end()
        .cloned()
        .expect("the reader says why it stopped");
    (records, end)
}

/// Checks the workload's transactions in the records, with the server's commit timestamps.
fn check_workload(pg: &Cluster, records: &[WalRecord], work: &Workload) {
    let major = pg.install().major;
    let find =
        |pred: &dyn Fn(&RecordKind) -> bool| records.iter().filter(|r| pred(&r.kind)).count();
    for &xid in &work.committed {
        let found: Vec<_> = records
            .iter()
            .filter_map(|r| match r.kind {
                RecordKind::Commit {
                    xid: x,
                    time,
                    prepared: false,
                } if x == xid => Some(time),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "PG{major}: commit of {xid}");
        let server: i64 = pg
            .query_string(&format!("select (extract(epoch from pg_xact_commit_timestamp('{xid}'::xid)) * 1000000)::bigint"))
            .parse()
            .unwrap();
        assert_eq!(
            found[0].unix_micros(),
            server,
            "PG{major}: commit time of {xid}"
        );
    }
    let aborted = work.aborted;
    assert_eq!(
        find(&|k| matches!(k, RecordKind::Abort { xid, prepared: false, .. } if *xid == aborted)),
        1,
        "PG{major}"
    );
    let pc = work.prepared_commit;
    assert_eq!(
        find(&|k| matches!(k, RecordKind::Commit { xid, prepared: true, .. } if *xid == pc)),
        1,
        "PG{major}"
    );
    let pa = work.prepared_abort;
    assert_eq!(
        find(&|k| matches!(k, RecordKind::Abort { xid, prepared: true, .. } if *xid == pa)),
        1,
        "PG{major}"
    );
    let rp: Vec<&WalRecord> = records
        .iter()
        .filter(
            |r| matches!(&r.kind, RecordKind::RestorePoint { name, .. } if name == "walship-rp"),
        )
        .collect();
    assert_eq!(rp.len(), 1, "PG{major}");
    assert!(
        rp[0].lsn < work.restore_point && work.restore_point <= rp[0].end.checked_add(7).unwrap(),
        "PG{major}"
    );
    assert!(
        records.iter().any(|r| r.kind == RecordKind::Switch),
        "PG{major}"
    );
    let block = u64::from(XLOG_BLCKSZ);
    assert!(
        records
            .iter()
            .any(|r| r.lsn.0 / block != (r.end.0 - 1) / block),
        "PG{major}: no record spans pages"
    );
    let size = WalSegSize::DEFAULT;
    assert!(
        records
            .iter()
            .any(|r| r.lsn.segno(size) != Lsn(r.end.0 - 1).segno(size)),
        "PG{major}: no record spans segments"
    );
    for pair in records.windows(2) {
        assert_eq!(pair[1].header.xl_prev, pair[0].lsn, "PG{major}");
    }
}

/// On every major: the workload's records are all found, and reading stops at the end.
#[test]
fn reads_every_major() {
    for install in installs_under_test() {
        let major = install.major;
        let pg = cluster(&install);
        let work = run_workload(&pg);
        let (records, end) = read_all(&pg, SegNo(1).start_lsn(WalSegSize::DEFAULT), None);
        check_workload(&pg, &records, &work);
        assert!(
            end.at >= work.end,
            "PG{major}: stopped at {end:?} before {}",
            work.end
        );
        eprintln!("PG{major}: {} records, end {end:?}", records.len());

        // A corrupted commit ends valid WAL right there, as recovery would.
        let victim = records
            .iter()
            .find(|r| {
                matches!(r.kind, RecordKind::Commit { .. })
                    && r.lsn.0 % u64::from(XLOG_BLCKSZ) + 40 < u64::from(XLOG_BLCKSZ)
            })
            .unwrap();
        let (before, end) = read_all(
            &pg,
            SegNo(1).start_lsn(WalSegSize::DEFAULT),
            Some(Lsn(victim.lsn.0 + 30)),
        );
        assert_eq!(
            before.last().unwrap().lsn,
            victim.header.xl_prev,
            "PG{major}"
        );
        assert_eq!(end.at, victim.lsn, "PG{major}");
        assert!(
            matches!(end.reason, EndReason::BadCrc { found, .. } if found == victim.header.xl_crc),
            "PG{major}: {end:?}"
        );
    }
}

/// One `pg_waldump` line: (rmgr, total length, xid, lsn, prev, desc).
type Dumped = (String, u32, u32, Lsn, Lsn, String);

fn parse_waldump_line(line: &str) -> Option<Dumped> {
    let after = |key: &str| line.split_once(key).map(|(_, rest)| rest.trim_start());
    let until_comma = |s: &str| s.split(',').next().unwrap_or_default().trim().to_string();
    let rmgr = after("rmgr:")?.split_whitespace().next()?.to_string();
    let tot = until_comma(after("len (rec/tot):")?.split('/').nth(1)?)
        .parse()
        .ok()?;
    let xid = until_comma(after("tx:")?).parse().ok()?;
    let at = until_comma(after("lsn:")?).parse().ok()?;
    let prev = until_comma(after("prev ")?).parse().ok()?;
    let desc = after("desc:")?.trim_end().to_string();
    Some((rmgr, tot, xid, at, prev, desc))
}

fn waldump(pg: &Cluster, start: Lsn, end: Lsn) -> Vec<Dumped> {
    let out = Command::new(client_tool("pg_waldump"))
        .env("TZ", "UTC")
        .arg("-p")
        .arg(pg.data_dir().join("pg_wal"))
        .args(["-t", "1", "-s", &start.to_string(), "-e", &end.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_waldump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| parse_waldump_line(l).unwrap_or_else(|| panic!("unparsed pg_waldump line {l:?}")))
        .collect()
}

/// The microseconds since the Unix epoch of pg_waldump's `YYYY-MM-DD HH:MM:SS.ffffff UTC`.
fn waldump_time(desc: &str) -> i64 {
    // "COMMIT <time> UTC; ...", "COMMIT_PREPARED <xid>: <time> UTC; ...", "ABORT <time> UTC".
    let mut text = desc.split_once(' ').unwrap().1;
    if let Some((head, rest)) = text.split_once(": ")
        && head.bytes().all(|b| b.is_ascii_digit())
    {
        text = rest;
    }
    let stamp = text.split(" UTC").next().unwrap();
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{desc:?}: {e}"))
        .and_utc()
        .timestamp_micros()
}

/// PG15: every record, in order, as pg_waldump 15 sees it.
#[test]
fn matches_pg_waldump_on_15() {
    let Some(install) = installs_under_test().into_iter().find(|i| i.major == 15) else {
        pg_test_harness::ci::skip_or_fail("PostgreSQL 15 (pg_waldump 15 reads only its WAL)");
        return;
    };
    let pg = cluster(&install);
    let work = run_workload(&pg);
    let start = SegNo(1).start_lsn(WalSegSize::DEFAULT);
    let (records, end) = read_all(&pg, start, None);
    eprintln!("PG15: {} records, end {end:?}", records.len());
    let ours: Vec<&WalRecord> = records.iter().filter(|r| r.end <= work.end).collect();
    let theirs = waldump(&pg, start, work.end);
    assert_eq!(ours.len(), theirs.len(), "record count");
    for (record, (rmgr, tot, xid, at, prev, desc)) in ours.iter().zip(&theirs) {
        let context = format!("record at {at}: {rmgr} {desc}");
        assert_eq!(record.lsn, *at, "{context}");
        assert_eq!(record.header.xl_prev, *prev, "{context}");
        assert_eq!(record.header.xl_tot_len, *tot, "{context}");
        assert_eq!(record.header.xl_xid, *xid, "{context}");
        assert_eq!(
            record.end.0,
            at.0 + u64::from(*tot) + page_headers_between(*at, record.end),
            "{context}"
        );
        match &record.kind {
            RecordKind::Commit { time, prepared, .. } => {
                assert_eq!(
                    (
                        rmgr.as_str(),
                        desc.starts_with(if *prepared {
                            "COMMIT_PREPARED"
                        } else {
                            "COMMIT "
                        })
                    ),
                    ("Transaction", true),
                    "{context}"
                );
                assert_eq!(time.unix_micros(), waldump_time(desc), "{context}");
            }
            RecordKind::Abort { time, prepared, .. } => {
                assert!(
                    desc.starts_with(if *prepared {
                        "ABORT_PREPARED"
                    } else {
                        "ABORT "
                    }),
                    "{context}"
                );
                assert_eq!(time.unix_micros(), waldump_time(desc), "{context}");
            }
            RecordKind::RestorePoint { name, .. } => {
                assert_eq!(desc, &format!("RESTORE_POINT {name}"), "{context}")
            }
            RecordKind::Switch => assert_eq!(
                (rmgr.as_str(), desc.as_str()),
                ("XLOG", "SWITCH"),
                "{context}"
            ),
            RecordKind::Other => {
                let ours_to_decode = match rmgr.as_str() {
                    "Transaction" => desc.starts_with("COMMIT") || desc.starts_with("ABORT"),
                    "XLOG" => desc.starts_with("RESTORE_POINT") || desc == "SWITCH",
                    _ => false,
                };
                assert!(!ours_to_decode, "{context}: not decoded");
            }
        }
    }
    check_workload(&pg, &records, &work);

    // Starting mid-stream: at a record (the restore point) or at a segment boundary, where
    // the continuation of a record from the previous segment is skipped.
    let rp = records
        .iter()
        .find(|r| matches!(r.kind, RecordKind::RestorePoint { .. }))
        .unwrap();
    let (from_rp, _) = read_all(&pg, rp.lsn, None);
    assert_eq!(from_rp[0], *rp);
    let spanning = records
        .iter()
        .find(|r| r.lsn.segno(WalSegSize::DEFAULT) != Lsn(r.end.0 - 1).segno(WalSegSize::DEFAULT))
        .unwrap();
    let boundary = Lsn(r_end_segment_start(spanning));
    let (from_boundary, _) = read_all(&pg, boundary, None);
    let expected = records.iter().find(|r| r.lsn > boundary).unwrap();
    assert_eq!(from_boundary[0], *expected);
    assert_eq!(
        from_boundary.len(),
        records.iter().filter(|r| r.lsn > boundary).count()
    );
}

fn r_end_segment_start(record: &WalRecord) -> u64 {
    Lsn(record.end.0 - 1)
        .segno(WalSegSize::DEFAULT)
        .start_lsn(WalSegSize::DEFAULT)
        .0
}

/// Bytes of page headers between a record's start and its end.
fn page_headers_between(start: Lsn, end: Lsn) -> u64 {
    let block = u64::from(XLOG_BLCKSZ);
    let size = WalSegSize::DEFAULT.as_u64();
    let mut total = 0;
    let mut page = (start.0 / block + 1) * block;
    while page < end.0 {
        total += if page.is_multiple_of(size) { 40 } else { 24 };
        page += block;
    }
    total
}
