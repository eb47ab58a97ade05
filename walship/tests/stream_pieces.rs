//! `walship stream --synchronous` stores its tail as append-only pieces (docs/FORMAT.md
//! "`.partial` objects"), against a real Postgres 15 and a local repository, where each piece
//! is a frame appended to the segment's journal `<segment>.partial.journal` (no piece objects):
//! the flush the server sees never passes what `fetch --allow-partial` delivers,
//! byte-identical to the server's pg_wal; a completed segment takes its journal away; a gap
//! stops delivery at the gap and `verify` says so; leftover pieces and journals are reported
//! and `expire` removes them with their segment; a damaged journal is a problem for `verify`;
//! a `kill -9` of the synchronous stream under load, then a new stream adopting the journal,
//! loses no acknowledged commit; an old repository holding only a `.partial` still restores.

mod lifecycle_support;
mod restore_support;
mod stream_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use pg_test_harness::{Cluster, PgInstall, StopMode};
use restore_support::{open_repo, runtime, walship_backup};
use stream_support::*;
use support::{TestRepo, describe, wait_until};
use walship_common::pg::{WalFileName, WalSegSize};
use walship_common::repo::Repository;
use walship_common::repo::journal;
use walship_common::repo::layout::{self, TailPiece};
use walship_common::repo::partial::read_partial;
use walship_common::storage::{ObjectKey, Storage};

fn seg_size() -> WalSegSize {
    WalSegSize::from_mib(1).unwrap()
}

/// Names under the segment's group in the local repository that are piece objects of
/// `segment` (its journal excluded).
fn pieces_of(repo: &TestRepo, segment: &str) -> Vec<String> {
    repo_wal_names(repo.local_root())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{segment}.partial.")) && !n.ends_with(".journal"))
        .collect()
}

/// Whether the local repository holds the journal of `segment`.
fn has_journal(repo: &TestRepo, segment: &str) -> bool {
    repo_wal_names(repo.local_root()).contains(&format!("{segment}.partial.journal"))
}

/// Stores `bytes` as the journal of `segment` in the local `repo` (through `lib`, the same
/// repository opened by the library), owned like the rest of it.
fn store_journal(
    rt: &tokio::runtime::Runtime,
    lib: &walship_common::repo::Repository,
    repo: &TestRepo,
    segment: WalFileName,
    bytes: Bytes,
) {
    rt.block_on(lib.storage().put(
        &layout::tail_journal_key(segment),
        bytes,
        Default::default(),
    ))
    .unwrap();
    support::chown_tree_like(repo.local_root(), repo.local_root());
}

/// A journal file holding `frames` (offset, content) as the stream writes them.
async fn journal_bytes(
    lib: &walship_common::repo::Repository,
    segment: WalFileName,
    frames: &[(usize, &[u8])],
) -> Vec<u8> {
    let mut out = Vec::new();
    for (offset, content) in frames {
        let key = layout::tail_piece_key(TailPiece {
            segment,
            offset: *offset as u32,
        });
        let payload = lib
            .encode_content(&key, Bytes::copy_from_slice(content))
            .await
            .unwrap();
        out.extend(journal::encode_frame(*offset as u32, &payload));
    }
    out
}

fn flush_lsn(cluster: &Cluster) -> u64 {
    lsn(&cluster.query_string(
        "select coalesce(max(flush_lsn)::text, '0/0') from pg_stat_replication where application_name = 'walship'",
    ))
}

/// A primary of 1 MiB segments whose synchronous standby is a `walship stream
/// --synchronous` into `repo`, already acknowledging commits.
fn synchronous_primary(install: &PgInstall, repo: &TestRepo) -> (Cluster, StreamProc) {
    let primary = Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("synchronous_standby_names", "'walship'")
        .setting("wal_keep_size", "'1GB'")
        .start();
    let stream = StreamProc::start(&primary, repo, &["--synchronous"]);
    wait_streaming(&primary, &stream, "walship");
    wait_sync_standby(&primary);
    (primary, stream)
}

#[test]
fn synchronous_flushes_are_journal_frames_fetch_assembles_them_and_gaps_stop_delivery() {
    let Some(install) = lifecycle_support::pg15() else {
        return;
    };
    let repo = TestRepo::local();
    let (mut primary, mut stream) = synchronous_primary(&install, &repo);
    walship_backup(&primary, &repo);
    primary.execute("create table t(n int, pad text)");
    // Start on a fresh segment so that its pieces are all this run's.
    primary.execute("select pg_switch_wal()");
    primary.execute("insert into t values (0, 'x')");

    // 40 synchronous commits: each waits for its flush, so each is (at least) one frame of
    // the segment's journal; no piece object is written.
    for n in 1..=40 {
        primary.execute(&format!("insert into t values ({n}, repeat('p', 200))"));
    }
    let flushed = flush_lsn(&primary);
    let current = seg_name(1, flushed);
    let rt = runtime();
    let lib = open_repo(&rt, &repo);
    let segment = WalFileName::parse(&current, seg_size()).unwrap();
    let stored = rt.block_on(read_partial(&lib, segment)).unwrap().unwrap();
    let frames = stored.journal.as_ref().map_or(0, |j| j.frames);
    assert!(
        frames >= 20 && pieces_of(&repo, &current).is_empty(),
        "40 synchronous commits stored {frames} journal frames and piece objects {:?} of {current}\n{}",
        pieces_of(&repo, &current),
        stream.log()
    );

    // What the server was told is flushed is stored: fetch --allow-partial (base + pieces)
    // delivers the server's own bytes up to there, while the stream runs.
    let delivered = fetch(&repo, &current, true);
    let wal = pg_wal_files(&primary);
    let original = &wal[&current];
    let upto = (flushed % SEG) as usize;
    assert!(upto > 0, "flush {flushed:X} at a segment start");
    assert_eq!(delivered.len() as u64, SEG);
    assert!(
        delivered[..upto] == original[..upto],
        "fetch --allow-partial of {current} differs from pg_wal before the reported flush {flushed:X}"
    );
    assert!(
        stored.content.len() >= upto,
        "the flush reported to the server ({upto:#X} into {current}) passes what is stored ({:#X})",
        stored.content.len()
    );
    assert!(stored.gap.is_none(), "{stored:?}");

    // Completing the segment removes its journal (and base).
    primary.execute("select pg_switch_wal()");
    primary.execute("insert into t values (-1, 'next')");
    wait_until(
        Duration::from_secs(60),
        "the journal of the completed segment to go",
        || {
            repo_wal_names(repo.local_root()).contains(&current)
                && pieces_of(&repo, &current).is_empty()
                && !has_journal(&repo, &current)
                && !repo_wal_names(repo.local_root()).contains(&format!("{current}.partial"))
        },
    );
    let complete = fetch(&repo, &current, false);
    assert!(complete[..upto] == original[..upto]);

    // A second backup, then the stream stops: its last segment keeps a tail.
    for n in 41..=60 {
        primary.execute(&format!("insert into t values ({n}, repeat('q', 300))"));
    }
    walship_backup(&primary, &repo);
    for n in 61..=80 {
        primary.execute(&format!(
            "insert into t select {n}, string_agg(md5(random()::text), '') from generate_series(1, 60)"
        ));
    }
    let flushed = flush_lsn(&primary);
    let last = seg_name(1, flushed);
    let wal = pg_wal_files(&primary);
    primary.stop(StopMode::Fast);
    assert_eq!(stream.terminate(), Some(0), "{}", stream.log());

    // A gap: rebuild the last segment's tail by hand from the server's bytes as a base, a
    // piece, and a piece past a missing range. Delivery stops at the gap.
    let original = &wal[&last];
    let end = (flushed % SEG) as usize;
    assert!(end > 12_000, "too little WAL in {last}: {end}");
    let last_seg = WalFileName::parse(&last, seg_size()).unwrap();
    let (a, b, c) = (4096, 8000, 10_000);
    rt.block_on(async {
        let base = remove_tail(&lib, last_seg).await;
        lib.put_content(&base, Bytes::copy_from_slice(&original[..a]), true)
            .await
            .unwrap();
        for (from, to) in [(a - 100, b), (c, end)] {
            let key = layout::tail_piece_key(TailPiece {
                segment: last_seg,
                offset: from as u32,
            });
            lib.put_content(&key, Bytes::copy_from_slice(&original[from..to]), true)
                .await
                .unwrap();
        }
    });
    // Written as root here; `walship` runs as the cluster's user.
    support::chown_tree_like(repo.local_root(), repo.local_root());
    let delivered = fetch(&repo, &last, true);
    assert!(delivered[..b] == original[..b], "base + overlapping piece");
    assert!(
        delivered[b..].iter().all(|&x| x == 0),
        "bytes past the gap at {b:#X} were delivered"
    );
    let out = repo.walship(&["verify", "--quick"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("the stream tail of {last}")) && text.contains("GAP"),
        "verify does not report the gap: {text}"
    );

    // Leftover pieces of a completed segment (a stream that stopped before removing them):
    // verify reports them; expire removes them with their segment.
    let old = WalFileName::parse(&current, seg_size()).unwrap();
    let leftover = layout::tail_piece_key(TailPiece {
        segment: old,
        offset: 0x100,
    });
    rt.block_on(lib.put_content(&leftover, Bytes::from_static(b"left behind"), true))
        .unwrap();
    let journal = rt.block_on(journal_bytes(&lib, old, &[(0x200, b"left behind too")]));
    store_journal(&rt, &lib, &repo, old, Bytes::from(journal));
    let out = repo.walship(&["verify", "--quick"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("2 stream tail pieces of {current}")),
        "verify does not report the leftover piece and journal: {text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let out = repo.walship(&["expire", "--pitr-window", "1s"]);
    assert!(out.status.success(), "expire: {}", describe(&out));
    assert!(
        !repo_wal_names(repo.local_root()).contains(&current),
        "expire kept {current}: {}",
        describe(&out)
    );
    assert!(
        pieces_of(&repo, &current).is_empty() && !has_journal(&repo, &current),
        "expire removed {current} but not its piece or journal"
    );
    assert!(
        !pieces_of(&repo, &last).is_empty(),
        "expire removed the tail pieces of {last}, which the newest backup needs"
    );

    // A damaged journal (a bad frame followed by a valid one, which no stream writes) is a
    // problem for verify; a torn last frame is not.
    let (x, y) = (c + 100, c + 300);
    let mut damaged = rt.block_on(journal_bytes(
        &lib,
        last_seg,
        &[(c, &original[c..x]), (x, &original[x..y])],
    ));
    let first = rt.block_on(journal_bytes(&lib, last_seg, &[(c, &original[c..x])]));
    let torn = damaged.clone();
    store_journal(
        &rt,
        &lib,
        &repo,
        last_seg,
        Bytes::copy_from_slice(&torn[..torn.len() - 5]),
    );
    let out = repo.walship(&["verify", "--quick"]);
    let text = describe(&out);
    assert!(
        text.contains("a journal of 1 frames") && !text.contains("is damaged"),
        "verify on a torn last frame: {text}"
    );
    damaged[first.len() / 2] ^= 0xFF;
    store_journal(&rt, &lib, &repo, last_seg, Bytes::from(damaged));
    let out = repo.walship(&["verify", "--quick"]);
    let text = describe(&out);
    assert!(
        !out.status.success() && text.contains("is damaged") && text.contains(".partial.journal"),
        "verify does not name the damaged journal: {text}"
    );
}

#[test]
fn a_repository_with_only_a_partial_tail_still_restores_latest() {
    let Some(install) = lifecycle_support::pg15() else {
        return;
    };
    let repo = TestRepo::local();
    let mut primary = Cluster::builder(&install)
        .initdb_arg("--wal-segsize=1")
        .setting("wal_keep_size", "'1GB'")
        .start();
    let mut stream = StreamProc::start(&primary, &repo, &[]);
    wait_streaming(&primary, &stream, "walship");
    walship_backup(&primary, &repo);
    primary.execute("create table t(n int)");
    primary.execute("insert into t select generate_series(1, 1000)");
    let target = lsn(&primary.query_string("select pg_current_wal_flush_lsn()::text"));
    wait_flushed(&primary, &stream, "walship", target);
    let last = seg_name(1, target);
    let wal = pg_wal_files(&primary);
    primary.stop(StopMode::Immediate);
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    assert_eq!(stream.terminate(), Some(0), "{}", stream.log());

    // The format before pieces: the tail is one `<segment>.partial`, nothing else.
    let rt = runtime();
    let lib = open_repo(&rt, &repo);
    let segment = WalFileName::parse(&last, seg_size()).unwrap();
    let end = (target % SEG) as usize;
    rt.block_on(async {
        let base = remove_tail(&lib, segment).await;
        lib.put_content(&base, Bytes::copy_from_slice(&wal[&last][..end]), true)
            .await
            .unwrap();
    });
    assert!(pieces_of(&repo, &last).is_empty() && !has_journal(&repo, &last));
    support::chown_tree_like(repo.local_root(), repo.local_root());

    let dir = pg_test_harness::test_dir("pieces-old-format");
    let to = dir.path().join("data");
    let out = restore_support::restore(&repo, &to, &["--target", "latest"]);
    assert!(out.status.success(), "restore: {}", describe(&out));
    let mut restored = Cluster::from_data_dir(&install, &to);
    restored.append_conf("archive_mode = off");
    restored.start();
    wait_until(Duration::from_secs(180), "recovery to end", || {
        restored.query_string("select pg_is_in_recovery()") == "f"
    });
    assert_eq!(restored.query_string("select count(*) from t"), "1000");
    restored.stop(StopMode::Fast);
}

#[test]
fn kill_9_of_a_synchronous_stream_under_load_then_adoption_loses_no_acknowledged_commit() {
    let Some(install) = lifecycle_support::pg15() else {
        return;
    };
    let repo = TestRepo::local();
    let (mut primary, mut first) = synchronous_primary(&install, &repo);
    primary.execute("create table acked(writer int, n int)");
    let init = pgbench(&primary, &["-i", "-s", "1", "-q"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", describe(&init));
    walship_backup(&primary, &repo);

    let mut load = pgbench(&primary, &["-n", "-T", "120", "-c", "4", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let writers = spawn_ack_writers(&primary, 3);
    std::thread::sleep(Duration::from_secs(3));
    // The stream dies in the middle of a flush or between two: commits wait.
    first.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let second = StreamProc::start(&primary, &repo, &["--synchronous"]);
    wait_streaming(&primary, &second, "walship");
    wait_sync_standby(&primary);
    std::thread::sleep(Duration::from_secs(3));
    primary.stop(StopMode::Immediate);
    let acked: Vec<i32> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let _ = load.kill();
    let _ = load.wait();
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    let mut second = second;
    assert_eq!(second.terminate(), Some(0), "{}", second.log());
    assert!(acked.iter().all(|&n| n > 5), "too few commits: {acked:?}");
    let log = second.log();
    assert!(
        log.contains("adopted the stored tail of"),
        "the new stream did not adopt the journal the killed one left:\n{log}"
    );

    let dir = pg_test_harness::test_dir("journal-kill9");
    let to = dir.path().join("data");
    let out = restore_support::restore(&repo, &to, &["--target", "latest"]);
    assert!(out.status.success(), "restore: {}", describe(&out));
    let mut restored = Cluster::from_data_dir(&install, &to);
    restored.append_conf("synchronous_standby_names = ''");
    restored.append_conf("archive_mode = off");
    restored.start();
    wait_until(Duration::from_secs(180), "recovery to end", || {
        restored.query_string("select pg_is_in_recovery()") == "f"
    });
    assert_acked_rows(&restored, &acked, "after kill -9 and adoption");
    restored.stop(StopMode::Fast);
}

/// Removes everything the repository holds of `segment`'s tail (its `.partial` base, its
/// journal and its piece objects) and returns the base's key, for a test to store its own.
async fn remove_tail(lib: &Repository, segment: WalFileName) -> ObjectKey {
    let base = layout::wal_key(&walship_common::pg::ArchiveFileName::Partial(segment));
    let (pieces, journal) = walship_common::repo::partial::list_tail(lib, segment)
        .await
        .unwrap();
    for key in std::iter::once(base.clone())
        .chain(journal)
        .chain(pieces.into_iter().map(layout::tail_piece_key))
    {
        let _ = lib.storage().delete(&key).await;
    }
    base
}
