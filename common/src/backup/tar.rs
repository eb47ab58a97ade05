//! Walking one tar archive of a base backup as it arrives: [`read_archive`] takes the
//! archive's data events from the event channel, parses them with [`TarStream`] (file data
//! stays in the events' own buffers), checks every path ([`super::entry_path`]) and entry
//! kind, and hands each file's data, slice by slice, to the bundler.
//!
//! Postgres 13-14 omit the two zero blocks that end a tar archive, 15+ send them; both are
//! read to the archive's end, and an archive that ends inside an entry is an error naming
//! it. Hard links, devices and FIFOs are refused; a symbolic link is accepted only as
//! `pg_tblspc/<oid>` of a tablespace the server listed.

use std::io;

use bytes::Bytes;

use crate::catalog::{FileEntry, FileKind, TablespaceInfo};

use super::bundler::Bundler;
use super::entry_path::{entry_path, tablespace_link_oid};
use super::error::BackupError;
use super::event::BackupEvent;
use super::event_batch::EventBatches;
use super::tar_stream::{EntryKind, TarHeader, TarItem, TarStream};

/// Largest `backup_label` / `tablespace_map` kept in memory for the manifest.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// What the main archive held besides file data.
#[derive(Debug, Default)]
pub struct SmallFiles {
    /// `backup_label`, verbatim.
    pub backup_label: Option<String>,
    /// `tablespace_map`, verbatim.
    pub tablespace_map: Option<String>,
}

/// Where one archive goes, and what the server listed.
pub struct ArchiveSink<'a> {
    /// The archive's name (`base.tar`, `16384.tar`).
    pub name: &'a str,
    /// Its tablespace, `None` for the main data directory.
    pub tablespace: Option<u32>,
    /// The tablespaces the server listed.
    pub tablespaces: &'a [TablespaceInfo],
    /// Where file data goes.
    pub bundler: &'a mut Bundler,
    /// Every entry, appended in archive order.
    pub files: &'a mut Vec<FileEntry>,
    /// `backup_label` and `tablespace_map`, from the main archive.
    pub small: &'a mut SmallFiles,
}

/// The file whose data is being read.
struct OpenFile {
    record: FileEntry,
    /// The bytes of `backup_label` / `tablespace_map`, kept for the manifest.
    kept: Option<Vec<u8>>,
}

/// Reads the current archive from `rx` to its [`BackupEvent::ArchiveEnd`]: every entry
/// becomes a [`FileEntry`] in `sink.files`, file data goes to `sink.bundler`.
pub fn read_archive(rx: &mut EventBatches, sink: ArchiveSink<'_>) -> Result<(), BackupError> {
    let name = sink.name;
    let tar_error = |kind: io::ErrorKind, message: String| BackupError::Tar {
        archive: name.to_string(),
        source: io::Error::new(kind, message),
    };
    let mut walk = Walk {
        sink,
        open: None,
        parser: TarStream::new(),
    };
    loop {
        match rx.blocking_next() {
            Some(BackupEvent::Data(mut data)) => {
                while let Some(item) = walk
                    .parser
                    .next_item(&mut data)
                    .map_err(|e| tar_error(io::ErrorKind::InvalidData, e.to_string()))?
                {
                    walk.item(item)?;
                }
            }
            Some(BackupEvent::Progress(_)) => {}
            Some(BackupEvent::ArchiveEnd) => {
                return walk
                    .parser
                    .finish()
                    .map_err(|e| tar_error(io::ErrorKind::UnexpectedEof, e.to_string()));
            }
            Some(other) => {
                return Err(tar_error(
                    io::ErrorKind::InvalidData,
                    format!("{other:?} arrived inside a tar archive"),
                ));
            }
            None => {
                return Err(tar_error(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a tar archive".into(),
                ));
            }
        }
    }
}

struct Walk<'a> {
    sink: ArchiveSink<'a>,
    open: Option<OpenFile>,
    parser: TarStream,
}

impl Walk<'_> {
    fn item(&mut self, item: TarItem) -> Result<(), BackupError> {
        match item {
            TarItem::Entry(header) => self.entry(header),
            TarItem::Data(piece) => self.data(piece),
            TarItem::EntryEnd => self.entry_end(),
        }
    }

    fn entry(&mut self, header: TarHeader) -> Result<(), BackupError> {
        let ArchiveSink {
            name, tablespace, ..
        } = self.sink;
        let path = entry_path(name, tablespace, &header.name)?;
        let refuse = |reason: String| BackupError::RefusedEntry {
            archive: name.to_string(),
            path: path.clone(),
            reason,
        };
        let mut record = FileEntry {
            path: path.clone(),
            kind: FileKind::Dir,
            size: 0,
            mode: header.mode,
            mtime: i64::try_from(header.mtime).unwrap_or(i64::MAX),
            crc32c: None,
            bundle: None,
            offset: None,
            link_target: None,
        };
        match header.kind {
            EntryKind::Dir => {}
            EntryKind::Symlink => {
                let target = String::from_utf8_lossy(&header.link_name).into_owned();
                let listed = tablespace.is_none()
                    && tablespace_link_oid(&path)
                        .is_some_and(|oid| self.sink.tablespaces.iter().any(|t| t.oid == oid));
                if !listed {
                    return Err(refuse(format!(
                        "symbolic link to {target:?}: only pg_tblspc/<oid> links of listed tablespaces are accepted"
                    )));
                }
                record.kind = FileKind::Symlink;
                record.link_target = Some(target);
            }
            EntryKind::File => {
                let keep = tablespace.is_none()
                    && header.size <= MAX_SMALL_FILE
                    && matches!(path.as_str(), "backup_label" | "tablespace_map");
                self.sink.bundler.start_file()?;
                record.kind = FileKind::File;
                record.size = header.size;
                self.open = Some(OpenFile {
                    record,
                    kept: keep.then(Vec::new),
                });
                return Ok(());
            }
            EntryKind::Other(kind) => {
                return Err(refuse(format!(
                    "tar entry type {:?} never appears in a base backup",
                    kind as char
                )));
            }
        }
        // A directory or link: its data, if any, is skipped.
        self.sink.files.push(record);
        Ok(())
    }

    fn data(&mut self, piece: Bytes) -> Result<(), BackupError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(()); // data of a directory or link entry
        };
        if let Some(kept) = open.kept.as_mut() {
            kept.extend_from_slice(&piece);
        }
        self.sink.bundler.write(piece)
    }

    fn entry_end(&mut self) -> Result<(), BackupError> {
        let Some(OpenFile { mut record, kept }) = self.open.take() else {
            return Ok(());
        };
        let placed = self.sink.bundler.end_file(&record.path, record.size)?;
        record.crc32c = Some(placed.crc32c);
        record.bundle = Some(placed.bundle);
        record.offset = Some(placed.offset);
        if let Some(bytes) = kept {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if record.path == "backup_label" {
                self.sink.small.backup_label = Some(text);
            } else {
                self.sink.small.tablespace_map = Some(text);
            }
        }
        self.sink.files.push(record);
        Ok(())
    }
}
