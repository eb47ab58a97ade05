//! Building the data directory from a backup: the manifest and the target directories
//! checked again ([`crate::manifest_check`], [`crate::placement`]), directories, files from
//! the bundles (in parallel, bounded), tablespaces through their links, the backup label
//! verbatim, the tablespace map rebuilt from the accepted tablespaces, Postgres's
//! `backup_manifest` (for `pg_verifybackup`), the recovery configuration, every file and
//! directory fsynced, and `global/pg_control` last. Run as root, every entry is given to
//! the owner of its target directory ([`crate::owner`]) before it is fsynced.
//!
//! **Invariant:** until the very last step the directory has no `global/pg_control`, so a
//! restore that fails at any point (the recovery configuration included) leaves a
//! directory Postgres refuses to start, never a half-restored one it would start.
//! `--delta` removes an existing `pg_control` (durably) before touching anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use walship_common::catalog::{BackupManifest, FileKind};
use walship_common::fsutil::{self, FsError};
use walship_common::repo::Repository;

use crate::bundle::{self, BundleJob, FileJob, ProgressFn};
use crate::error::RestoreError;
use crate::manifest_check;
use crate::owner::{self, Owner};
use crate::paths::{Destinations, TablespaceDirs};
use crate::placement::{self, Placement, PlacementRequest};
use crate::recovery_conf::{self, RecoveryConfig};

/// `global/pg_control`, written last.
pub const PG_CONTROL: &str = "global/pg_control";

/// Postgres's own manifest of the backup (`pg_verifybackup` reads it), written beside the
/// files when the backup has one, as `pg_basebackup` leaves it.
pub const BACKUP_MANIFEST: &str = "backup_manifest";

/// How to build the directory.
#[derive(Debug, Clone, Default)]
pub struct MaterialiseOptions {
    /// Replace whatever the directory holds (a data directory only).
    pub force: bool,
    /// Keep files whose size and crc32c already match; fetch the rest; remove the files the
    /// backup does not have.
    pub delta: bool,
    /// `--tablespace OID=DIR`.
    pub tablespaces: TablespaceDirs,
    /// `--tablespace-in-place`: the tablespaces not relocated go where the backup says.
    pub tablespace_in_place: bool,
    /// `--owner`: who owns every file (else, as root, the owner of each target directory).
    pub owner: Option<Owner>,
    /// Bundles fetched at once (at least 1).
    pub parallel: usize,
    /// The recovery configuration, written durably before `global/pg_control`, the last
    /// file (`None`: the caller configures recovery itself).
    pub recovery: Option<RecoveryConfig>,
    /// When the backup is an incremental: the older members of its chain, the full backup
    /// first (see [`crate::chain`]); empty for a full backup.
    pub chain_below: Vec<BackupManifest>,
}

impl MaterialiseOptions {
    /// The placement these options ask for, into `to`.
    pub fn placement_request(&self, to: &Path) -> PlacementRequest {
        PlacementRequest {
            to: to.to_path_buf(),
            force: self.force,
            delta: self.delta,
            relocate: self.tablespaces.clone(),
            in_place: self.tablespace_in_place,
            owner: self.owner,
        }
    }
}

/// What the restore wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaterialiseSummary {
    /// Files written.
    pub files_written: u64,
    /// Files `--delta` found correct and kept.
    pub files_kept: u64,
    /// Files and directories `--delta` removed.
    pub entries_removed: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bundles fetched.
    pub bundles_fetched: u64,
    /// Files rebuilt from an incremental chain.
    pub files_reconstructed: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| {
        RestoreError::Fs(FsError {
            action,
            path,
            source,
        })
    }
}

/// `ControlFileData.system_identifier`: the first 8 bytes, native endian.
pub(crate) fn control_system_identifier(control: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(control.get(..8)?.try_into().ok()?))
}

/// Creates `dir` (and parents) and sets it to 0700, owned by `owner`.
fn make_dir(dir: &Path, owner: Option<Owner>) -> Result<(), RestoreError> {
    fs::create_dir_all(dir).map_err(fs_err("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(fs_err("set permissions of", dir))?;
    owner::apply(owner, dir)
}

/// Files restore writes itself, never from a bundle: the label verbatim from the manifest,
/// the map rebuilt from the accepted tablespaces.
const WRITTEN_FROM_MANIFEST: &[&str] = &["backup_label", "tablespace_map"];

/// Checks the manifest and the target directories again (the plan did, but the
/// directories may have changed since), and refuses before anything changes.
fn check_before_writing(
    manifest: &BackupManifest,
    dir: &Path,
    opts: &MaterialiseOptions,
) -> Result<Placement, RestoreError> {
    let structural = manifest_check::structural_problems(manifest);
    if !structural.is_empty() {
        return Err(RestoreError::BadManifest {
            backup: manifest.id.to_string(),
            message: structural.join("; "),
        });
    }
    let request = opts.placement_request(dir);
    let mut problems = placement::check_data_dir(&request, manifest.system_identifier);
    let (placement, more) = placement::place(manifest, &request, manifest.system_identifier);
    problems.extend(more);
    if problems.is_empty() {
        Ok(placement)
    } else {
        Err(RestoreError::Refused { problems })
    }
}

/// Builds `dir` from `manifest`; see the module doc.
pub async fn materialise(
    repo: &Repository,
    manifest: &BackupManifest,
    dir: &Path,
    opts: &MaterialiseOptions,
    progress: ProgressFn,
) -> Result<MaterialiseSummary, RestoreError> {
    let started = Instant::now();
    let backup = manifest.id.to_string();
    let bad = |message: String| RestoreError::BadManifest {
        backup: backup.clone(),
        message,
    };
    let placement = check_before_writing(manifest, dir, opts)?;
    if manifest.is_incremental() == opts.chain_below.is_empty() {
        return Err(bad(format!(
            "an incremental backup is restored with its whole chain ({} older members given)",
            opts.chain_below.len()
        )));
    }
    if opts.delta && manifest.is_incremental() {
        return Err(bad(
            "--delta cannot restore an incremental chain yet; restore into an empty directory or with --force".into(),
        ));
    }
    let dests = Destinations::new(&placement);
    let data_owner = dests.root_owner();
    let mut summary = MaterialiseSummary::default();
    // pg_control first out, last in.
    let control_path = dir.join(PG_CONTROL);
    match fs::remove_file(&control_path) {
        Ok(()) => fsutil::fsync_dir(control_path.parent().unwrap_or(dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fs_err("remove", &control_path)(e)),
    }
    if opts.force && !opts.delta {
        clear_dir(dir)?;
        for ts in dests.tablespaces().values() {
            clear_dir(ts)?;
        }
    }
    make_dir(dir, data_owner)?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::from([dir.to_path_buf()]);
    let mut expected: BTreeSet<PathBuf> = BTreeSet::new();
    let mut by_bundle: BTreeMap<u32, Vec<FileJob>> = BTreeMap::new();
    for entry in &manifest.files {
        let dest = dests.of(&backup, &entry.path)?;
        match entry.kind {
            FileKind::Dir => {
                if let Some((dest, owner)) = dest {
                    make_dir(&dest, owner)?;
                    expected.insert(dest.clone());
                    dirs.insert(dest);
                }
            }
            FileKind::Symlink => {
                if dest.is_some() {
                    return Err(bad(format!(
                        "{} is a link; only pg_tblspc/<oid> links are restored",
                        entry.path
                    )));
                }
            }
            FileKind::File => {
                let Some((dest, owner)) = dest else {
                    return Err(bad(format!("{} cannot be a file", entry.path)));
                };
                let (Some(bundle), Some(offset), Some(crc32c)) =
                    (entry.bundle, entry.offset, entry.crc32c)
                else {
                    return Err(bad(format!(
                        "file {} has no bundle, offset or crc32c",
                        entry.path
                    )));
                };
                if WRITTEN_FROM_MANIFEST.contains(&entry.path.as_str()) {
                    continue;
                }
                let is_control = entry.path == PG_CONTROL;
                if let Some(parent) = dest.parent()
                    && !dirs.contains(parent)
                {
                    make_dir(parent, owner)?;
                    dirs.insert(parent.to_path_buf());
                }
                let skip = opts.delta && !is_control && unchanged(&dest, entry.size, crc32c);
                if skip {
                    summary.files_kept += 1;
                    if let Ok(f) = fs::File::open(&dest) {
                        bundle::set_mode_and_mtime(&f, &dest, entry.mtime)?;
                        if let Some(owner) = owner {
                            owner.apply_to_file(&f, &dest)?;
                        }
                    }
                }
                expected.insert(dest.clone());
                by_bundle.entry(bundle).or_default().push(FileJob {
                    path: entry.path.clone(),
                    dest: (!is_control).then_some(dest),
                    skip,
                    offset,
                    size: entry.size,
                    crc32c,
                    mtime: entry.mtime,
                    owner,
                });
            }
        }
    }
    // Tablespaces: their directories and the pg_tblspc links to them.
    let tblspc = dir.join("pg_tblspc");
    for (oid, location) in dests.tablespaces() {
        make_dir(location, dests.tablespace_owner(*oid))?;
        if !dirs.contains(&tblspc) {
            make_dir(&tblspc, data_owner)?;
        }
        dirs.insert(location.clone());
        dirs.insert(tblspc.clone());
        let link = tblspc.join(oid.to_string());
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.is_dir() => {
                fs::remove_dir_all(&link).map_err(fs_err("remove", &link))?
            }
            Ok(_) => fs::remove_file(&link).map_err(fs_err("remove", &link))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_err("inspect", &link)(e)),
        }
        std::os::unix::fs::symlink(location, &link).map_err(fs_err("create link", &link))?;
        owner::apply(data_owner, &link)?;
        expected.insert(link);
        expected.insert(location.clone());
    }
    let backup_had_map = manifest.tablespace_map.is_some()
        || manifest
            .files
            .iter()
            .any(|f| f.path == "tablespace_map" && f.kind == FileKind::File);
    let tablespace_map = dests.tablespace_map(backup_had_map);
    expected.insert(dir.join("backup_label"));
    if tablespace_map.is_some() {
        expected.insert(dir.join("tablespace_map"));
    }
    if manifest.pg_backup_manifest.is_some() {
        expected.insert(dir.join(BACKUP_MANIFEST));
    }
    if opts.delta {
        summary.entries_removed += remove_unexpected(dir, &expected, dests.tablespaces())?;
    }
    // The bundles, a few at a time; the bundle with only skipped files is still read when
    // it holds a file to write.
    let jobs: Vec<BundleJob> = by_bundle
        .into_iter()
        .filter(|(_, files)| files.iter().any(|f| !f.skip))
        .map(|(index, mut files)| {
            files.sort_by_key(|f| f.offset);
            let bundle = &manifest.bundles[index as usize];
            BundleJob {
                name: bundle.name.clone(),
                raw_len: bundle.raw_len,
                files,
            }
        })
        .collect();
    summary.bundles_fetched = jobs.len() as u64;
    let mut results = futures::stream::iter(jobs)
        .map(|job| restore_bundle_retrying(repo, manifest.id, job, progress.clone()))
        .buffer_unordered(opts.parallel.max(1));
    let mut control: Option<Vec<u8>> = None;
    while let Some(result) = results.next().await {
        let outcome = result?;
        summary.files_written += outcome.files;
        summary.bytes_written += outcome.bytes;
        for (path, bytes) in outcome.held {
            if path == PG_CONTROL {
                control = Some(bytes);
            }
        }
    }
    drop(results);
    // An incremental chain: rebuild every INCREMENTAL.* file from the older members, and
    // write the label without its INCREMENTAL FROM lines (as pg_combinebackup does).
    let mut manifest_changes = BTreeMap::new();
    let label = if manifest.is_incremental() {
        let mut chain = opts.chain_below.clone();
        chain.push(manifest.clone());
        manifest_changes =
            crate::chain::reconstruct(repo, &chain, &dests, opts.parallel, progress.clone())
                .await?;
        summary.files_reconstructed = manifest_changes.len() as u64;
        let label = crate::chain::combined_backup_label(&manifest.backup_label);
        manifest_changes.insert(
            "backup_label".to_string(),
            walship_common::pg::backup_manifest::NewEntry {
                path: "backup_label".to_string(),
                size: label.len() as u64,
                crc32c: walship_common::crc::crc32c(label.as_bytes()),
            },
        );
        label
    } else {
        manifest.backup_label.clone()
    };
    owner::durable_write(&dir.join("backup_label"), label.as_bytes(), data_owner)?;
    let map_path = dir.join("tablespace_map");
    match &tablespace_map {
        Some(map) => owner::durable_write(&map_path, map.as_bytes(), data_owner)?,
        None => match fs::remove_file(&map_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_err("remove", &map_path)(e)),
        },
    }
    // Postgres's own manifest, as pg_basebackup leaves it (the server ignores the file), so
    // that `pg_verifybackup` can check the restored files before the server starts.
    // For a chain, the newest member's, rewritten for the rebuilt files.
    if let Some(pg_manifest) = &manifest.pg_backup_manifest {
        let text = if manifest_changes.is_empty() {
            pg_manifest.clone()
        } else {
            walship_common::pg::backup_manifest::rewrite(pg_manifest, &manifest_changes)
                .map_err(|e| bad(e.to_string()))?
        };
        owner::durable_write(&dir.join(BACKUP_MANIFEST), text.as_bytes(), data_owner)?;
    }
    let control = control.ok_or_else(|| bad(format!("{PG_CONTROL} was not in its bundle")))?;
    if control_system_identifier(&control) != Some(manifest.system_identifier) {
        return Err(bad(format!(
            "{PG_CONTROL} holds system identifier {:?}, the manifest says {}",
            control_system_identifier(&control),
            manifest.system_identifier
        )));
    }
    // The recovery settings are durable before pg_control exists: a failure up to here
    // leaves a directory Postgres refuses to start.
    if let Some(recovery) = &opts.recovery {
        recovery_conf::write_recovery_config(dir, recovery, data_owner)?;
    }
    for d in &dirs {
        fsutil::fsync_dir(d)?;
    }
    owner::durable_write(&control_path, &control, data_owner)?;
    summary.files_written += 1;
    summary.bytes_written += control.len() as u64;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// Attempts at one bundle when its stream breaks (a transient storage error mid-stream;
/// the storage layer already retries each request).
const BUNDLE_ATTEMPTS: u32 = 3;

/// Restores one bundle, starting it again from the top when its stream breaks transiently
/// (its files are rewritten from scratch; a corrupt bundle is never retried).
async fn restore_bundle_retrying(
    repo: &Repository,
    id: walship_common::catalog::BackupId,
    job: BundleJob,
    progress: ProgressFn,
) -> Result<bundle::BundleOutcome, RestoreError> {
    let mut attempt = 1;
    loop {
        match bundle::restore_bundle(repo, id, job.clone(), progress.clone()).await {
            Err(RestoreError::Storage(e)) if !e.is_permanent() && attempt < BUNDLE_ATTEMPTS => {
                tracing::warn!("bundle {} of backup {id}: {e}; starting it again", job.name);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// True when `path` is a regular file of `size` bytes whose crc32c is `crc`.
fn unchanged(path: &Path, size: u64, crc: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != size {
        return false;
    }
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut sum = 0u32;
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) => return sum == crc,
            Ok(n) => sum = walship_common::crc::crc32c_append(sum, &buf[..n]),
            Err(_) => return false,
        }
    }
}

/// Removes everything inside `dir` (links are removed, never followed).
fn clear_dir(dir: &Path) -> Result<(), RestoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fs_err("read", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(fs_err("read", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(fs_err("inspect", &path))?;
        if kind.is_dir() {
            fs::remove_dir_all(&path).map_err(fs_err("remove", &path))?;
        } else {
            fs::remove_file(&path).map_err(fs_err("remove", &path))?;
        }
    }
    fsutil::fsync_dir(dir)?;
    Ok(())
}

/// `--delta`: removes what the backup does not have, under `dir` and the tablespace
/// directories (links are never followed). Returns how many entries went.
fn remove_unexpected(
    dir: &Path,
    expected: &BTreeSet<PathBuf>,
    tablespaces: &TablespaceDirs,
) -> Result<u64, RestoreError> {
    let mut removed = 0;
    let roots = std::iter::once(dir.to_path_buf()).chain(tablespaces.values().cloned());
    for root in roots {
        let mut stack = vec![root];
        while let Some(current) = stack.pop() {
            let Ok(entries) = fs::read_dir(&current) else {
                continue;
            };
            for entry in entries {
                let entry = entry.map_err(fs_err("read", &current))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(fs_err("inspect", &path))?;
                if expected.contains(&path) {
                    if kind.is_dir() {
                        stack.push(path);
                    }
                    continue;
                }
                if kind.is_dir() {
                    fs::remove_dir_all(&path).map_err(fs_err("remove", &path))?;
                } else {
                    fs::remove_file(&path).map_err(fs_err("remove", &path))?;
                }
                removed += 1;
            }
        }
    }
    Ok(removed)
}
