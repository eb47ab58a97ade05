//! The backup pipeline on crafted event streams (no server): tar archives in both shapes
//! Postgres sends, bundling across several bundles with parallel uploads, the manifest
//! written last, materialisation back to identical files, and every refusal: `../` and
//! absolute tar paths, escaping links, missing WAL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use walship_common::backup::{
    BackupError, BackupEvent, BackupOptions, BackupOutcome, EventList, Progress, ServerInfo,
    choose_id, read_catalog, remove_incomplete, take_backup,
};
use walship_common::catalog::{FileKind, TablespaceInfo};
use walship_common::codec::Codec;
use walship_common::pg::file_name::{ArchiveFileName, WalFileName};
use walship_common::pg::segment::WalSegSize;
use walship_common::pg::timeline::TimelineId;
use walship_common::repo::{RepoIdentity, Repository, layout};
use walship_common::storage::{AnyStorage, LocalStorage};

const SYSID: u64 = 7_400_000_000_000_000_001;

enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>),
    Link(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    /// Any other type flag (device, FIFO, extension header).
    Special(&'a str, u8),
}

/// A tar archive written header by header, so that any name (even an unsafe one) can be
/// put in it; `end_blocks` adds the two zero blocks PG 15+ send.
fn tar_archive(entries: &[Entry<'_>], end_blocks: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let (name, kind, data, link): (&str, u8, &[u8], &str) = match entry {
            Entry::Dir(n) => (n, b'5', &[], ""),
            Entry::File(n, d) => (n, b'0', d, ""),
            Entry::Link(n, t) => (n, b'2', &[], t),
            Entry::HardLink(n, t) => (n, b'1', &[], t),
            Entry::Special(n, kind) => (n, *kind, &[], ""),
        };
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, if kind == b'5' { 0o700 } else { 0o600 });
        octal(&mut h, 108, 8, 26);
        octal(&mut h, 116, 8, 26);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, 1_763_800_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h, 148, 7, sum);
        h[155] = b' ';
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if end_blocks {
        out.resize(out.len() + 1024, 0);
    }
    out
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Half compressible, half noise.
            if (i / 4096) % 2 == 0 {
                (i % 251) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// Data events in small, uneven chunks, as a network delivers them.
fn chunked(bytes: &[u8]) -> Vec<BackupEvent> {
    bytes
        .chunks(7_777)
        .map(|c| BackupEvent::Data(Bytes::copy_from_slice(c)))
        .collect()
}

fn repo(dir: &Path) -> Repository {
    let storage = AnyStorage::from(LocalStorage::new(dir).unwrap());
    Repository::new(storage, Codec::Lz4)
}

fn server() -> ServerInfo {
    ServerInfo {
        system_identifier: SYSID,
        pg_version_num: 150_004,
        wal_segment_size: 16 << 20,
    }
}

fn options(wal_timeout: Duration) -> BackupOptions {
    BackupOptions {
        label: "test".into(),
        bundle_size: 64 << 10,
        parallel: 2,
        codec: Codec::Lz4,
        wal_timeout,
        remove_incomplete: true,
        chain: None,
    }
}

/// Takes one backup of `events` into `repo` with the test options.
async fn run_backup(
    repo: &Repository,
    events: Vec<BackupEvent>,
    wal_timeout: Duration,
) -> Result<BackupOutcome, BackupError> {
    let id = choose_id(repo).await.unwrap();
    take_backup(
        repo,
        id,
        EventList::new(events),
        server(),
        &options(wal_timeout),
        Arc::new(Progress::default()),
    )
    .await
}

/// A fresh repository holding the WAL every test stream's backup needs (segments 2 and 3).
async fn repo_with_wal() -> (Repository, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    archive_wal(
        &repo,
        &["000000010000000000000002", "000000010000000000000003"],
    )
    .await;
    (repo, dir)
}

/// What `walship archive` does: the identity (first time), then the segments.
async fn archive_wal(repo: &Repository, names: &[&str]) {
    repo.ensure_identity(&RepoIdentity::new(SYSID, 15, 16 << 20))
        .await
        .unwrap();
    let seg = WalSegSize::from_mib(16).unwrap();
    for name in names {
        let wal = WalFileName::parse(name, seg).unwrap();
        repo.put_content(
            &layout::wal_key(&ArchiveFileName::Segment(wal)),
            Bytes::from(vec![0u8; 64]),
            false,
        )
        .await
        .unwrap();
    }
}

fn stream(main: Vec<u8>, tablespace: Option<Vec<u8>>) -> Vec<BackupEvent> {
    let mut events = vec![
        BackupEvent::Started {
            start_lsn: "0/2000028".parse().unwrap(),
            timeline: TimelineId(1),
        },
        BackupEvent::Tablespaces {
            tablespaces: vec![TablespaceInfo {
                oid: 16384,
                location: "/srv/ts".into(),
            }],
            estimated_bytes: Some(1 << 20),
        },
    ];
    if let Some(ts) = tablespace {
        events.push(BackupEvent::ArchiveStart {
            name: "16384.tar".into(),
            tablespace: Some(16384),
        });
        events.extend(chunked(&ts));
        events.push(BackupEvent::ArchiveEnd);
    }
    events.push(BackupEvent::ArchiveStart {
        name: "base.tar".into(),
        tablespace: None,
    });
    events.extend(chunked(&main));
    events.push(BackupEvent::Progress(12345));
    events.push(BackupEvent::ArchiveEnd);
    events.push(BackupEvent::Manifest(Bytes::from_static(
        b"{\"PostgreSQL-Backup-Manifest-Version\": 1}\n",
    )));
    events.push(BackupEvent::Ended {
        stop_lsn: "0/3000100".parse().unwrap(),
        timeline: TimelineId(1),
    });
    events
}

fn main_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "backup_label",
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n".to_vec(),
        ),
        ("tablespace_map", b"16384 /srv/ts\n".to_vec()),
        ("PG_VERSION", b"15\n".to_vec()),
        ("base/1/1259", pseudo_random(300_000, 1)),
        ("base/1/2619", pseudo_random(90_000, 2)),
        ("base/1/empty", Vec::new()),
        ("global/pg_control", control_file()),
    ]
}

/// A `pg_control` stand-in: the system identifier first (as `ControlFileData` starts), so
/// a restore accepts it as this cluster's.
fn control_file() -> Vec<u8> {
    let mut bytes = pseudo_random(8192, 3);
    bytes[..8].copy_from_slice(&SYSID.to_ne_bytes());
    bytes
}

/// PG 13-14 send the tablespace link and no end blocks (`end_blocks` false); 15+ send end
/// blocks and no link.
fn main_archive(end_blocks: bool) -> Vec<u8> {
    let files = main_files();
    let mut entries = vec![
        Entry::Dir("base/"),
        Entry::Dir("base/1/"),
        Entry::Dir("global/"),
        Entry::Dir("pg_tblspc/"),
    ];
    if !end_blocks {
        entries.push(Entry::Link("pg_tblspc/16384", "/srv/ts"));
    }
    for (name, data) in &files {
        entries.push(Entry::File(name, data.clone()));
    }
    tar_archive(&entries, end_blocks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_round_trips_through_bundles_in_both_tar_shapes() {
    for end_blocks in [false, true] {
        let (repo, _dir) = repo_with_wal().await;
        let ts_file = pseudo_random(200_000, 9);
        let ts = tar_archive(
            &[
                Entry::Dir("PG_15_202209061/"),
                Entry::Dir("PG_15_202209061/5/"),
                Entry::File("PG_15_202209061/5/16385", ts_file.clone()),
            ],
            end_blocks,
        );
        let id = choose_id(&repo).await.unwrap();
        let progress = Arc::new(Progress::default());
        let outcome = take_backup(
            &repo,
            id,
            EventList::new(stream(main_archive(end_blocks), Some(ts))),
            server(),
            &options(Duration::from_secs(5)),
            progress.clone(),
        )
        .await
        .unwrap();
        let m = &outcome.manifest;
        assert!(m.bundles.len() >= 4, "{} bundles", m.bundles.len());
        assert_eq!(m.start_lsn.to_string(), "0/2000028");
        assert_eq!(m.stop_lsn.to_string(), "0/3000100");
        assert_eq!(m.system_identifier, SYSID);
        assert!(m.backup_label.starts_with("START WAL LOCATION"));
        assert_eq!(m.tablespace_map.as_deref(), Some("16384 /srv/ts\n"));
        assert!(
            m.pg_backup_manifest
                .as_deref()
                .unwrap()
                .contains("Manifest-Version")
        );
        assert_eq!(m.files.last().unwrap().path, "global/pg_control");
        let raw: u64 = m.files.iter().map(|f| f.size).sum();
        assert_eq!(m.bytes_raw, raw);
        assert_eq!(progress.snapshot().raw, raw);
        let link = m
            .files
            .iter()
            .find(|f| f.kind == FileKind::Symlink)
            .unwrap();
        assert_eq!(link.path, "pg_tblspc/16384");
        assert!(
            m.files
                .iter()
                .any(|f| f.path == "pg_tblspc/16384/PG_15_202209061/5/16385")
        );

        let catalog = read_catalog(&repo).await.unwrap();
        assert_eq!(catalog.complete.len(), 1);
        assert!(catalog.incomplete.is_empty());

        let out = tempfile::tempdir().unwrap();
        let ts_dir = out.path().join("ts");
        let data = out.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // Back into files with the restore crate (the one materialisation there is).
        let opts = walship_restore::MaterialiseOptions {
            tablespaces: BTreeMap::from([(16384, ts_dir.clone())]),
            parallel: 2,
            ..Default::default()
        };
        walship_restore::materialise::materialise(
            &repo,
            &catalog.complete[0],
            &data,
            &opts,
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        for (name, bytes) in main_files() {
            let path = data.join(name);
            let found = std::fs::read(&path).unwrap();
            if name == "tablespace_map" {
                assert_eq!(found, format!("16384 {}\n", ts_dir.display()).into_bytes());
            } else {
                assert!(found == bytes, "{name} differs");
            }
        }
        assert_eq!(
            std::fs::read(ts_dir.join("PG_15_202209061/5/16385")).unwrap(),
            ts_file
        );
        assert_eq!(
            std::fs::read_link(data.join("pg_tblspc/16384")).unwrap(),
            ts_dir
        );
        assert!(data.join("backup_manifest").exists());
    }
}

async fn refused(entries: Vec<Entry<'_>>) -> (BackupError, Repository, tempfile::TempDir) {
    let (repo, dir) = repo_with_wal().await;
    let mut all = vec![
        Entry::File("backup_label", b"x".to_vec()),
        Entry::File("base/1/1", pseudo_random(100_000, 4)),
    ];
    all.extend(entries);
    let err = run_backup(
        &repo,
        stream(tar_archive(&all, true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    (err, repo, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_and_absolute_tar_paths_are_refused_and_leave_no_backup() {
    for name in ["../escape", "base/../../escape", "/etc/passwd"] {
        let (err, repo, _dir) = refused(vec![Entry::File(name, b"evil".to_vec())]).await;
        assert!(
            matches!(err, BackupError::UnsafePath { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert!(err.is_refusal());
        let catalog = read_catalog(&repo).await.unwrap();
        assert!(catalog.complete.is_empty(), "{name}: a backup is listed");
        // What was uploaded before the refusal is an incomplete backup, and removable.
        let removed = remove_incomplete(&repo, None).await.unwrap();
        assert_eq!(removed.len(), catalog.incomplete.len());
        assert!(read_catalog(&repo).await.unwrap().incomplete.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_other_than_listed_tablespaces_and_hard_links_are_refused() {
    for entry in [
        Entry::Link("base/1/evil", "/etc"),
        Entry::Link("pg_tblspc/99999", "/etc"),
        Entry::HardLink("base/1/hard", "base/1/1"),
    ] {
        let (err, repo, _dir) = refused(vec![entry]).await;
        assert!(matches!(err, BackupError::RefusedEntry { .. }), "{err}");
        assert!(read_catalog(&repo).await.unwrap().complete.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_fifos_and_extension_headers_are_refused() {
    // '3' character device, '4' block device, '6' FIFO, 'x'/'g' pax headers, 'L'/'K' GNU
    // long names, 'S' sparse: Postgres writes none of them.
    for kind in [b'3', b'4', b'6', b'x', b'g', b'L', b'K', b'S', b'V'] {
        let (err, repo, _dir) = refused(vec![Entry::Special("base/1/odd", kind)]).await;
        assert!(
            matches!(err, BackupError::RefusedEntry { .. }),
            "{}: {err}",
            kind as char
        );
        assert!(err.to_string().contains("base/1/odd"), "{err}");
        assert!(err.is_refusal());
        assert!(read_catalog(&repo).await.unwrap().complete.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_corrupt_archive_fails_naming_it_and_writes_no_manifest() {
    let archive = main_archive(true);
    let data_end = archive.len() - 1024;
    // Four directory headers, then backup_label (62 bytes: header, data, padding), ...:
    // inside its header, inside its padding, inside base/1/1259's data, before the last
    // byte of global/pg_control.
    let cuts = [4 * 512 + 100, 5 * 512 + 100, 11 * 512 + 1000, data_end - 1];
    let mut corrupt = archive.clone();
    corrupt[0] ^= 1; // the first header's checksum no longer matches
    let mut cases: Vec<(Vec<u8>, &str)> = cuts
        .iter()
        .map(|&cut| (archive[..cut].to_vec(), "truncated"))
        .collect();
    cases.push((corrupt, "checksum"));
    for (bytes, what) in cases {
        let (repo, _dir) = repo_with_wal().await;
        let err = run_backup(&repo, stream(bytes, None), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Tar { .. }), "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains("base.tar"), "{what}: {text}");
        assert!(text.contains(what), "{what}: {text}");
        assert!(read_catalog(&repo).await.unwrap().complete.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wal_fails_naming_the_segment_and_writes_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    archive_wal(&repo, &["000000010000000000000002"]).await;
    let err = run_backup(
        &repo,
        stream(main_archive(true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BackupError::MissingWal { ref segment, .. } if segment == "000000010000000000000003"),
        "{err}"
    );
    assert!(err.to_string().contains("000000010000000000000003"));
    let catalog = read_catalog(&repo).await.unwrap();
    assert!(catalog.complete.is_empty());
    assert_eq!(catalog.incomplete.len(), 1);

    // The next successful backup removes the leftovers.
    archive_wal(&repo, &["000000010000000000000003"]).await;
    let outcome = run_backup(
        &repo,
        stream(main_archive(true), None),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(outcome.removed_incomplete.len(), 1);
    let catalog = read_catalog(&repo).await.unwrap();
    assert_eq!(catalog.complete.len(), 1);
    assert!(catalog.incomplete.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_repository_is_refused_before_any_data_moves() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    repo.ensure_identity(&RepoIdentity::new(SYSID + 1, 15, 16 << 20))
        .await
        .unwrap();
    let err = run_backup(
        &repo,
        stream(main_archive(true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.is_refusal(), "{err}");
    let catalog = read_catalog(&repo).await.unwrap();
    assert!(catalog.complete.is_empty() && catalog.incomplete.is_empty());
}

/// Issue 19, item 2: bundle uploads that keep failing (beyond the retry budget) fail the
/// backup with a storage error, not a refusal, and leave no manifest: nothing the catalog
/// lists as a backup; what was uploaded is an incomplete backup, removable. Once the
/// failures stop, the same repository takes a complete backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_bundle_uploads_leave_no_manifest_and_nothing_complete() {
    use walship_common::storage::{FaultPlan, FaultyStorage, RetryPolicy, StorageOp};
    let (repo, _dir) = repo_with_wal().await;
    let quick = repo.storage().clone().with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        deadline: None,
        not_after: None,
    });
    let failing = Repository::new(
        AnyStorage::from(FaultyStorage::new(
            quick,
            FaultPlan::fail_first(1000).only(&[StorageOp::Put]),
        )),
        Codec::Lz4,
    );
    let err = run_backup(
        &failing,
        stream(main_archive(true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        !err.is_refusal(),
        "a storage failure is not a refusal: {err}"
    );
    assert!(err.to_string().contains("injected fault"), "{err}");
    let catalog = read_catalog(&repo).await.unwrap();
    assert!(
        catalog.complete.is_empty(),
        "a backup is listed after failed uploads"
    );
    remove_incomplete(&repo, None).await.unwrap();
    let outcome = run_backup(
        &repo,
        stream(main_archive(true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(
        read_catalog(&repo).await.unwrap().complete[0].id,
        outcome.manifest.id
    );
}

/// Issue 19, item 2: restore's bundle retry, over bundle streams that break mid-object.
/// Breaking fewer times than its attempts, the restore completes with identical files;
/// breaking every time, it fails with a storage error and `global/pg_control` (written last)
/// is absent, so the directory cannot be mistaken for a restored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_starts_a_broken_bundle_again_and_fails_cleanly_when_it_keeps_breaking() {
    use walship_common::storage::{FaultPlan, FaultyStorage, StorageOp};
    let (repo, _dir) = repo_with_wal().await;
    let outcome = run_backup(
        &repo,
        stream(main_archive(true), None),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let manifest = outcome.manifest;
    for (breaks, succeeds) in [(2, true), (3, false)] {
        let faulty = Repository::new(
            AnyStorage::from(FaultyStorage::new(
                repo.storage().clone(),
                FaultPlan::fail_first(breaks)
                    .only(&[StorageOp::Get])
                    .cut_get_after(1000),
            )),
            Codec::Lz4,
        );
        let out = tempfile::tempdir().unwrap();
        let data = out.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let opts = walship_restore::MaterialiseOptions {
            tablespaces: BTreeMap::from([(16384, out.path().join("ts"))]),
            parallel: 2,
            ..Default::default()
        };
        let result = walship_restore::materialise::materialise(
            &faulty,
            &manifest,
            &data,
            &opts,
            Arc::new(|_| {}),
        )
        .await;
        if succeeds {
            result.unwrap_or_else(|e| panic!("{breaks} breaks: {e}"));
            for (name, bytes) in main_files() {
                if name != "tablespace_map" {
                    assert!(
                        std::fs::read(data.join(name)).unwrap() == bytes,
                        "{name} differs"
                    );
                }
            }
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, walship_restore::RestoreError::Storage(_)),
                "{breaks} breaks: {err}"
            );
            assert!(
                !data.join("global/pg_control").exists(),
                "pg_control written"
            );
        }
    }
}
