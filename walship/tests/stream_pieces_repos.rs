//! The stream's tail pieces (`<segment>.partial.<offset>`, on a local repository the frames of
//! `<segment>.partial.journal`; docs/FORMAT.md) in the repositories around them, against a real
//! Postgres 15: in an encrypted repository every piece is sealed (no plaintext in the stored
//! file) and `fetch --allow-partial` still delivers the server's bytes; `walship copy` carries
//! a journal's frames as piece objects, so the target delivers the same tail; on S3 with
//! Object Lock the pieces are never locked (the stream must be able to remove them) while a
//! complete segment is.

mod lifecycle_support;
mod restore_support;
mod stream_support;
mod support;

use pg_test_harness::{Cluster, StopMode};
use stream_support::*;
use support::keys::{configure_key, contains, key_file};
use support::{TestRepo, describe};

const MARKER: &str = "walship-piece-marker-51c9";

/// Names in the local repository that are pieces or the journal of `segment`.
fn pieces_of(repo: &TestRepo, segment: &str) -> Vec<String> {
    repo_wal_names(repo.local_root())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{segment}.partial.")))
        .collect()
}

/// Every stored file of the local repository whose name is a piece of `segment`, with its
/// bytes as stored.
fn piece_files(repo: &TestRepo, segment: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![repo.local_root().join("wal")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if name.starts_with(&format!("{segment}.partial.")) {
                out.push((name, std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

fn flush_lsn(cluster: &Cluster) -> u64 {
    lsn(&cluster.query_string(
        "select coalesce(max(flush_lsn)::text, '0/0') from pg_stat_replication where application_name = 'walship'",
    ))
}

/// A PG15 primary with 1 MiB segments waiting for the synchronous standby `walship`.
fn sync_primary(install: &pg_test_harness::PgInstall) -> Cluster {
    Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("synchronous_standby_names", "'walship'")
        .setting("wal_keep_size", "'1GB'")
        .start()
}

/// `n` synchronous commits, each carrying the marker once among incompressible bytes.
fn marked_commits(primary: &Cluster, n: usize) {
    primary.execute("create table if not exists t(n int, pad text)");
    for i in 0..n {
        primary.execute(&format!(
            "insert into t values ({i}, '{MARKER}' || md5(random()::text) || md5(random()::text))"
        ));
    }
}

/// Streams `commits` synchronous commits into `repo` on a fresh segment, stops the server and
/// the stream, and returns the last segment's name, the reported flush within it, and the
/// server's bytes of that segment.
fn stream_a_tail(repo: &TestRepo, commits: usize) -> (String, usize, Vec<u8>) {
    let install = lifecycle_support::pg15().expect("PostgreSQL 15");
    let mut primary = sync_primary(&install);
    let mut stream = StreamProc::start(&primary, repo, &["--synchronous"]);
    wait_streaming(&primary, &stream, "walship");
    wait_sync_standby(&primary);
    primary.execute("select pg_switch_wal()");
    marked_commits(&primary, commits);
    let flushed = flush_lsn(&primary);
    let last = seg_name(1, flushed);
    let wal = pg_wal_files(&primary);
    primary.stop(StopMode::Fast);
    assert_eq!(stream.terminate(), Some(0), "{}", stream.log());
    let upto = (flushed % SEG) as usize;
    assert!(upto > 0, "flush {flushed:X} at a segment start");
    assert!(
        !pieces_of(repo, &last).is_empty(),
        "no pieces of {last} left to look at\n{}",
        stream.log()
    );
    (last.clone(), upto, wal[&last].clone())
}

#[test]
fn pieces_in_an_encrypted_repository_are_sealed_and_fetch_delivers_the_server_bytes() {
    if lifecycle_support::pg15().is_none() {
        return;
    }
    let repo = TestRepo::local();
    let key = key_file(&repo, "stream.keys");
    configure_key(&repo, Some(&key));
    let (last, upto, original) = stream_a_tail(&repo, 30);
    assert!(
        contains(&original[..upto], MARKER.as_bytes()),
        "the marker should be in the server's own WAL"
    );

    // Every stored piece: no plaintext.
    let pieces = piece_files(&repo, &last);
    for (name, bytes) in &pieces {
        assert!(
            !contains(bytes, MARKER.as_bytes()),
            "piece {name} holds plaintext WAL in an encrypted repository"
        );
    }

    // With the key, fetch assembles the pieces into the server's bytes.
    let delivered = fetch(&repo, &last, true);
    assert_eq!(delivered.len() as u64, SEG);
    assert!(
        delivered[..upto] == original[..upto],
        "fetch --allow-partial of {last} differs from pg_wal before the reported flush"
    );

    // Without it, fetch fails loudly rather than delivering sealed bytes or "absent".
    configure_key(&repo, None);
    let dest = repo.dir.path().join("nokey");
    let out = repo.walship(&["fetch", "--allow-partial", &last, dest.to_str().unwrap()]);
    assert!(
        !out.status.success() && out.status.code() != Some(1),
        "fetch without the key: {}",
        describe(&out)
    );
}

#[test]
fn copy_carries_a_journals_frames_as_pieces_and_the_target_delivers_the_same_tail() {
    if lifecycle_support::pg15().is_none() {
        return;
    }
    let source = TestRepo::local();
    let target = TestRepo::local();
    let (last, upto, original) = stream_a_tail(&source, 30);
    let source_pieces = pieces_of(&source, &last);
    assert_eq!(
        source_pieces,
        vec![format!("{last}.partial.journal")],
        "a local repository's synchronous tail is one journal"
    );

    let out = source.walship(&["copy", "--to", &target.url]);
    assert!(out.status.success(), "copy: {}", describe(&out));
    support::chown_tree_like(target.local_root(), target.local_root());

    // The journal's frames arrive as piece objects (create-only, one per frame).
    let copied = pieces_of(&target, &last);
    assert!(
        copied.len() >= 10 && copied.iter().all(|n| !n.ends_with(".journal")),
        "the target does not hold the journal's frames as pieces: {copied:?}"
    );
    // A second copy finds them all present and changes nothing.
    let out = source.walship(&["copy", "--to", &target.url]);
    assert!(out.status.success(), "second copy: {}", describe(&out));
    assert_eq!(pieces_of(&target, &last), copied);
    let from_source = fetch(&source, &last, true);
    let from_target = fetch(&target, &last, true);
    assert!(
        from_target == from_source,
        "fetch --allow-partial of {last} differs between the source and the copy"
    );
    assert!(from_target[..upto] == original[..upto]);
}

#[test]
fn pieces_are_never_object_locked_but_complete_segments_are() {
    let Some(install) = lifecycle_support::pg15() else {
        return;
    };
    let Some(mut repo) = TestRepo::s3() else {
        return;
    };
    let s3 = repo.s3.take().unwrap();
    let bucket = s3.create_object_lock_bucket().unwrap();
    repo.url = format!("s3://{bucket}/cluster-a");
    std::fs::write(
        &repo.config,
        format!(
            "repo = \"{}\"\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\nconnect_timeout = \"1s\"\n\
             operation_timeout = \"10s\"\nmax_attempts = 3\nobject_lock = \"governance\"\n\
             object_lock_margin = \"60s\"\n[retention]\npitr_window = \"1s\"\n",
            repo.url, s3.endpoint, s3.region
        ),
    )
    .unwrap();
    repo.s3 = Some(s3);

    let mut primary = sync_primary(&install);
    let mut stream = StreamProc::start(&primary, &repo, &["--synchronous"]);
    wait_streaming(&primary, &stream, "walship");
    wait_sync_standby(&primary);
    primary.execute("select pg_switch_wal()");
    marked_commits(&primary, 20);
    let completed = seg_name(1, flush_lsn(&primary));
    primary.execute("select pg_switch_wal()");
    marked_commits(&primary, 20);
    let last = seg_name(1, flush_lsn(&primary));
    assert_ne!(completed, last);
    primary.stop(StopMode::Fast);
    assert_eq!(stream.terminate(), Some(0), "{}", stream.log());

    let s3 = repo.s3.as_ref().unwrap();
    let listed = s3
        .http(
            "GET",
            &format!("/{bucket}?list-type=2&prefix=cluster-a/wal/"),
            b"",
        )
        .unwrap();
    let body = listed.body_text();
    let keys: Vec<String> = body
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_string)
        .collect();
    let pieces: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(&format!("{last}.partial.")))
        .collect();
    assert!(!pieces.is_empty(), "no pieces of {last} stored: {keys:?}");
    let retention = |key: &str| {
        let r = s3
            .http("GET", &format!("/{bucket}/{key}?retention"), b"")
            .unwrap();
        (r.status, r.body_text())
    };
    for key in &pieces {
        let head = s3.http("HEAD", &format!("/{bucket}/{key}"), b"").unwrap();
        assert_eq!(head.status, 200, "{key} vanished");
        let (status, body) = retention(key);
        assert!(
            status != 200 || !body.contains("<RetainUntilDate>"),
            "piece {key} is Object-Locked: {body}"
        );
    }
    // The check above means something: the complete segment of the same stream is locked.
    let complete = format!("cluster-a/wal/{}/{completed}", &completed[..16]);
    assert!(keys.contains(&complete), "{complete} not stored: {keys:?}");
    let (status, body) = retention(&complete);
    assert!(
        status == 200 && body.contains("<RetainUntilDate>"),
        "the complete segment {complete} is not locked: {status} {body}"
    );
}
