//! [`materialise_for_test`]: the smallest faithful way to turn a stored backup back into a
//! data directory, for the backup tests (the restore crate owns the real `walship restore`,
//! with WAL planning, recovery settings, delta and durability).
//!
//! Every bundle is streamed and decoded once; every file is checked against its crc32c and
//! size; paths are checked again; tablespaces can be relocated (their `pg_tblspc/<oid>` link
//! and `tablespace_map` then name the new place); `global/pg_control` is written last;
//! Postgres's `backup_manifest` is written beside the files so `pg_verifybackup` can check
//! them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_util::io::SyncIoBridge;

use crate::catalog::{BackupManifest, FileEntry, FileKind};
use crate::codec::ObjectReader;
use crate::repo::{Repository, layout};
use crate::storage::Storage;

use super::entry_path::{check_backup_path, tablespace_link_oid};
use super::error::BackupError;

/// Writes backup `manifest` from `repo` into the empty directory `dest`; tablespace `oid`
/// goes to `tablespaces[oid]` when given, else to its original location.
pub async fn materialise_for_test(
    repo: &Repository,
    manifest: &BackupManifest,
    dest: &Path,
    tablespaces: &BTreeMap<u32, PathBuf>,
) -> Result<(), BackupError> {
    let mut places = Places {
        dest: dest.to_path_buf(),
        tablespaces: tablespaces.clone(),
    };
    // Tablespaces not relocated go back where the server had them.
    for link in manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Symlink)
    {
        if let (Some(oid), Some(target)) = (tablespace_link_oid(&link.path), &link.link_target) {
            places
                .tablespaces
                .entry(oid)
                .or_insert_with(|| PathBuf::from(target));
        }
    }
    for file in &manifest.files {
        check_backup_path(&file.path).map_err(|reason| BackupError::UnsafePath {
            archive: "manifest".into(),
            path: file.path.clone(),
            reason,
        })?;
    }
    for entry in manifest.files.iter().filter(|f| f.kind != FileKind::File) {
        places.make_non_file(entry)?;
    }
    let mut pg_control: Option<(PathBuf, Vec<u8>, u32)> = None;
    for (index, bundle) in manifest.bundles.iter().enumerate() {
        let mut files: Vec<FileEntry> = manifest
            .files
            .iter()
            .filter(|f| f.kind == FileKind::File && f.bundle == Some(index as u32))
            .cloned()
            .collect();
        files.sort_by_key(|f| f.offset);
        let key = layout::bundle_key(manifest.id, &bundle.name)?;
        let reader = repo.storage().get(&key).await?;
        let bridge = SyncIoBridge::new(reader);
        let places = places.clone();
        let bundle_name = bundle.name.clone();
        let key_text = key.to_string();
        let control = tokio::task::spawn_blocking(move || {
            places.write_bundle(bridge, &key_text, &bundle_name, &files)
        })
        .await
        .map_err(|e| BackupError::Protocol(format!("materialise thread: {e}")))??;
        if control.is_some() {
            pg_control = control;
        }
    }
    if let Some(text) = &manifest.pg_backup_manifest {
        write_file(&dest.join("backup_manifest"), text.as_bytes(), 0o600)?;
    }
    if let Some(map) = &manifest.tablespace_map {
        write_file(
            &dest.join("tablespace_map"),
            places.tablespace_map(map).as_bytes(),
            0o600,
        )?;
    }
    let (path, bytes, mode) = pg_control
        .ok_or_else(|| BackupError::Protocol("the backup has no global/pg_control".into()))?;
    write_file(&path, &bytes, mode)
}

#[derive(Clone)]
struct Places {
    dest: PathBuf,
    tablespaces: BTreeMap<u32, PathBuf>,
}

impl Places {
    /// Where backup path `path` goes on disk.
    fn local(&self, path: &str) -> PathBuf {
        if let Some(rest) = path.strip_prefix("pg_tblspc/")
            && let Some((oid, inner)) = rest.split_once('/')
            && let Ok(oid) = oid.parse::<u32>()
            && let Some(dir) = self.tablespaces.get(&oid)
        {
            return dir.join(inner);
        }
        self.dest.join(path)
    }

    fn make_non_file(&self, entry: &FileEntry) -> Result<(), BackupError> {
        match entry.kind {
            FileKind::Dir => {
                let path = self.local(&entry.path);
                std::fs::create_dir_all(&path).map_err(|e| BackupError::io("create", &path, e))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| BackupError::io("chmod", &path, e))
            }
            FileKind::Symlink => {
                let oid =
                    tablespace_link_oid(&entry.path).ok_or_else(|| BackupError::RefusedEntry {
                        archive: "manifest".into(),
                        path: entry.path.clone(),
                        reason: "only pg_tblspc/<oid> links are restored".into(),
                    })?;
                let target = self.tablespaces.get(&oid).cloned().ok_or_else(|| {
                    BackupError::RefusedEntry {
                        archive: "manifest".into(),
                        path: entry.path.clone(),
                        reason: "a tablespace link without a target".into(),
                    }
                })?;
                std::fs::create_dir_all(&target)
                    .map_err(|e| BackupError::io("create", &target, e))?;
                let link = self.dest.join(&entry.path);
                if let Some(parent) = link.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| BackupError::io("create", parent, e))?;
                }
                std::os::unix::fs::symlink(&target, &link)
                    .map_err(|e| BackupError::io("link", &link, e))
            }
            FileKind::File => Ok(()),
        }
    }

    /// Writes `files` (in offset order) out of one bundle; returns `global/pg_control`
    /// instead of writing it.
    fn write_bundle(
        &self,
        input: impl Read,
        key: &str,
        bundle: &str,
        files: &[FileEntry],
    ) -> Result<Option<(PathBuf, Vec<u8>, u32)>, BackupError> {
        let codec_err = |source| BackupError::Codec {
            key: key.to_string(),
            source,
        };
        let mut reader = ObjectReader::new(input).map_err(codec_err)?;
        let mut position = 0u64;
        let mut control = None;
        let mut buf = vec![0u8; 256 << 10];
        for file in files {
            let offset = file.offset.unwrap_or(position);
            if offset < position {
                return Err(mismatch(file, bundle, "files overlap in the bundle"));
            }
            std::io::copy(
                &mut (&mut reader).take(offset - position),
                &mut std::io::sink(),
            )
            .map_err(|e| codec_err(e.into()))?;
            let path = self.local(&file.path);
            let mut content = (&mut reader).take(file.size);
            let mut crc = 0u32;
            let mut len = 0u64;
            let is_control = file.path == "global/pg_control";
            let mut kept = Vec::new();
            let mut out = if is_control {
                None
            } else {
                Some(
                    std::fs::File::create(&path)
                        .map_err(|e| BackupError::io("create", &path, e))?,
                )
            };
            loop {
                let n = content.read(&mut buf).map_err(|e| codec_err(e.into()))?;
                if n == 0 {
                    break;
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                len += n as u64;
                match out.as_mut() {
                    Some(f) => f
                        .write_all(&buf[..n])
                        .map_err(|e| BackupError::io("write", &path, e))?,
                    None => kept.extend_from_slice(&buf[..n]),
                }
            }
            if len != file.size {
                return Err(mismatch(file, bundle, "the bundle ended early"));
            }
            if Some(crc) != file.crc32c {
                return Err(mismatch(file, bundle, "crc32c differs"));
            }
            position = offset + len;
            let mode = file.mode & 0o7777;
            if is_control {
                control = Some((path, kept, mode));
            } else {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| BackupError::io("chmod", &path, e))?;
            }
        }
        // Read to the end: the trailer's checks run only there.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| codec_err(e.into()))?;
        Ok(control)
    }

    /// `tablespace_map` with relocated tablespaces pointing at their new place.
    fn tablespace_map(&self, map: &str) -> String {
        map.lines()
            .map(|line| {
                let oid = line.split(' ').next().and_then(|o| o.parse::<u32>().ok());
                match oid.and_then(|oid| self.tablespaces.get(&oid).map(|d| (oid, d))) {
                    Some((oid, dir)) => format!("{oid} {}\n", dir.display()),
                    None => format!("{line}\n"),
                }
            })
            .collect()
    }
}

fn mismatch(file: &FileEntry, bundle: &str, reason: &str) -> BackupError {
    BackupError::Mismatch {
        path: file.path.clone(),
        bundle: bundle.to_string(),
        reason: reason.to_string(),
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    std::fs::write(path, bytes).map_err(|e| BackupError::io("write", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BackupError::io("chmod", path, e))
}
