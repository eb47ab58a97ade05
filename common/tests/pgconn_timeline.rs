//! Timeline switches over the replication protocol, on every major under test: a cluster is
//! pushed to timeline 2 by archive recovery (recovery.signal + `restore_command = 'false'`);
//! TIMELINE_HISTORY 2 must return exactly pg_wal/00000002.history, and START_REPLICATION on
//! timeline 1 must end with CopyDone and the (next_tli, next_tli_startpos) result set.

mod pgconn_support;

use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, PgInstall, StopMode, installs_under_test};
use pgconn_support::{connect, params, runtime};
use walship_common::Lsn;
use walship_common::pg::{TimelineId, WalFileName, WalSegSize};
use walship_common::pgconn::{NextTimeline, ReplicationMessage, StartReplication, WalEvent};

#[test]
fn timeline_history_and_end_of_timeline_on_every_major() {
    for install in installs_under_test() {
        eprintln!("PG{}: timeline 2", install.major);
        timeline_switch(&install);
    }
}

/// Stops the cluster and restarts it in archive recovery that finds no archive: recovery ends
/// at the end of pg_wal and the server promotes itself to the next timeline.
fn promote_to_next_timeline(pg: &mut Cluster) {
    pg.stop(StopMode::Fast);
    std::fs::write(pg.data_dir().join("recovery.signal"), "").unwrap();
    pg.append_conf("restore_command = 'false'");
    pg.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.query_string("select pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "no promotion within 60 s\n{}",
            pg.log_excerpt()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn timeline_switch(install: &PgInstall) {
    let mut pg = Cluster::builder(install).start();
    pg.execute("create table t(x int); insert into t select generate_series(1, 1000)");
    promote_to_next_timeline(&mut pg);

    let rt = runtime();
    let mut client = rt.block_on(connect(&params(&pg, "")));
    let ident = rt.block_on(client.identify_system()).unwrap();
    assert_eq!(ident.timeline, TimelineId(2));

    // TIMELINE_HISTORY: raw bytes, identical to the file.
    let history = rt.block_on(client.timeline_history(TimelineId(2))).unwrap();
    assert_eq!(history.filename, "00000002.history");
    let on_disk = std::fs::read(pg.data_dir().join("pg_wal/00000002.history")).unwrap();
    assert_eq!(&history.content[..], &on_disk[..]);
    // Timeline 1 has no history file: the server's error, and the connection lives on.
    let err = rt
        .block_on(client.timeline_history(TimelineId(1)))
        .unwrap_err();
    assert!(err.server_error().is_some(), "{err}");

    let text = String::from_utf8(on_disk).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("1\t"))
        .expect("a line for timeline 1");
    let switchpoint: Lsn = line.split('\t').nth(1).unwrap().parse().unwrap();
    let expected = NextTimeline {
        next_tli: TimelineId(2),
        next_tli_startpos: switchpoint,
    };

    // Streaming timeline 1 from its last segment's start ends at the switchpoint.
    let seg = WalSegSize::new(rt.block_on(client.wal_segment_size()).unwrap()).unwrap();
    let start = WalFileName::containing(TimelineId(1), Lsn(switchpoint.0 - 1), seg)
        .unwrap()
        .start_lsn();
    let StartReplication::Streaming(mut stream) = rt
        .block_on(client.start_replication(None, start, Some(TimelineId(1))))
        .unwrap()
    else {
        panic!("expected WAL from {start} on timeline 1");
    };
    let mut end = start;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "timeline 1 did not end within 60 s (at {end})"
        );
        match rt
            .block_on(stream.next_event(Duration::from_secs(1)))
            .unwrap()
        {
            WalEvent::Message(ReplicationMessage::XLogData(x)) => {
                assert_eq!(x.data_start, end);
                end = x.data_end();
            }
            WalEvent::Message(ReplicationMessage::Keepalive(_)) | WalEvent::Idle => {}
            WalEvent::ServerDone => break,
        }
    }
    // The end is reported again until the handshake is completed: a streaming loop that ran
    // next_event inside select! and dropped it (another branch fired) loses nothing.
    for _ in 0..3 {
        let again = rt.block_on(async {
            tokio::select! {
                biased;
                _ = std::future::ready(()) => None,
                e = stream.next_event(Duration::from_secs(1)) => Some(e.unwrap()),
            }
        });
        assert_eq!(again, None, "the other branch wins; next_event is dropped");
        assert_eq!(
            rt.block_on(stream.next_event(Duration::from_secs(1)))
                .unwrap(),
            WalEvent::ServerDone
        );
    }
    let next = rt.block_on(stream.finish()).unwrap();
    assert_eq!(next, Some(expected));
    assert_eq!(end, switchpoint, "timeline 1's WAL ends at the switchpoint");
    assert_eq!(
        rt.block_on(client.identify_system()).unwrap().timeline,
        TimelineId(2)
    );

    // Starting exactly at the switchpoint: no COPY, just the result set.
    match rt
        .block_on(client.start_replication(None, switchpoint, Some(TimelineId(1))))
        .unwrap()
    {
        StartReplication::TimelineEnded(next) => assert_eq!(next, Some(expected)),
        StartReplication::Streaming(mut s) => {
            // Some servers may still open the COPY; then it must end at once.
            let event = rt.block_on(s.next_event(Duration::from_secs(10))).unwrap();
            assert_eq!(event, WalEvent::ServerDone);
            assert_eq!(rt.block_on(s.finish()).unwrap(), Some(expected));
        }
    }
    rt.block_on(client.close()).unwrap();
}
