//! `common::pg` against real servers of every installed major (13-18): segment files from
//! `pg_wal` validate with the right major, system identifier and segment size, damaged or
//! misnamed copies are refused, our file names match `pg_walfile_name` for 1, 16 and 64 MiB
//! segments, and real `.history` files parse, lead to the right timelines, and are
//! byte-identical to what `TimelineHistory::child` writes.

mod pg_support;

use std::path::Path;
use std::time::{Duration, Instant};

use pg_support::lsn;
use pg_test_harness::{
    Cluster, PgInstall, StopMode, chown_to_owner_recursive, installs_under_test,
};
use walship_common::Lsn;
use walship_common::pg::page_header::XLOG_BLCKSZ;
use walship_common::pg::{
    PgVersion, SegNo, SegmentError, TimelineHistory, TimelineId, WalEnd, WalFileName, WalSegSize,
    validate_segment,
};

/// A started cluster that keeps its WAL (`wal_keep_size`), optionally with another segment size.
fn cluster(install: &PgInstall, seg_mib: Option<u32>) -> Cluster {
    let mut builder = Cluster::builder(install).setting("wal_keep_size", "'4GB'");
    if let Some(mib) = seg_mib {
        builder = builder.initdb_arg(&format!("--wal-segsize={mib}"));
    }
    builder.start()
}

fn sysid(pg: &Cluster) -> u64 {
    pg.query_string("select system_identifier from pg_control_system()")
        .parse()
        .unwrap()
}

fn seg_size(pg: &Cluster) -> WalSegSize {
    let bytes: u64 = pg
        .query_string(
            "select setting::bigint * case unit when 'B' then 1 when '8kB' then 8192 when 'MB' then 1048576 end \
             from pg_settings where name = 'wal_segment_size'",
        )
        .parse()
        .unwrap();
    WalSegSize::new(bytes).unwrap()
}

fn read_wal(pg: &Cluster, name: &str) -> Vec<u8> {
    let path = pg.data_dir().join("pg_wal").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Inserts some rows and switches segments `rounds` times; returns each switched segment's
/// name (from the server) and the LSN `pg_switch_wal` reported.
fn switch_segments(pg: &Cluster, rounds: usize) -> Vec<(String, Lsn)> {
    pg.execute("create table if not exists t(id int, payload text)");
    (0..rounds)
        .map(|_| {
            pg.execute("insert into t select g, repeat('x', 200) from generate_series(1, 3000) g");
            let rows =
                pg.query_rows("select pg_walfile_name(l), l from (select pg_switch_wal() l) s");
            let row = &rows[0];
            (
                row[0].clone().unwrap(),
                row[1].clone().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// `global/pg_control`: (system_identifier, pg_control_version, catalog_version_no, checkPoint).
fn read_pg_control(data_dir: &Path) -> (u64, u32, u32, Lsn) {
    let bytes = std::fs::read(data_dir.join("global/pg_control")).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    (u64_at(0), u32_at(8), u32_at(12), Lsn(u64_at(32)))
}

/// Real segments validate; the version table's magic, control and catalog versions match.
#[test]
fn real_segments_validate_for_every_major() {
    for install in installs_under_test() {
        let major = install.major;
        let pg = cluster(&install, None);
        let size = seg_size(&pg);
        assert_eq!(size, WalSegSize::DEFAULT);
        let sysid = sysid(&pg);
        let version = PgVersion::from_major(major)
            .unwrap_or_else(|| panic!("PG{major} missing from the table"));

        pg.execute("checkpoint");
        let (control_sysid, control_version, catalog, checkpoint) = read_pg_control(pg.data_dir());
        assert_eq!(control_sysid, sysid, "PG{major}");
        assert_eq!(
            control_version, version.pg_control_version,
            "PG{major} PG_CONTROL_VERSION"
        );
        assert_eq!(
            catalog, version.catalog_version_no,
            "PG{major} CATALOG_VERSION_NO"
        );
        assert_eq!(
            checkpoint,
            lsn(&pg, "select checkpoint_lsn from pg_control_checkpoint()"),
            "PG{major}"
        );

        for (name, switch_lsn) in switch_segments(&pg, 3) {
            let wal = WalFileName::parse(&name, size).unwrap();
            assert_eq!(wal.to_string(), name);
            assert!(
                wal.contains(switch_lsn) || wal.end_lsn() == switch_lsn,
                "PG{major} {name} {switch_lsn}"
            );
            let bytes = read_wal(&pg, &name);
            let report = validate_segment(&bytes, wal, Some(sysid))
                .unwrap_or_else(|e| panic!("PG{major}: {e}"));
            assert_eq!(report.header.major(), major);
            assert_eq!(
                report.header.version.xlog_page_magic,
                version.xlog_page_magic
            );
            assert_eq!(report.header.system_identifier, sysid);
            assert_eq!(report.header.seg_size, size);
            assert_eq!(report.header.first_page_timeline, TimelineId(1));
            assert!(
                report.valid_end(wal) >= switch_lsn,
                "PG{major} {name}: {report:?} ends before {switch_lsn}"
            );
            assert!(
                matches!(report.end, WalEnd::Full | WalEnd::Zeroed { .. }),
                "PG{major} {name}: {report:?}"
            );
            assert_eq!(report.valid_page_after_end, None, "PG{major} {name}");
            eprintln!("PG{major} {name}: switch at {switch_lsn}, {:?}", report.end);

            // The same file refused: another cluster, another name, a truncated copy.
            let err = validate_segment(&bytes, wal, Some(sysid ^ 1)).unwrap_err();
            assert!(
                matches!(err, SegmentError::SystemIdMismatch { found, .. } if found == sysid),
                "{err}"
            );
            let next = wal.next().unwrap();
            let err = validate_segment(&bytes, next, Some(sysid)).unwrap_err();
            assert_eq!(
                err,
                SegmentError::PageAddrMismatch {
                    file: next.to_string(),
                    expected: next.start_lsn(),
                    found: wal.start_lsn()
                }
            );
            let err = validate_segment(
                &bytes[..bytes.len() - XLOG_BLCKSZ as usize],
                wal,
                Some(sysid),
            )
            .unwrap_err();
            assert!(matches!(err, SegmentError::WrongLength { .. }), "{err}");
            let err = validate_segment(
                &bytes,
                wal.on_timeline(TimelineId(2)).unwrap().prev().unwrap(),
                None,
            )
            .unwrap_err();
            assert!(
                matches!(err, SegmentError::PageAddrMismatch { .. }),
                "{err}"
            );
        }

        // The segment being written validates too, up to at least the flushed WAL; its tail
        // is zeros (or a recycled file).
        pg.execute("insert into t select g, 'after the switches' from generate_series(1, 500) g");
        let flushed = lsn(&pg, "select pg_current_wal_flush_lsn()");
        let wal =
            WalFileName::new(TimelineId(1), SegNo::containing_end(flushed, size), size).unwrap();
        let report = validate_segment(&read_wal(&pg, &wal.to_string()), wal, Some(sysid)).unwrap();
        assert!(
            report.valid_end(wal) >= flushed,
            "PG{major} {wal}: {report:?}, flushed {flushed}"
        );
        assert_ne!(
            report.end,
            WalEnd::Full,
            "PG{major} {wal}: the tail is not written yet"
        );
        assert_names_match_server(&pg, size);
    }
}

/// `pg_walfile_name` and ours agree on LSNs around name-field boundaries.
fn assert_names_match_server(pg: &Cluster, size: WalSegSize) {
    let per = size.segs_per_xlogid();
    for segno in [
        1,
        per - 1,
        per,
        per + 1,
        3 * per + 7,
        0xABCD_EF01 % (size.max_segno().0 / 4),
    ] {
        for offset in [0x28u64, size.as_u64() / 2, size.as_u64() - 1] {
            let at = Lsn(segno * size.as_u64() + offset);
            let theirs = pg.query_string(&format!("select pg_walfile_name('{at}')"));
            let ours = WalFileName::containing(TimelineId(1), at, size).unwrap();
            assert_eq!(
                ours.to_string(),
                theirs,
                "PG{} {size} at {at}",
                pg.install().major
            );
            assert_eq!(WalFileName::parse(&theirs, size).unwrap(), ours);
        }
        // At a segment boundary, servers up to 17 name the segment that ends there
        // (`XLByteToPrevSeg`); 18 names the one that starts there.
        let boundary = SegNo(segno).start_lsn(size);
        let theirs = pg.query_string(&format!("select pg_walfile_name('{boundary}')"));
        let ending =
            WalFileName::new(TimelineId(1), SegNo::containing_end(boundary, size), size).unwrap();
        let starting = WalFileName::containing(TimelineId(1), boundary, size).unwrap();
        assert!(
            [ending.to_string(), starting.to_string()].contains(&theirs),
            "PG{} {size} at {boundary}: {theirs}",
            pg.install().major
        );
    }
}

/// Clusters made with `--wal-segsize=1` and `=64` write segments we name and validate.
#[test]
fn non_default_segment_sizes() {
    let installs = installs_under_test();
    let (Some(oldest), Some(newest)) = (installs.first(), installs.last()) else {
        return;
    };
    for (install, mib) in [(oldest, 1), (newest, 1), (oldest, 64), (newest, 64)] {
        let major = install.major;
        let pg = cluster(install, Some(mib));
        let size = seg_size(&pg);
        assert_eq!(
            size,
            WalSegSize::from_mib(u64::from(mib)).unwrap(),
            "PG{major}"
        );
        let sysid = sysid(&pg);
        for (name, switch_lsn) in switch_segments(&pg, 2) {
            let wal = WalFileName::parse(&name, size).unwrap_or_else(|e| panic!("PG{major}: {e}"));
            let report = validate_segment(&read_wal(&pg, &name), wal, Some(sysid))
                .unwrap_or_else(|e| panic!("PG{major}: {e}"));
            assert_eq!(
                (report.header.major(), report.header.seg_size),
                (major, size)
            );
            assert!(report.valid_end(wal) >= switch_lsn);
            // Under another segment size the same name means another file.
            let other = WalSegSize::from_mib(if mib == 1 { 2 } else { 16 }).unwrap();
            if let Ok(misread) = WalFileName::parse(&name, other) {
                let mut bytes = read_wal(&pg, &name);
                bytes.resize(other.bytes() as usize, 0);
                assert!(
                    validate_segment(&bytes, misread, Some(sysid)).is_err(),
                    "PG{major} {name} as {other}"
                );
            }
        }
        assert_names_match_server(&pg, size);
    }
}

/// Stops `pg` and restarts it in archive recovery with a `restore_command` that never finds
/// anything: recovery ends at the end of `pg_wal` and the server picks a new timeline.
/// Returns the LSN of the shutdown checkpoint, the last record of the old timeline.
fn new_timeline(pg: &mut Cluster, expected: TimelineId) -> Lsn {
    pg.stop(StopMode::Fast);
    let (_, _, _, shutdown_checkpoint) = read_pg_control(pg.data_dir());
    let signal = pg.data_dir().join("recovery.signal");
    std::fs::write(&signal, b"").unwrap();
    chown_to_owner_recursive(&signal).unwrap();
    pg.append_conf("restore_command = 'false'");
    pg.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tli = pg.query_string("select timeline_id from pg_control_checkpoint()");
        if tli == expected.0.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PG{}: still on timeline {tli}\n{}",
            pg.install().major,
            pg.log_excerpt()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    shutdown_checkpoint
}

/// Real `.history` files (timelines 2 and 3) parse, match what we write byte for byte, and
/// answer the lookups restore needs; the first segment of a new timeline validates.
#[test]
fn real_history_files() {
    for install in installs_under_test() {
        let major = install.major;
        let mut pg = cluster(&install, None);
        let size = seg_size(&pg);
        let sysid = sysid(&pg);
        switch_segments(&pg, 1);
        pg.execute("insert into t values (1, 'before the first switch')");

        let end_of_tli1 = new_timeline(&mut pg, TimelineId(2));
        let bytes = read_wal(&pg, "00000002.history");
        let tli2 = TimelineHistory::parse(TimelineId(2), &bytes)
            .unwrap_or_else(|e| panic!("PG{major}: {e}"));
        let entry = &tli2.entries()[0];
        assert_eq!(tli2.entries().len(), 1, "PG{major}: {tli2:?}");
        assert_eq!(entry.parent, TimelineId(1));
        assert_eq!(entry.reason, "no recovery target specified");
        let switch = entry.switchpoint;
        assert!(
            switch > end_of_tli1 && switch.0 - end_of_tli1.0 < 256,
            "PG{major}: switch {switch}, checkpoint {end_of_tli1}"
        );
        let written = TimelineHistory::first()
            .child(TimelineId(2), switch, &entry.reason)
            .unwrap();
        assert_eq!(
            written.to_bytes(),
            bytes.as_slice(),
            "PG{major}: byte-identical history file"
        );
        assert_eq!(tli2.timeline_of(end_of_tli1), TimelineId(1));
        assert_eq!(tli2.timeline_of(switch), TimelineId(2));
        // The end-of-recovery checkpoint is the new timeline's first record.
        let redo = lsn(&pg, "select redo_lsn from pg_control_checkpoint()");
        let prev_tli = pg.query_string("select prev_timeline_id from pg_control_checkpoint()");
        eprintln!(
            "PG{major}: tli 2 from {switch} (shutdown checkpoint {end_of_tli1}, redo {redo}, prev tli {prev_tli})"
        );
        let header = if switch.is_segment_start(size) {
            40
        } else {
            24
        };
        let expected_redo = if switch.0.is_multiple_of(u64::from(XLOG_BLCKSZ)) {
            Lsn(switch.0 + header)
        } else {
            switch
        };
        assert_eq!(redo, expected_redo, "PG{major}: redo vs switch {switch}");

        // The first segment of timeline 2 starts with timeline 1's pages, and validates.
        let switched = switch_segments(&pg, 2);
        let first_tli2 = WalFileName::containing(TimelineId(2), switch, size).unwrap();
        assert_eq!(switched[0].0, first_tli2.to_string());
        let report =
            validate_segment(&read_wal(&pg, &switched[0].0), first_tli2, Some(sysid)).unwrap();
        if !switch.is_segment_start(size) {
            assert_eq!(
                report.header.first_page_timeline,
                TimelineId(1),
                "PG{major}"
            );
        }

        // Timeline 3: Postgres copies 00000002.history and appends to it.
        let end_of_tli2 = new_timeline(&mut pg, TimelineId(3));
        let bytes = read_wal(&pg, "00000003.history");
        let tli3 = TimelineHistory::parse(TimelineId(3), &bytes).unwrap();
        assert_eq!(tli3.entries()[0], tli2.entries()[0]);
        let switch3 = tli3.entries()[1].switchpoint;
        assert!(switch3 > end_of_tli2);
        let written = tli2
            .child(TimelineId(3), switch3, "no recovery target specified")
            .unwrap();
        assert_eq!(
            written.to_bytes(),
            bytes.as_slice(),
            "PG{major}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(tli3.timeline_of(Lsn(switch3.0 - 1)), TimelineId(2));
        assert_eq!(tli3.switch_point(TimelineId(2)), Some(switch3));

        // Every segment recovery would read on the way to timeline 3 is in pg_wal.
        switch_segments(&pg, 1);
        let end = lsn(&pg, "select pg_current_wal_lsn()");
        let chain = tli3
            .segments_between(SegNo(1).start_lsn(size), end, size)
            .unwrap();
        assert!(chain.iter().any(|w| w.timeline() == TimelineId(1)));
        assert!(chain.iter().any(|w| w.timeline() == TimelineId(2)));
        for wal in &chain {
            let name = wal.to_string();
            let report = validate_segment(&read_wal(&pg, &name), *wal, Some(sysid))
                .unwrap_or_else(|e| panic!("PG{major} chain: {e}"));
            assert!(report.header.first_page_timeline <= wal.timeline());
        }
        eprintln!(
            "PG{major}: chain {:?}",
            chain.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
}

/// Without `wal_keep_size`, checkpoints recycle old segment files under future names: the
/// segment being written then ends in the old file's pages, which is the end of valid WAL,
/// not an error.
#[test]
fn recycled_segments_end_where_new_wal_ends() {
    for install in installs_under_test() {
        let major = install.major;
        let pg = Cluster::builder(&install)
            .setting("wal_keep_size", "0")
            .setting("wal_recycle", "on")
            .start();
        let size = seg_size(&pg);
        let sysid = sysid(&pg);
        pg.execute("create table r(id int, payload text)");
        for _ in 0..4 {
            pg.execute("insert into r select g, repeat(md5(g::text), 8) from generate_series(1, 40000) g; checkpoint");
        }
        pg.execute("insert into r values (1, 'the last row')");
        let flushed = lsn(&pg, "select pg_current_wal_flush_lsn()");
        let wal =
            WalFileName::new(TimelineId(1), SegNo::containing_end(flushed, size), size).unwrap();
        let report = validate_segment(&read_wal(&pg, &wal.to_string()), wal, Some(sysid))
            .unwrap_or_else(|e| panic!("PG{major}: {e}"));
        eprintln!("PG{major} {wal}: flushed {flushed}, {:?}", report.end);
        assert!(
            report.valid_end(wal) >= flushed,
            "PG{major} {wal}: {report:?}, flushed {flushed}"
        );
        match report.end {
            WalEnd::Recycled { at, found } => {
                assert!(
                    found < at && found.segment_offset(size) == at.segment_offset(size),
                    "PG{major}"
                );
            }
            other => panic!("PG{major} {wal}: expected a recycled tail, found {other:?}"),
        }
    }
}
