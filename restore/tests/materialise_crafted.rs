//! Building the data directory (`materialise`) from crafted local repositories (issue 19,
//! item 3): manifests and bundles written by hand into a `file://` repository, no server.
//! Covers the happy path (every file from its bundle, the label from the manifest,
//! Postgres's `backup_manifest`, the recovery configuration, a relocated tablespace through
//! its link), `--delta` and `--force` over an earlier restore, every refusal made before
//! anything is written, and every failure after writing began, each of which must leave no
//! `global/pg_control` (the directory Postgres refuses to start). Runs in milliseconds; the
//! same code on real backups is covered by `walship/tests/restore_*.rs`.

mod crafted_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use walship_common::Lsn;
use walship_common::catalog::{BackupManifest, FileKind};
use walship_common::repo::{Repository, layout};
use walship_common::storage::Storage;
use walship_restore::materialise::{BACKUP_MANIFEST, PG_CONTROL, materialise};
use walship_restore::{
    MaterialiseOptions, MaterialiseSummary, ProblemKind, RecoveryConfig, RecoveryTarget,
    RestoreError, TargetAction,
};

const SYSTEM_ID: u64 = 7_300_000_000_000_000_002;
const SEG: u32 = 16 << 20;
const ID: &str = "20261122T100000Z";
/// The label restore writes: the manifest's, never the bundle's copy.
const LABEL: &str = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n";
const PG_MANIFEST: &str = "{\"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": []}\n";
const TABLESPACE: u32 = 16400;

/// A pg_control of `system_identifier` (its first 8 bytes, native endian).
fn control(system_identifier: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 8192];
    bytes[..8].copy_from_slice(&system_identifier.to_ne_bytes());
    bytes[100] = 42;
    bytes
}

fn relation(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The backup's files: (path, content, bundle). Bundle 0 holds the catalog and the label
/// Postgres sent; bundle 1 pg_control and the configuration.
fn files() -> Vec<(String, Vec<u8>, u32)> {
    [
        ("PG_VERSION", b"15\n".to_vec(), 0),
        ("base/1/1259", relation(40_000, 1), 0),
        ("base/1/1259_fsm", relation(24_576, 2), 0),
        (
            "backup_label",
            b"the label as Postgres sent it\n".to_vec(),
            0,
        ),
        (PG_CONTROL, control(SYSTEM_ID), 1),
        ("postgresql.conf", b"shared_buffers = 16MB\n".to_vec(), 1),
    ]
    .into_iter()
    .map(|(path, content, bundle)| (path.to_string(), content, bundle))
    .collect()
}

const DIRS: &[&str] = &["base", "base/1", "global", "pg_wal"];

/// A local repository of this cluster, in a temporary directory, and a place to restore to.
struct Crafted {
    dir: tempfile::TempDir,
    repo: Repository,
}

impl Crafted {
    async fn new() -> Crafted {
        let (dir, repo) = crafted_support::local_repo(SYSTEM_ID, SEG).await;
        Crafted { dir, repo }
    }

    fn target(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stores `files` as bundles and returns the manifest describing them (with `dirs`, and
    /// the tablespaces and links the caller adds afterwards).
    async fn backup(&self, files: &[(String, Vec<u8>, u32)], dirs: &[&str]) -> BackupManifest {
        let bundles = files.iter().map(|f| f.2).max().unwrap_or(0) + 1;
        let mut raw: Vec<Vec<u8>> = vec![Vec::new(); bundles as usize];
        let mut entries = Vec::new();
        for dir in dirs {
            entries.push(serde_json::json!({
                "path": dir, "kind": "dir", "size": 0, "mode": 0o700, "mtime": 1_700_000_000,
                "crc32c": null, "bundle": null, "offset": null, "link_target": null,
            }));
        }
        for (path, content, bundle) in files {
            let buf = &mut raw[*bundle as usize];
            entries.push(serde_json::json!({
                "path": path, "kind": "file", "size": content.len(), "mode": 0o600,
                "mtime": 1_700_000_000, "crc32c": crc32c::crc32c(content),
                "bundle": bundle, "offset": buf.len(), "link_target": null,
            }));
            buf.extend_from_slice(content);
        }
        let id = ID.parse().unwrap();
        let mut infos = Vec::new();
        for (i, content) in raw.into_iter().enumerate() {
            let name = format!("{i:08}");
            let key = layout::bundle_key(id, &name).unwrap();
            let raw_len = content.len();
            let stored = self
                .repo
                .put_content(&key, Bytes::from(content), false)
                .await
                .unwrap();
            infos.push(serde_json::json!({
                "name": name, "raw_len": raw_len, "stored_len": stored.stored_len,
            }));
        }
        let json = serde_json::json!({
            "format_version": 1, "id": ID, "label": "crafted",
            "system_identifier": SYSTEM_ID.to_string(),
            "pg_major": 15, "pg_version_num": 150010, "wal_segment_size": SEG,
            "start_timeline": 1, "stop_timeline": 1,
            "start_lsn": Lsn(0x300_0028).to_string(), "stop_lsn": Lsn(0x300_0100).to_string(),
            "start_time": "2026-11-22T09:59:00Z", "stop_time": "2026-11-22T10:00:00Z",
            "duration_ms": 60000, "backup_label": LABEL,
            "tablespace_map": null, "tablespaces": [], "pg_backup_manifest": PG_MANIFEST,
            "bytes_raw": 0, "bytes_stored": 0, "walship_version": "crafted",
            "bundles": infos, "files": entries,
        });
        serde_json::from_value(json).unwrap()
    }

    async fn restore(
        &self,
        manifest: &BackupManifest,
        opts: &MaterialiseOptions,
    ) -> Result<MaterialiseSummary, RestoreError> {
        materialise(&self.repo, manifest, &self.target(), opts, Arc::new(|_| {})).await
    }
}

fn options() -> MaterialiseOptions {
    MaterialiseOptions {
        parallel: 2,
        ..MaterialiseOptions::default()
    }
}

fn recovery() -> RecoveryConfig {
    RecoveryConfig {
        walship: PathBuf::from("/usr/bin/walship"),
        global_args: vec!["--repo".into(), "file:///srv/repo".into()],
        fetch_args: Vec::new(),
        env: Vec::new(),
        allow_partial: false,
        target: RecoveryTarget::Immediate,
        resolved_lsn: None,
        exclusive: false,
        timeline: None,
        action: TargetAction::Promote,
        standby: false,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every file of `files()` is in `dir` with its content, and the label is the manifest's.
fn assert_restored(dir: &Path) {
    for (path, content, _) in files() {
        let got = std::fs::read(dir.join(&path)).unwrap();
        if path == "backup_label" {
            assert_eq!(
                got,
                LABEL.as_bytes(),
                "backup_label comes from the manifest"
            );
        } else {
            assert_eq!(got, content, "{path}");
        }
    }
}

/// The paths under `dir`, sorted (to prove nothing changed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

fn refusal_kinds(err: &RestoreError) -> Vec<ProblemKind> {
    match err {
        RestoreError::Refused { problems } => problems.iter().map(|p| p.kind).collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_backup_is_restored_file_by_file_with_the_manifest_s_label_and_pg_control_last() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let opts = MaterialiseOptions {
        recovery: Some(recovery()),
        ..options()
    };
    let summary = c.restore(&manifest, &opts).await.unwrap();
    let dir = c.target();
    assert_restored(&dir);
    // Five files from the bundles (backup_label is written from the manifest), pg_control
    // among them; both bundles read.
    assert_eq!(summary.files_written, 5, "{summary:?}");
    assert_eq!(summary.bundles_fetched, 2);
    let bytes: u64 = files()
        .iter()
        .filter(|f| f.0 != "backup_label")
        .map(|f| f.1.len() as u64)
        .sum();
    assert_eq!(summary.bytes_written, bytes);
    assert_eq!(summary.files_kept, 0);
    assert_eq!(
        std::fs::read_to_string(dir.join(BACKUP_MANIFEST)).unwrap(),
        PG_MANIFEST
    );
    assert!(dir.join("pg_wal").is_dir(), "empty directories are made");
    assert!(
        !dir.join("tablespace_map").exists(),
        "no tablespace, no map"
    );
    for d in [&dir, &dir.join("base/1"), &dir.join("pg_wal")] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&dir.join("base/1/1259")), 0o600);
    let mtime = std::fs::metadata(dir.join("base/1/1259"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_700_000_000
    );
    assert!(dir.join("recovery.signal").is_file());
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("restore_command"), "{auto}");
    assert!(auto.contains("recovery_target = 'immediate'"), "{auto}");
}

#[tokio::test]
async fn a_relocated_tablespace_is_restored_through_its_link_and_the_map_names_it() {
    let c = Crafted::new().await;
    let ts_file = format!("pg_tblspc/{TABLESPACE}/PG_15_202209061/5/16401");
    let mut all = files();
    all.push((ts_file, relation(9000, 3), 1));
    let ts_dirs = [
        format!("pg_tblspc/{TABLESPACE}/PG_15_202209061"),
        format!("pg_tblspc/{TABLESPACE}/PG_15_202209061/5"),
    ];
    let mut dirs: Vec<&str> = DIRS.to_vec();
    dirs.push("pg_tblspc");
    dirs.extend(ts_dirs.iter().map(String::as_str));
    let mut manifest = c.backup(&all, &dirs).await;
    manifest
        .tablespaces
        .push(walship_common::catalog::TablespaceInfo {
            oid: TABLESPACE,
            location: "/srv/old-tablespace".into(),
        });
    let relocated = c.dir.path().join("ts");
    let opts = MaterialiseOptions {
        tablespaces: [(TABLESPACE, relocated.clone())].into_iter().collect(),
        ..options()
    };
    c.restore(&manifest, &opts).await.unwrap();
    let dir = c.target();
    assert_restored(&dir);
    let link = dir.join(format!("pg_tblspc/{TABLESPACE}"));
    assert_eq!(std::fs::read_link(&link).unwrap(), relocated);
    assert_eq!(
        std::fs::read(relocated.join("PG_15_202209061/5/16401")).unwrap(),
        relation(9000, 3)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("tablespace_map")).unwrap(),
        format!("{TABLESPACE} {}\n", relocated.display())
    );
}

#[tokio::test]
async fn delta_keeps_matching_files_rewrites_changed_ones_and_removes_the_rest() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    c.restore(&manifest, &options()).await.unwrap();
    let dir = c.target();
    std::fs::write(dir.join("base/1/1259"), b"changed since").unwrap();
    std::fs::write(dir.join("base/1/99999"), b"not in the backup").unwrap();
    std::fs::create_dir_all(dir.join("stray/deeper")).unwrap();
    std::fs::write(dir.join("tablespace_map"), b"16400 /elsewhere\n").unwrap();
    let opts = MaterialiseOptions {
        delta: true,
        ..options()
    };
    let summary = c.restore(&manifest, &opts).await.unwrap();
    assert_restored(&dir);
    // PG_VERSION, 1259_fsm and postgresql.conf matched; 1259 and pg_control were written.
    assert_eq!(summary.files_kept, 3, "{summary:?}");
    assert_eq!(summary.files_written, 2, "{summary:?}");
    // base/1/99999, stray/ and the old tablespace_map went.
    assert_eq!(summary.entries_removed, 3, "{summary:?}");
    assert!(!dir.join("base/1/99999").exists());
    assert!(!dir.join("stray").exists());
    assert!(!dir.join("tablespace_map").exists());
}

#[tokio::test]
async fn force_replaces_an_existing_data_directory() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    c.restore(&manifest, &options()).await.unwrap();
    let dir = c.target();
    std::fs::write(dir.join("base/1/1259"), b"changed since").unwrap();
    std::fs::write(dir.join("old.log"), b"from before").unwrap();
    let opts = MaterialiseOptions {
        force: true,
        ..options()
    };
    let summary = c.restore(&manifest, &opts).await.unwrap();
    assert_restored(&dir);
    assert_eq!(summary.files_written, 5);
    assert!(
        !dir.join("old.log").exists(),
        "--force clears the directory"
    );
}

#[tokio::test]
async fn a_directory_that_is_not_empty_is_refused_without_force_or_delta_and_left_untouched() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let dir = c.target();
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("notes/todo"), b"keep me").unwrap();
    let before = tree(&dir);
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    assert_eq!(refusal_kinds(&err), [ProblemKind::TargetNotEmpty]);
    assert!(err.is_refusal());
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(tree(&dir), before);
}

#[tokio::test]
async fn force_and_delta_refuse_a_directory_that_is_not_a_data_directory() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let dir = c.target();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("thesis.tex"), b"years of work").unwrap();
    for (force, delta) in [(true, false), (false, true)] {
        let opts = MaterialiseOptions {
            force,
            delta,
            ..options()
        };
        let err = c.restore(&manifest, &opts).await.unwrap_err();
        assert_eq!(refusal_kinds(&err), [ProblemKind::TargetNotUsable]);
        assert_eq!(tree(&dir), ["thesis.tex"]);
    }
}

#[tokio::test]
async fn delta_refuses_a_data_directory_of_another_cluster() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let dir = c.target();
    std::fs::create_dir_all(dir.join("global")).unwrap();
    std::fs::write(dir.join("PG_VERSION"), b"15\n").unwrap();
    std::fs::write(dir.join(PG_CONTROL), control(SYSTEM_ID + 1)).unwrap();
    let before = tree(&dir);
    let opts = MaterialiseOptions {
        delta: true,
        ..options()
    };
    let err = c.restore(&manifest, &opts).await.unwrap_err();
    assert_eq!(refusal_kinds(&err), [ProblemKind::OtherCluster]);
    assert_eq!(tree(&dir), before);
    assert_eq!(
        std::fs::read(dir.join(PG_CONTROL)).unwrap(),
        control(SYSTEM_ID + 1),
        "the other cluster's pg_control is left alone"
    );
}

#[tokio::test]
async fn the_directory_of_a_running_server_is_refused_even_with_force() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let dir = c.target();
    std::fs::create_dir_all(dir.join("global")).unwrap();
    std::fs::write(dir.join("PG_VERSION"), b"15\n").unwrap();
    // This test's own process stands in for the postmaster: it is running.
    std::fs::write(
        dir.join("postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), dir.display()),
    )
    .unwrap();
    let before = tree(&dir);
    let opts = MaterialiseOptions {
        force: true,
        ..options()
    };
    let err = c.restore(&manifest, &opts).await.unwrap_err();
    assert_eq!(refusal_kinds(&err), [ProblemKind::TargetInUse]);
    assert_eq!(tree(&dir), before);
}

#[tokio::test]
async fn tablespaces_not_placed_or_unknown_or_overlapping_are_refused() {
    let c = Crafted::new().await;
    let mut manifest = c.backup(&files(), DIRS).await;
    manifest
        .tablespaces
        .push(walship_common::catalog::TablespaceInfo {
            oid: TABLESPACE,
            location: "/srv/old-tablespace".into(),
        });
    let dir = c.target();
    let cases = [
        // Not relocated and --tablespace-in-place not given.
        options(),
        // Relocated, plus a --tablespace for an OID the backup does not have.
        MaterialiseOptions {
            tablespaces: [
                (TABLESPACE, c.dir.path().join("ts")),
                (16999, c.dir.path().join("ts2")),
            ]
            .into_iter()
            .collect(),
            ..options()
        },
        // Relocated inside the data directory.
        MaterialiseOptions {
            tablespaces: [(TABLESPACE, dir.join("pg_tblspc_here"))]
                .into_iter()
                .collect(),
            ..options()
        },
    ];
    for opts in cases {
        let err = c.restore(&manifest, &opts).await.unwrap_err();
        assert_eq!(refusal_kinds(&err), [ProblemKind::Tablespace], "{err}");
        assert!(!dir.exists(), "nothing was created: {err}");
    }
}

/// A change to a manifest.
type Mutation = dyn Fn(&mut BackupManifest);

#[tokio::test]
async fn a_malformed_manifest_is_refused_before_anything_is_written() {
    let c = Crafted::new().await;
    let good = c.backup(&files(), DIRS).await;
    let dir = c.target();
    let escape = |m: &mut BackupManifest| m.files[5].path = "../escaped".into();
    let link = |m: &mut BackupManifest| {
        m.files[0].kind = FileKind::Symlink;
        m.files[0].link_target = Some("/etc".into());
    };
    let no_bundle = |m: &mut BackupManifest| m.files[5].bundle = None;
    let overflow = |m: &mut BackupManifest| m.files[5].size = 1 << 30;
    let no_control = |m: &mut BackupManifest| m.files.retain(|f| f.path != PG_CONTROL);
    let mutations: [(&str, &Mutation); 5] = [
        ("../escaped", &escape),
        ("is a link", &link),
        ("has no bundle", &no_bundle),
        ("does not fit", &overflow),
        ("no global/pg_control", &no_control),
    ];
    for (expected, mutate) in mutations {
        let mut manifest = good.clone();
        mutate(&mut manifest);
        let err = c.restore(&manifest, &options()).await.unwrap_err();
        assert!(
            matches!(err, RestoreError::BadManifest { .. }),
            "{expected}: {err:?}"
        );
        assert!(err.is_refusal());
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert!(!dir.exists(), "{expected}: nothing was created");
    }
}

/// After a failure once writing began: no pg_control, so Postgres refuses the directory.
fn assert_no_control(c: &Crafted) {
    assert!(
        !c.target().join(PG_CONTROL).exists(),
        "a failed restore must leave no {PG_CONTROL}"
    );
}

#[tokio::test]
async fn a_file_that_does_not_match_its_checksum_fails_naming_it_and_leaves_no_pg_control() {
    let c = Crafted::new().await;
    let mut manifest = c.backup(&files(), DIRS).await;
    let entry = manifest
        .files
        .iter_mut()
        .find(|f| f.path == "base/1/1259")
        .unwrap();
    entry.crc32c = entry.crc32c.map(|crc| crc ^ 1);
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    match &err {
        RestoreError::CorruptBundle { file, bundle, .. } => {
            assert_eq!(file, "base/1/1259");
            assert_eq!(bundle, "00000000");
        }
        other => panic!("expected a corrupt bundle, got {other:?}"),
    }
    assert!(!err.is_refusal());
    assert_no_control(&c);
}

#[tokio::test]
async fn a_damaged_bundle_object_fails_and_leaves_no_pg_control() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    // pg_control's bundle, its stored bytes flipped in the middle.
    let key = layout::bundle_key(manifest.id, "00000001").unwrap();
    let path = c.dir.path().join("repo").join(key.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    assert!(
        matches!(err, RestoreError::CorruptBundle { ref bundle, .. } if bundle == "00000001"),
        "{err:?}"
    );
    assert_no_control(&c);
}

#[tokio::test]
async fn a_missing_bundle_fails_as_not_found_and_leaves_no_pg_control() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    let key = layout::bundle_key(manifest.id, "00000001").unwrap();
    c.repo.storage().delete(&key).await.unwrap();
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    match &err {
        RestoreError::Storage(e) => assert!(e.is_not_found(), "{e}"),
        other => panic!("expected the storage's not-found, got {other:?}"),
    }
    assert!(err.to_string().contains("00000001"), "{err}");
    assert_no_control(&c);
}

#[tokio::test]
async fn a_bundle_shorter_than_its_manifest_says_fails_and_leaves_no_pg_control() {
    let c = Crafted::new().await;
    let mut manifest = c.backup(&files(), DIRS).await;
    // The manifest claims 100 more bytes of postgresql.conf than the bundle holds.
    manifest.bundles[1].raw_len += 100;
    let entry = manifest
        .files
        .iter_mut()
        .find(|f| f.path == "postgresql.conf")
        .unwrap();
    entry.size += 100;
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    assert!(
        matches!(err, RestoreError::CorruptBundle { ref file, .. } if file == "postgresql.conf"),
        "{err:?}"
    );
    assert_no_control(&c);
}

#[tokio::test]
async fn a_pg_control_of_another_system_fails_and_is_not_written() {
    let c = Crafted::new().await;
    let mut all = files();
    all[4].1 = control(SYSTEM_ID + 1);
    let manifest = c.backup(&all, DIRS).await;
    let err = c.restore(&manifest, &options()).await.unwrap_err();
    assert!(matches!(err, RestoreError::BadManifest { .. }), "{err:?}");
    assert!(err.to_string().contains("system identifier"), "{err}");
    assert_no_control(&c);
    // Everything else was written: the refusal came at the last step.
    assert!(c.target().join("base/1/1259").is_file());
}

#[tokio::test]
async fn delta_never_keeps_pg_control_even_when_it_matches() {
    let c = Crafted::new().await;
    let manifest = c.backup(&files(), DIRS).await;
    c.restore(&manifest, &options()).await.unwrap();
    let opts = MaterialiseOptions {
        delta: true,
        ..options()
    };
    let summary = c.restore(&manifest, &opts).await.unwrap();
    // Everything else matched; pg_control was removed first and written last.
    assert_eq!(summary.files_kept, 4, "{summary:?}");
    assert_eq!(summary.files_written, 1, "{summary:?}");
    assert_eq!(
        std::fs::read(c.target().join(PG_CONTROL)).unwrap(),
        control(SYSTEM_ID)
    );
}
