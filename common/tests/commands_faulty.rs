//! The commands' own logic over `FaultyStorage` (issue 19, item 2): what `archive`, `fetch`
//! and the stream uploader do when storage fails in the ways a network fails, deterministic,
//! with no server, in milliseconds (one test waits out the uploader's 1 s backoff).
//! (`backup` with failing bundle uploads and restore's bundle retry are in
//! `backup_stream.rs`, beside the helpers that build a backup.)

// The archive future's type is deep (the S3 backend's types are in every storage call's
// future): rustc's default query depth of 128 is not enough to lay it out.
#![recursion_limit = "256"]

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use walship_common::Lsn;
use walship_common::archive::{self, ArchiveOutcome};
use walship_common::codec::Codec;
use walship_common::fetch::{self, FetchOptions};
use walship_common::pg::page_header::{
    XLOG_BLCKSZ, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER, XLogLongPageHeaderData,
    XLogPageHeaderData,
};
use walship_common::pg::{TimelineId, WalFileName, WalSegSize};
use walship_common::repo::{Repository, layout};
use walship_common::storage::{
    AnyStorage, FaultPlan, FaultyStorage, LocalStorage, RetryPolicy, StorageOp,
};

const SYSID: u64 = 7_000_000_000_000_000_001;
/// Postgres 15's page magic.
const MAGIC_15: u16 = 0xD110;
const SEGMENT: &str = "000000010000000000000003";

fn one_mib() -> WalSegSize {
    WalSegSize::from_mib(1).unwrap()
}

/// A segment where every page has a valid header and some payload (`mark` varies it).
fn segment(name: &str, mark: u8) -> Vec<u8> {
    let file = WalFileName::parse(name, one_mib()).unwrap();
    let size = one_mib().bytes() as usize;
    let block = XLOG_BLCKSZ as usize;
    let mut bytes = vec![0u8; size];
    for (index, page) in bytes.chunks_exact_mut(block).enumerate() {
        let short = |info| XLogPageHeaderData {
            xlp_magic: MAGIC_15,
            xlp_info: info,
            xlp_tli: TimelineId(1),
            xlp_pageaddr: Lsn(file.start_lsn().0 + (index * block) as u64),
            xlp_rem_len: 0,
        };
        if index == 0 {
            let long = XLogLongPageHeaderData {
                std: short(XLP_LONG_HEADER),
                xlp_sysid: SYSID,
                xlp_seg_size: size as u32,
                xlp_xlog_blcksz: XLOG_BLCKSZ,
            };
            page[..40].copy_from_slice(&long.encode());
        } else {
            page[..24].copy_from_slice(&short(XLP_FIRST_IS_CONTRECORD).encode());
        }
        page[100] = mark;
    }
    bytes
}

/// A local repository (fast retries) and, over the same files, one whose storage fails by
/// `plan`.
fn repos(dir: &Path, plan: FaultPlan) -> (Repository, Repository) {
    let clean =
        AnyStorage::from(LocalStorage::new(dir.join("repo")).unwrap()).with_retry(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            deadline: None,
            not_after: None,
        });
    let faulty = AnyStorage::from(FaultyStorage::new(clean.clone(), plan));
    (
        Repository::new(clean, Codec::Lz4),
        Repository::new(faulty, Codec::Lz4),
    )
}

/// Writes segment `name` with `mark` into `<dir>/pg_wal` and returns its path.
fn wal_file(dir: &Path, name: &str, mark: u8) -> PathBuf {
    let pg_wal = dir.join("pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let path = pg_wal.join(name);
    std::fs::write(&path, segment(name, mark)).unwrap();
    path
}

/// The archive race its own writer lost: every first `put` stores the object and then
/// fails as if the reply was lost, so the retry finds `walship.json` and the segment already
/// there. archive compares and reports success, and the repository holds the segment
/// intact.
#[tokio::test]
async fn archive_whose_put_replies_are_lost_compares_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::fail_first(1)
        .only(&[StorageOp::Put])
        .lose_put_reply();
    let (clean, faulty) = repos(dir.path(), plan);
    let path = wal_file(dir.path(), SEGMENT, 0xAB);
    let done = archive::archive_file(&faulty, &path, None).await.unwrap();
    assert!(
        matches!(done.outcome, ArchiveOutcome::AlreadyArchived),
        "{:?}",
        done.outcome
    );
    let probe = faulty.storage().faulty().unwrap();
    let key =
        layout::wal_key(&walship_common::pg::ArchiveFileName::parse(SEGMENT, one_mib()).unwrap());
    assert_eq!(probe.attempts(StorageOp::Put, key.as_str()), 2);
    let stored = clean.get_content(&key, 16 << 20).await.unwrap();
    assert!(stored[..] == std::fs::read(&path).unwrap()[..]);
}

/// The archive race lost to another writer with different bytes: between archive's check
/// (the segment is absent) and its create-only put, another writer stores other content
/// under the name. archive compares and refuses naming the segment, never reports success,
/// and the other writer's object is left as it is.
#[tokio::test]
async fn archive_that_loses_the_race_to_other_content_refuses() {
    use walship_common::codec::encode_to_vec;
    use walship_common::repo::RepoIdentity;
    let dir = tempfile::tempdir().unwrap();
    let other = encode_to_vec(&segment(SEGMENT, 0xCD), Codec::Lz4).unwrap();
    let plan = FaultPlan::fail_first(1)
        .only(&[StorageOp::Put])
        .race_put_with(bytes::Bytes::from(other.clone()));
    let (clean, faulty) = repos(dir.path(), plan);
    clean
        .ensure_identity(&RepoIdentity::new(SYSID, 15, 1 << 20))
        .await
        .unwrap();
    let path = wal_file(dir.path(), SEGMENT, 0xAB);
    let err = archive::archive_file(&faulty, &path, None)
        .await
        .unwrap_err();
    assert!(err.is_refusal(), "{err}");
    assert!(err.to_string().contains(SEGMENT), "{err}");
    let key =
        layout::wal_key(&walship_common::pg::ArchiveFileName::parse(SEGMENT, one_mib()).unwrap());
    assert!(clean.storage().get_bytes(&key, 32 << 20).await.unwrap() == other);
}

/// No spool: the destinations are not inside a `pg_wal` directory.
fn no_spool() -> FetchOptions {
    FetchOptions {
        allow_partial: false,
        spool_dir: None,
    }
}

/// A fetch whose read of the segment breaks mid-object on every attempt: an error that is
/// not "not found" (so the binary exits above 125 and Postgres stops instead of promoting),
/// and nothing delivered, not even a temporary file.
#[tokio::test]
async fn fetch_whose_reads_break_mid_object_delivers_nothing_and_is_not_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::fail_first(100)
        .only(&[StorageOp::Get])
        .cut_get_after(4096);
    let (clean, faulty) = repos(dir.path(), plan);
    let path = wal_file(dir.path(), SEGMENT, 0xAB);
    archive::archive_file(&clean, &path, None).await.unwrap();
    let restore_dir = dir.path().join("restore_pg_wal");
    std::fs::create_dir_all(&restore_dir).unwrap();
    let dest = restore_dir.join("RECOVERYXLOG");
    let err = fetch::fetch(&faulty, SEGMENT, &dest, &no_spool(), |_| {})
        .await
        .unwrap_err();
    assert!(
        !err.is_not_found(),
        "a broken read must not read as absent: {err}"
    );
    assert!(!dest.exists(), "nothing may be delivered");
    let left: Vec<_> = std::fs::read_dir(&restore_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "files left in the destination directory: {left:?}"
    );
}

/// Reads that break mid-object fewer times than the retry budget are ridden over: the
/// segment is delivered byte for byte.
#[tokio::test]
async fn fetch_rides_over_reads_that_break_within_the_retry_budget() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::fail_first(2)
        .only(&[StorageOp::Get])
        .cut_get_after(4096);
    let (clean, faulty) = repos(dir.path(), plan);
    let path = wal_file(dir.path(), SEGMENT, 0xAB);
    archive::archive_file(&clean, &path, None).await.unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    fetch::fetch(&faulty, SEGMENT, &dest, &no_spool(), |_| {})
        .await
        .unwrap();
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&path).unwrap());
}

/// The stream uploader's own retry: storage failing beyond its retry budget makes the
/// uploader wait and store the segment again (counted in the retry metric), and the flush
/// position moves only once the segment is stored, intact.
#[tokio::test]
async fn stream_uploader_retries_a_store_the_storage_layer_gave_up_on() {
    use std::sync::Arc;
    use walship_common::repo::RepoIdentity;
    use walship_common::stream::StreamMetrics;
    use walship_common::stream::segment::CompleteSegment;
    use walship_common::stream::uploader::Uploader;
    let dir = tempfile::tempdir().unwrap();
    // The storage layer makes 4 attempts; the first 6 puts of each key fail.
    let plan = FaultPlan::fail_first(6).only(&[StorageOp::Put]);
    let (clean, faulty) = repos(dir.path(), plan);
    clean
        .ensure_identity(&RepoIdentity::new(SYSID, 15, 1 << 20))
        .await
        .unwrap();
    let name = WalFileName::parse(SEGMENT, one_mib()).unwrap();
    let content = bytes::Bytes::from(segment(SEGMENT, 0xAB));
    let metrics = Arc::new(StreamMetrics::default());
    let uploader = Uploader::start(
        faulty,
        name.start_lsn(),
        metrics.clone(),
        CancellationToken::new(),
        Duration::from_secs(20),
    );
    uploader
        .segment(CompleteSegment {
            name,
            content: content.clone(),
        })
        .await
        .unwrap();
    let flushed = uploader.finish().await.unwrap();
    assert_eq!(flushed, Lsn(name.start_lsn().0 + (1 << 20)));
    assert!(
        metrics
            .render()
            .contains("walship_stream_upload_retries_total 1"),
        "{}",
        metrics.render()
    );
    let key = layout::wal_key(&walship_common::pg::ArchiveFileName::Segment(name));
    assert!(clean.get_content(&key, 16 << 20).await.unwrap() == content);
}

/// A refusal is not retried: a segment whose name holds other content in the repository
/// ends the uploader with that refusal, and the flush position does not move.
#[tokio::test]
async fn stream_uploader_does_not_retry_a_refusal() {
    use std::sync::Arc;
    use walship_common::stream::StreamMetrics;
    use walship_common::stream::segment::CompleteSegment;
    use walship_common::stream::uploader::Uploader;
    let dir = tempfile::tempdir().unwrap();
    let (clean, faulty) = repos(dir.path(), FaultPlan::default());
    let path = wal_file(dir.path(), SEGMENT, 0xAB);
    archive::archive_file(&clean, &path, None).await.unwrap();
    let name = WalFileName::parse(SEGMENT, one_mib()).unwrap();
    let metrics = Arc::new(StreamMetrics::default());
    let uploader = Uploader::start(
        faulty,
        name.start_lsn(),
        metrics.clone(),
        CancellationToken::new(),
        Duration::from_secs(20),
    );
    let _ = uploader
        .segment(CompleteSegment {
            name,
            content: bytes::Bytes::from(segment(SEGMENT, 0xCD)),
        })
        .await;
    let err = uploader.finish().await.unwrap_err();
    assert!(err.to_string().contains(SEGMENT), "{err}");
    assert!(
        metrics
            .render()
            .contains("walship_stream_upload_retries_total 0"),
        "{}",
        metrics.render()
    );
    assert_eq!(metrics.flushed_lsn(), name.start_lsn());
}
