//! `PieceStore` on a local directory: piece objects (through a wrapper that is not `local()`),
//! consolidation and adoption; journal frames, a torn frame cut off at adoption, replacement
//! of disagreeing or untrusted journals, release.
use super::pieces::*;
use crate::codec::Codec;
use crate::lsn::Lsn;
use crate::pg::segment::WalSegSize;
use crate::pg::timeline::TimelineId;
use crate::repo::Repository;
use crate::repo::journal::{self, JournalEnd};
use crate::repo::layout;
use crate::repo::partial::read_partial;
use crate::storage::{AnyStorage, LocalStorage};
use crate::stream::segment::SegmentAssembler;
use crate::stream::tail::TailOutcome;
use bytes::Bytes;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::new(
        AnyStorage::from(LocalStorage::new(dir).unwrap()),
        Codec::Lz4,
    )
}

fn assembler() -> SegmentAssembler {
    SegmentAssembler::new(
        TimelineId(1),
        Lsn(3 << 20),
        WalSegSize::from_mib(1).unwrap(),
    )
    .unwrap()
}

/// The same directory seen through a fault-free wrapper: not `local()`, so pieces.
fn object_repo(dir: &std::path::Path) -> Repository {
    let local = AnyStorage::from(LocalStorage::new(dir).unwrap());
    let wrapped = crate::storage::FaultyStorage::new(local, Default::default());
    Repository::new(AnyStorage::from(wrapped), Codec::Lz4)
}

/// Flushes `PIECES_PER_BASE + 5` messages of growing size, one store each, appending them to
/// `data`; after every flush the stored tail reads back as exactly `data`.
async fn flush_many(
    repo: &Repository,
    asm: &mut SegmentAssembler,
    store: &mut PieceStore,
    data: &mut Vec<u8>,
) {
    for i in 0..(PIECES_PER_BASE + 5) {
        let msg = vec![i as u8; 100 + i];
        data.extend_from_slice(&msg);
        asm.push(asm.position(), Bytes::from(msg)).unwrap();
        assert_eq!(
            store.store(repo, &asm.tail()).await.unwrap(),
            TailOutcome::Stored
        );
        // Every flush's bytes are readable at once.
        let found = read_partial(repo, asm.current()).await.unwrap().unwrap();
        assert_eq!(found.content, data[..]);
    }
}

#[tokio::test]
async fn flushes_are_pieces_consolidated_adopted_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let repo = object_repo(dir.path());
    let (mut asm, mut store, mut data) = (assembler(), PieceStore::default(), Vec::new());
    flush_many(&repo, &mut asm, &mut store, &mut data).await;
    store.settle().await;
    let found = read_partial(&repo, asm.current()).await.unwrap().unwrap();
    assert!(found.base_len.is_some(), "no consolidation: {found:?}");
    assert!(found.pieces.len() < PIECES_PER_BASE, "{found:?}");
    assert_eq!(found.content, data[..]);

    // A new run adopts what is stored and goes on from its end.
    let mut again = PieceStore::default();
    let extra = vec![0xEE; 300];
    data.extend_from_slice(&extra);
    asm.push(asm.position(), Bytes::from(extra)).unwrap();
    again.store(&repo, &asm.tail()).await.unwrap();
    let found = read_partial(&repo, asm.current()).await.unwrap().unwrap();
    assert_eq!(found.content, data[..]);

    // Released: base and pieces are gone.
    again.release(&repo, asm.current()).await.unwrap();
    again.settle().await;
    assert_eq!(read_partial(&repo, asm.current()).await.unwrap(), None);
}

#[tokio::test]
async fn local_flushes_are_frames_of_one_journal_adopted_after_a_torn_frame() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let (mut asm, mut store, mut data) = (assembler(), PieceStore::default(), Vec::new());
    flush_many(&repo, &mut asm, &mut store, &mut data).await;
    store.settle().await;
    let segment = asm.current();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!((found.base_len, found.pieces.len()), (None, 0), "{found:?}");
    let journal = found.journal.clone().unwrap();
    assert_eq!(journal.frames, PIECES_PER_BASE + 5);
    assert_eq!(journal.frames_used, journal.frames);

    // A crash tore a frame that was being appended: it was never acknowledged.
    let path = dir.path().join(layout::tail_journal_key(segment).as_str());
    let mut torn = std::fs::read(&path).unwrap();
    let valid = journal.valid_len as usize;
    assert!(
        torn.len() >= 1 << 20,
        "not preallocated: {} bytes",
        torn.len()
    );
    assert!(torn[valid..].iter().all(|&b| b == 0));
    let frame = journal::encode_frame(data.len() as u32, &[7; 900]);
    torn[valid..valid + 300].copy_from_slice(&frame[..300]);
    std::fs::write(&path, &torn).unwrap();
    assert_eq!(
        read_partial(&repo, segment).await.unwrap().unwrap().content,
        data[..]
    );

    // A new run adopts the journal, cuts the torn frame off and appends a shorter one.
    drop(store);
    let mut again = PieceStore::default();
    let extra = vec![0xEE; 10];
    data.extend_from_slice(&extra);
    asm.push(asm.position(), Bytes::from(extra)).unwrap();
    again.store(&repo, &asm.tail()).await.unwrap();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!(found.content, data[..]);
    let j = found.journal.unwrap();
    assert_eq!((j.frames, j.end), (PIECES_PER_BASE + 6, JournalEnd::Clean));
    assert!(j.valid_len > valid as u64);

    // Received WAL that disagrees (the server rewrote it): a new base, a new journal.
    let mut other = assembler();
    let rewritten = vec![0x55; 2000];
    other
        .push(other.position(), Bytes::from(rewritten.clone()))
        .unwrap();
    let mut third = PieceStore::default();
    third.store(&repo, &other.tail()).await.unwrap();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!(found.content, rewritten[..]);
    assert_eq!((found.base_len, found.journal), (Some(2000), None));
    other
        .push(other.position(), Bytes::from(vec![0x66; 50]))
        .unwrap();
    third.store(&repo, &other.tail()).await.unwrap();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!(found.content.len(), 2050);
    assert_eq!(found.journal.unwrap().frames, 1);

    // Released: base and journal are gone.
    third.release(&repo, segment).await.unwrap();
    third.settle().await;
    assert_eq!(read_partial(&repo, segment).await.unwrap(), None);
}

#[tokio::test]
async fn after_a_failed_append_the_journal_is_replaced_by_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let mut asm = assembler();
    let mut store = PieceStore::default();
    let mut data = Vec::new();
    for i in 0..3u8 {
        let msg = vec![i; 500];
        data.extend_from_slice(&msg);
        asm.push(asm.position(), Bytes::from(msg)).unwrap();
        store.store(&repo, &asm.tail()).await.unwrap();
    }
    let segment = asm.current();
    // What `store` does when an append or its fdatasync fails: the file is not trusted.
    let path = dir.path().join(layout::tail_journal_key(segment).as_str());
    let mut garbage = std::fs::read(&path).unwrap();
    garbage.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&path, &garbage).unwrap();
    store.distrust(segment);

    let msg = vec![9u8; 40];
    data.extend_from_slice(&msg);
    asm.push(asm.position(), Bytes::from(msg)).unwrap();
    store.store(&repo, &asm.tail()).await.unwrap();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!(found.content, data[..]);
    assert_eq!((found.base_len, found.journal), (Some(1540), None));
    // The next flush starts a new journal after the base.
    let msg = vec![8u8; 60];
    data.extend_from_slice(&msg);
    asm.push(asm.position(), Bytes::from(msg)).unwrap();
    store.store(&repo, &asm.tail()).await.unwrap();
    let found = read_partial(&repo, segment).await.unwrap().unwrap();
    assert_eq!(found.content, data[..]);
    let j = found.journal.unwrap();
    assert_eq!((j.frames, j.frames_used, j.end), (1, 1, JournalEnd::Clean));
}
