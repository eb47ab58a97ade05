//! Reading one tar archive of a base backup as it arrives: [`ArchiveReader`] turns the
//! event channel into a `Read` that ends with the archive, and [`read_archive`] walks its
//! entries with the `tar` crate, checks every path ([`super::entry_path`]) and entry kind,
//! and hands each file's bytes to the bundler.
//!
//! Postgres 13-14 omit the two zero blocks that end a tar archive, 15+ send them; both
//! are read to the archive's end. Hard links, devices and FIFOs are refused; a symbolic link
//! is accepted only as `pg_tblspc/<oid>` of a tablespace the server listed.

use std::io::{self, Read};

use bytes::Bytes;

use crate::catalog::{FileEntry, FileKind, TablespaceInfo};

use super::bundler::Bundler;
use super::entry_path::{entry_path, tablespace_link_oid};
use super::error::BackupError;
use super::event::BackupEvent;
use super::event_batch::EventBatches;

/// Largest `backup_label` / `tablespace_map` kept in memory for the manifest.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// A `Read` over the data events of the current archive; EOF at [`BackupEvent::ArchiveEnd`].
pub struct ArchiveReader<'a> {
    rx: &'a mut EventBatches,
    chunk: Bytes,
    ended: bool,
}

impl<'a> ArchiveReader<'a> {
    /// Reads from `rx` until the archive ends.
    pub fn new(rx: &'a mut EventBatches) -> Self {
        ArchiveReader {
            rx,
            chunk: Bytes::new(),
            ended: false,
        }
    }

    /// Reads and drops what is left of the archive (the end-of-archive blocks).
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }
}

impl Read for ArchiveReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_next() {
                Some(BackupEvent::Data(data)) => self.chunk = data,
                Some(BackupEvent::Progress(_)) => {}
                Some(BackupEvent::ArchiveEnd) => self.ended = true,
                Some(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{other:?} arrived inside a tar archive"),
                    ));
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a tar archive",
                    ));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// What the main archive held besides file data.
#[derive(Debug, Default)]
pub struct SmallFiles {
    /// `backup_label`, verbatim.
    pub backup_label: Option<String>,
    /// `tablespace_map`, verbatim.
    pub tablespace_map: Option<String>,
}

/// Walks one archive: every entry becomes a [`FileEntry`] in `files`, file bytes go to
/// `bundler`.
#[allow(clippy::too_many_arguments)]
pub fn read_archive(
    reader: ArchiveReader<'_>,
    name: &str,
    tablespace: Option<u32>,
    tablespaces: &[TablespaceInfo],
    bundler: &mut Bundler,
    files: &mut Vec<FileEntry>,
    small: &mut SmallFiles,
) -> Result<(), BackupError> {
    let tar_error = |source: io::Error| BackupError::Tar {
        archive: name.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let path = entry_path(name, tablespace, &entry.path_bytes())?;
        let header = entry.header();
        let mode = header.mode().map_err(tar_error)?;
        let mtime = i64::try_from(header.mtime().map_err(tar_error)?).unwrap_or(i64::MAX);
        let kind = header.entry_type();
        let refuse = |reason: String| BackupError::RefusedEntry {
            archive: name.to_string(),
            path: path.clone(),
            reason,
        };
        let mut record = FileEntry {
            path: path.clone(),
            kind: FileKind::Dir,
            size: 0,
            mode,
            mtime,
            crc32c: None,
            bundle: None,
            offset: None,
            link_target: None,
        };
        if kind.is_dir() {
            files.push(record);
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let listed = tablespace.is_none()
                && tablespace_link_oid(&path)
                    .is_some_and(|oid| tablespaces.iter().any(|t| t.oid == oid));
            if !listed {
                return Err(refuse(format!(
                    "symbolic link to {target:?}: only pg_tblspc/<oid> links of listed tablespaces are accepted"
                )));
            }
            record.kind = FileKind::Symlink;
            record.link_target = Some(target);
            files.push(record);
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.size();
            let keep = tablespace.is_none()
                && size <= MAX_SMALL_FILE
                && matches!(path.as_str(), "backup_label" | "tablespace_map");
            let placed = if keep {
                let mut bytes = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut bytes).map_err(tar_error)?;
                let placed = bundler.add_file(&path, &mut &bytes[..], size)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if path == "backup_label" {
                    small.backup_label = Some(text);
                } else {
                    small.tablespace_map = Some(text);
                }
                placed
            } else {
                bundler.add_file(&path, &mut entry, size)?
            };
            record.kind = FileKind::File;
            record.size = placed.len;
            record.crc32c = Some(placed.crc32c);
            record.bundle = Some(placed.bundle);
            record.offset = Some(placed.offset);
            files.push(record);
        } else {
            return Err(refuse(format!(
                "tar entry type {:?} never appears in a base backup",
                kind.as_byte() as char
            )));
        }
    }
    archive.into_inner().drain().map_err(tar_error)
}
