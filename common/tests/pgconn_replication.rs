//! The replication client against real clusters of every major under test: IDENTIFY_SYSTEM,
//! SHOW, slots, START_REPLICATION (WAL byte-identical to pg_wal, keepalives answered, status
//! updates reach the server), unix-socket connections, and server errors.

mod pgconn_support;

use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, PgInstall, installs_under_test};
use pgconn_support::{connect, params, runtime};
use walship_common::Lsn;
use walship_common::pg::{TimelineId, WalFileName, WalSegSize};
use walship_common::pgconn::{
    ConnParams, PgConnError, ReplicationMessage, StandbyStatusUpdate, StartReplication, WalEvent,
};

const SLOT: &str = "walship_test";
const APP: &str = "walship_test_app";

#[test]
fn replication_commands_and_streaming_on_every_major() {
    for install in installs_under_test() {
        eprintln!("PG{}: replication commands and streaming", install.major);
        commands_and_streaming(&install);
    }
}

fn commands_and_streaming(install: &PgInstall) {
    let pg = Cluster::builder(install)
        .setting("wal_sender_timeout", "'4s'")
        .start();
    pg.execute("create table t(x int); insert into t select generate_series(1, 10000)");
    let rt = runtime();
    let p = params(&pg, &format!("application_name={APP}"));
    let mut client = rt.block_on(connect(&p));
    assert_eq!(client.server_major(), install.major);
    assert!(
        !client.is_tls(),
        "sslmode=prefer against a server without ssl must fall back to plain"
    );

    // IDENTIFY_SYSTEM.
    let ident = rt.block_on(client.identify_system()).unwrap();
    let sysid: u64 = pg
        .query_string("select system_identifier from pg_control_system()")
        .parse()
        .unwrap();
    assert_eq!(ident.systemid, sysid);
    assert_eq!(ident.timeline, TimelineId(1));
    assert_eq!(ident.dbname, None);
    let flushed = query_lsn(&pg, "select pg_current_wal_flush_lsn()");
    assert!(
        ident.xlogpos.0 > 0 && ident.xlogpos <= flushed,
        "{} vs {flushed}",
        ident.xlogpos
    );

    // SHOW.
    assert_eq!(
        rt.block_on(client.show("wal_segment_size")).unwrap(),
        pg.query_string("show wal_segment_size")
    );
    let seg_bytes = rt.block_on(client.wal_segment_size()).unwrap();
    assert_eq!(seg_bytes, 16 << 20);
    let version_num: u32 = rt
        .block_on(client.show("server_version_num"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(version_num / 10000, install.major);
    assert!(rt.block_on(client.show("no;such")).is_err());

    // Slots: READ_REPLICATION_SLOT is PG15+; CREATE in both syntaxes.
    if install.major >= 15 {
        let missing = rt.block_on(client.read_replication_slot(SLOT)).unwrap();
        assert_eq!(missing.slot_type, None);
    } else {
        let err = rt.block_on(client.read_replication_slot(SLOT)).unwrap_err();
        assert!(
            matches!(err, PgConnError::Unsupported { needed: 15, .. }),
            "{err}"
        );
    }
    let created = rt
        .block_on(client.create_physical_replication_slot(SLOT, true))
        .unwrap();
    assert_eq!(created.slot_name, SLOT);
    let restart = slot_restart_lsn(&pg);
    assert!(restart.is_valid(), "RESERVE_WAL must reserve WAL at once");
    if install.major >= 15 {
        let info = rt.block_on(client.read_replication_slot(SLOT)).unwrap();
        assert_eq!(info.slot_type.as_deref(), Some("physical"));
        assert_eq!(info.restart_lsn, Some(restart));
        assert_eq!(info.restart_tli, Some(TimelineId(1)));
    }
    // A duplicate slot is the server's error, with its SQLSTATE, and the connection lives on.
    let dup = rt
        .block_on(client.create_physical_replication_slot(SLOT, false))
        .unwrap_err();
    assert_eq!(dup.sqlstate(), Some("42710"), "{dup}");
    assert!(
        dup.to_string().contains("127.0.0.1:"),
        "errors name the server: {dup}"
    );

    // A start position beyond the flush position is refused (some majors after CopyBoth).
    let seg = WalSegSize::new(seg_bytes).unwrap();
    let ahead = Lsn(ident.xlogpos.0 + 4 * seg_bytes);
    let refused = rt.block_on(async {
        match client.start_replication(None, ahead, None).await {
            Ok(StartReplication::Streaming(mut s)) => {
                match s.next_event(Duration::from_secs(30)).await {
                    Err(e) => e,
                    Ok(event) => panic!("streaming from {ahead} gave {event:?}"),
                }
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => e,
        }
    });
    assert!(refused.server_error().is_some(), "{refused}");
    rt.block_on(client.identify_system())
        .expect("connection usable after an error");

    stream_and_compare(&pg, &rt, &mut client, ident.xlogpos, seg);

    rt.block_on(client.drop_replication_slot(SLOT)).unwrap();
    rt.block_on(client.close()).unwrap();

    // The same over the unix socket.
    let conninfo = format!(
        "host={} port={} user=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    let unix = ConnParams::parse_with_env(&conninfo, &|_| None).unwrap();
    let mut client = rt.block_on(connect(&unix));
    assert!(
        client
            .endpoint()
            .ends_with(&format!(".s.PGSQL.{}", pg.port()))
    );
    assert_eq!(
        rt.block_on(client.identify_system()).unwrap().systemid,
        sysid
    );
}

/// START_REPLICATION from the start of the segment holding `xlogpos`: the WAL received must be
/// the bytes of that segment file, keepalives must be answered, and status updates must reach
/// the server (pg_stat_replication, the slot's restart_lsn).
fn stream_and_compare(
    pg: &Cluster,
    rt: &tokio::runtime::Runtime,
    client: &mut walship_common::pgconn::ReplicationClient,
    xlogpos: Lsn,
    seg: WalSegSize,
) {
    let file = WalFileName::containing(TimelineId(1), xlogpos, seg).unwrap();
    let start = file.start_lsn();
    let StartReplication::Streaming(mut stream) = rt
        .block_on(client.start_replication(Some(SLOT), start, Some(TimelineId(1))))
        .unwrap()
    else {
        panic!("expected streaming from {start}");
    };

    // Receive until xlogpos; the chunks must be contiguous.
    let mut received = Vec::new();
    let mut next = start;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < xlogpos {
        assert!(
            Instant::now() < deadline,
            "no WAL up to {xlogpos} within 60 s (have {next})"
        );
        match rt
            .block_on(stream.next_event(Duration::from_secs(1)))
            .unwrap()
        {
            WalEvent::Message(ReplicationMessage::XLogData(x)) => {
                assert_eq!(
                    x.data_start, next,
                    "XLogData must continue where the last one ended"
                );
                received.extend_from_slice(&x.data);
                next = x.data_end();
            }
            WalEvent::Message(ReplicationMessage::Keepalive(_)) | WalEvent::Idle => {}
            WalEvent::ServerDone => panic!("stream ended early"),
        }
    }
    let on_disk = std::fs::read(pg.data_dir().join("pg_wal").join(file.to_string())).unwrap();
    let len = (xlogpos.0 - start.0) as usize;
    assert!(received.len() >= len);
    assert!(
        received[..len] == on_disk[..len],
        "WAL received from {start} to {xlogpos} differs from pg_wal/{file}"
    );

    // Stay idle until the server asks for a reply, answer it, and keep answering for longer
    // than wal_sender_timeout (4 s): the connection must survive.
    let status = StandbyStatusUpdate {
        write: next,
        flush: next,
        apply: Lsn::INVALID,
        reply_requested: false,
    };
    let begin = Instant::now();
    let mut answered = 0;
    while begin.elapsed() < Duration::from_secs(10) {
        // Answered, and alive for longer than wal_sender_timeout: proven.
        if answered >= 1 && begin.elapsed() > Duration::from_secs(5) {
            break;
        }
        match rt
            .block_on(stream.next_event(Duration::from_millis(500)))
            .unwrap()
        {
            WalEvent::Message(ReplicationMessage::Keepalive(k)) => {
                assert!(k.wal_end >= xlogpos);
                if k.reply_requested {
                    rt.block_on(stream.send_status(&status)).unwrap();
                    answered += 1;
                }
            }
            WalEvent::Message(ReplicationMessage::XLogData(x)) => {
                assert_eq!(x.data_start, next);
                next = x.data_end();
            }
            WalEvent::Idle => {}
            WalEvent::ServerDone => panic!("stream ended"),
        }
    }
    assert!(
        answered >= 1,
        "the server never asked for a reply in 10 s with wal_sender_timeout=4s"
    );

    // Our flush position is what the server reports for us and where the slot now restarts.
    let reported: Lsn = query_lsn(
        pg,
        &format!("select flush_lsn from pg_stat_replication where application_name = '{APP}'"),
    );
    assert_eq!(reported, status.flush);
    let restart = slot_restart_lsn(pg);
    assert_eq!(restart, status.flush);

    assert_eq!(rt.block_on(stream.finish()).unwrap(), None);
}

fn query_lsn(pg: &Cluster, sql: &str) -> Lsn {
    let text = pg.query_string(sql);
    text.parse()
        .unwrap_or_else(|e| panic!("`{sql}` gave {text:?}: {e}"))
}

fn slot_restart_lsn(pg: &Cluster) -> Lsn {
    query_lsn(
        pg,
        &format!("select restart_lsn from pg_replication_slots where slot_name = '{SLOT}'"),
    )
}
