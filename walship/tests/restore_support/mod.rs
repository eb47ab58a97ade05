//! Restore test helpers: turning a low-level copy of a running cluster into a backup in the
//! repository (manifest + bundles, in exactly the format `catalog::manifest` documents and
//! `walship backup` writes), a `walship` wrapper for `restore_command` that carries the
//! test's S3 credentials, and restoring + starting + reading a restored cluster.

#![allow(dead_code)] // each test file uses a different subset

pub mod verify;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pg_test_harness::{Cluster, PgInstall, StopMode};
use walship_common::Lsn;
use walship_common::catalog::{
    BackupId, BackupManifest, BundleInfo, FileEntry, FileKind, MANIFEST_FORMAT_VERSION,
};
use walship_common::codec::Codec;
use walship_common::pg::TimelineId;
use walship_common::repo::{Repository, layout};
use walship_common::storage::{AnyStorage, S3Credentials, S3Options};

use crate::support::{TestRepo, describe, low_level_copy, walship_bin};

/// Raw bytes per bundle.
const BUNDLE_RAW: u64 = 4 << 20;

/// A cluster of `install` with 1 MiB segments, archiving into `repo` with `walship archive`.
pub fn archiving_cluster(install: &PgInstall, repo: &TestRepo) -> Cluster {
    Cluster::builder(install)
        .initdb_arg("--wal-segsize=1")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("'{}'", repo.archive_command("")),
        )
        .setting("checkpoint_timeout", "'1h'")
        .start()
}

/// The server's clock now, in UTC, as `YYYY-MM-DD HH:MM:SS.ffffff` (no zone: walship reads
/// it as UTC).
pub fn utc_now(cluster: &Cluster) -> String {
    cluster.query_string(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    )
}

/// A tokio runtime for the library calls of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The repository of `repo`, opened with the test's credentials.
pub fn open_repo(rt: &tokio::runtime::Runtime, repo: &TestRepo) -> Repository {
    let opts = match &repo.s3 {
        Some(s3) => S3Options {
            endpoint: Some(s3.endpoint.clone()),
            region: Some(s3.region.clone()),
            credentials: Some(S3Credentials {
                access_key_id: s3.access_key.clone(),
                secret_access_key: s3.secret_key.clone(),
                session_token: None,
            }),
            force_path_style: Some(true),
            ..S3Options::default()
        },
        None => S3Options::default(),
    };
    let storage = rt.block_on(AnyStorage::open(&repo.url, &opts)).unwrap();
    Repository::new(storage, Codec::Lz4)
}

/// Runs `walship backup` of `cluster` into `repo` (fast checkpoint); panics unless it
/// succeeds. Such a backup carries Postgres's own `backup_manifest`.
pub fn walship_backup(cluster: &Cluster, repo: &TestRepo) {
    let conn = format!("host=127.0.0.1 port={} user=postgres", cluster.port());
    let out = repo.walship(&[
        "backup",
        "-d",
        &conn,
        "--checkpoint",
        "fast",
        "--json",
        "--wal-timeout",
        "60s",
    ]);
    assert!(out.status.success(), "walship backup: {}", describe(&out));
}

/// A backup of `cluster` taken with the low-level API and stored in `repo` as manifest and
/// bundles. Returns the manifest.
pub fn take_backup(cluster: &Cluster, repo: &TestRepo) -> BackupManifest {
    let copy = pg_test_harness::test_dir("copy");
    let start_time = Utc::now();
    // Ids are whole seconds: never two backups in one second.
    std::thread::sleep(Duration::from_millis(1100));
    let stop_lsn: Lsn = low_level_copy(cluster, copy.path()).parse().unwrap();
    let stop_time = Utc::now();
    let label = std::fs::read_to_string(copy.path().join("backup_label")).unwrap();
    let spcmap = std::fs::read_to_string(copy.path().join("tablespace_map")).ok();
    // low_level_copy skips the pg_tblspc links: copy each tablespace's files in under
    // pg_tblspc/<oid>/, as BASE_BACKUP's manifest names them (nothing writes meanwhile).
    for (oid, location) in tablespaces(spcmap.as_deref()) {
        copy_tree(
            Path::new(&location),
            &copy.path().join("pg_tblspc").join(oid.to_string()),
        );
    }
    let rt = runtime();
    let repository = open_repo(&rt, repo);
    store_copy(
        &rt,
        &repository,
        copy.path(),
        cluster,
        &label,
        spcmap,
        start_time,
        stop_time,
        stop_lsn,
    )
}

fn label_field<'a>(label: &'a str, key: &str) -> &'a str {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("backup_label has no {key}: {label}"))
        .trim()
}

/// Stores the copy in `dir` as backup manifest + bundles.
#[allow(clippy::too_many_arguments)]
pub fn store_copy(
    rt: &tokio::runtime::Runtime,
    repository: &Repository,
    dir: &Path,
    cluster: &Cluster,
    label: &str,
    spcmap: Option<String>,
    start_time: DateTime<Utc>,
    stop_time: DateTime<Utc>,
    stop_lsn: Lsn,
) -> BackupManifest {
    let start_lsn: Lsn = label_field(label, "START WAL LOCATION:")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let timeline = TimelineId(label_field(label, "START TIMELINE:").parse().unwrap());
    let id = BackupId::from_start_time(start_time);
    let mut entries = Vec::new();
    collect(dir, dir, &mut entries);
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut files = Vec::new();
    let mut bundles: Vec<BundleInfo> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let flush = |current: &mut Vec<u8>, bundles: &mut Vec<BundleInfo>| {
        if current.is_empty() {
            return;
        }
        let name = format!("{:08}", bundles.len());
        let key = layout::bundle_key(id, &name).unwrap();
        let raw_len = current.len() as u64;
        let stored = rt
            .block_on(repository.put_content(&key, Bytes::from(std::mem::take(current)), true))
            .unwrap();
        bundles.push(BundleInfo {
            name,
            raw_len,
            stored_len: stored.stored_len,
        });
    };
    for (rel, path) in entries {
        if rel == "backup_label" || rel == "tablespace_map" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            files.push(FileEntry {
                path: rel,
                kind: FileKind::Dir,
                size: 0,
                mode,
                mtime: meta.mtime(),
                crc32c: None,
                bundle: None,
                offset: None,
                link_target: None,
            });
            continue;
        }
        if meta.file_type().is_symlink() {
            files.push(FileEntry {
                path: rel,
                kind: FileKind::Symlink,
                size: 0,
                mode,
                mtime: meta.mtime(),
                crc32c: None,
                bundle: None,
                offset: None,
                link_target: Some(std::fs::read_link(&path).unwrap().display().to_string()),
            });
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if current.len() as u64 + bytes.len() as u64 > BUNDLE_RAW {
            flush(&mut current, &mut bundles);
        }
        files.push(FileEntry {
            path: rel,
            kind: FileKind::File,
            size: bytes.len() as u64,
            mode,
            mtime: meta.mtime(),
            crc32c: Some(crc32c::crc32c(&bytes)),
            bundle: Some(bundles.len() as u32),
            offset: Some(current.len() as u64),
            link_target: None,
        });
        current.extend_from_slice(&bytes);
    }
    flush(&mut current, &mut bundles);
    let control = std::fs::read(dir.join("global/pg_control")).unwrap();
    let system_identifier = u64::from_ne_bytes(control[..8].try_into().unwrap());
    let version_num: u32 = cluster
        .query_string("show server_version_num")
        .parse()
        .unwrap();
    let seg_size: u32 = cluster
        .query_string("select setting from pg_settings where name = 'wal_segment_size'")
        .parse()
        .unwrap();
    let seg_size = if seg_size < 8192 {
        seg_size * 8192
    } else {
        seg_size
    };
    let manifest = BackupManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id,
        label: "walship-test".to_string(),
        system_identifier,
        pg_major: cluster.install().major,
        pg_version_num: version_num,
        wal_segment_size: seg_size,
        start_timeline: timeline,
        stop_timeline: timeline,
        start_lsn,
        stop_lsn,
        start_time,
        stop_time,
        duration_ms: (stop_time - start_time).num_milliseconds().max(0) as u64,
        backup_label: label.to_string(),
        tablespace_map: spcmap.clone().filter(|m| !m.is_empty()),
        tablespaces: tablespaces(spcmap.as_deref())
            .into_iter()
            .map(|(oid, location)| walship_common::catalog::TablespaceInfo { oid, location })
            .collect(),
        pg_backup_manifest: None,
        bytes_raw: bundles.iter().map(|b| b.raw_len).sum(),
        bytes_stored: bundles.iter().map(|b| b.stored_len).sum(),
        walship_version: "test".to_string(),
        bundles,
        files,
        parent: None,
        chain_depth: 0,
    };
    put_manifest(rt, repository, &manifest);
    manifest
}

/// Writes `manifest` as `backups/<id>/manifest.json`.
pub fn put_manifest(
    rt: &tokio::runtime::Runtime,
    repository: &Repository,
    manifest: &BackupManifest,
) {
    let json = serde_json::to_vec_pretty(manifest).unwrap();
    rt.block_on(repository.put_content(
        &layout::manifest_key(manifest.id),
        Bytes::from(json),
        false,
    ))
    .unwrap();
}

/// The `(oid, location)` lines of a tablespace_map.
pub fn tablespaces(map: Option<&str>) -> Vec<(u32, String)> {
    map.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (oid, dir) = l.split_once(' ')?;
            Some((oid.parse().ok()?, dir.to_string()))
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((rel, path.clone()));
        if meta.is_dir() {
            collect(root, &path, out);
        }
    }
}

/// A `walship` wrapper carrying the test repository's environment (S3 credentials), for
/// `--walship-path`: the restored server runs it as `restore_command`.
pub fn walship_wrapper(repo: &TestRepo) -> PathBuf {
    let path = repo.dir.path().join("walship-wrapper");
    let env: Vec<String> = repo
        .env()
        .iter()
        .map(|(k, v)| format!("{k}='{v}'"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec env {} '{}' \"$@\"\n",
            env.join(" "),
            walship_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `walship restore --to DIR <args>` with the wrapper as `--walship-path`.
pub fn restore(repo: &TestRepo, to: &Path, args: &[&str]) -> std::process::Output {
    let wrapper = walship_wrapper(repo);
    let mut all = vec![
        "restore",
        "--to",
        to.to_str().unwrap(),
        "--walship-path",
        wrapper.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    repo.walship(&all)
}

/// Starts Postgres on a restored directory (not archiving), waits until recovery has ended
/// and the server accepts writes, and returns it.
pub fn start_restored(install: &PgInstall, dir: &Path) -> Cluster {
    start_restored_with(install, dir, false)
}

/// Like [`start_restored`]; with `archive`, the restored server keeps the original's
/// archive_command (and so archives its new timeline into the same repository).
pub fn start_restored_with(install: &PgInstall, dir: &Path, archive: bool) -> Cluster {
    let mut cluster = Cluster::from_data_dir(install, dir);
    if !archive {
        cluster.append_conf("archive_mode = off");
    }
    cluster.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while cluster.query_string("select pg_is_in_recovery()::text") == "true" {
        assert!(
            std::time::Instant::now() < deadline,
            "recovery did not end: {}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster
}

/// Stops a restored cluster cleanly and runs Debian's pg_checksums --check (version 15: on
/// PG15 clusters only; other majors are judged by their rows).
pub fn stop_and_check_checksums(cluster: &mut Cluster) {
    cluster.stop(StopMode::Fast);
    if cluster.install().major != 15 {
        return;
    }
    let mut cmd = std::process::Command::new(pg_test_harness::client_tool("pg_checksums"));
    cmd.arg("--check").arg("-D").arg(cluster.data_dir());
    cluster.run_as_owner(&mut cmd);
    let out = cmd.output().expect("run pg_checksums");
    assert!(
        out.status.success(),
        "pg_checksums --check: {}",
        describe(&out)
    );
}
