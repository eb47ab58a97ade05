//! The consuming end of a backup stream, run on a blocking thread: takes [`BackupEvent`]s
//! from a channel in the order the server sends them, walks each tar archive into the
//! [`Bundler`], and gathers everything the manifest needs ([`Collected`]).

use std::sync::Arc;

use crate::catalog::{BundleInfo, FileEntry, FileKind, TablespaceInfo};
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

use super::bundler::Bundler;
use super::error::BackupError;
use super::event::BackupEvent;
use super::event_batch::EventBatches;
use super::progress::Progress;
use super::tar::{ArchiveSink, SmallFiles, read_archive};

/// Largest Postgres `backup_manifest` kept (it lists every file; 1 GiB is far beyond any
/// real cluster's).
const MAX_PG_MANIFEST: usize = 1 << 30;

/// Everything a backup stream delivered, with the files already stored in bundles.
#[derive(Debug, Default)]
pub struct Collected {
    /// Start location and timeline.
    pub start: Option<(Lsn, TimelineId)>,
    /// Stop location and timeline.
    pub stop: Option<(Lsn, TimelineId)>,
    /// Tablespaces besides the main directory.
    pub tablespaces: Vec<TablespaceInfo>,
    /// Every entry, in stream order (so `global/pg_control` is last of the main archive).
    pub files: Vec<FileEntry>,
    /// The bundles, by index.
    pub bundles: Vec<BundleInfo>,
    /// `backup_label` and `tablespace_map`.
    pub small: SmallFiles,
    /// Postgres's `backup_manifest`, verbatim.
    pub pg_manifest: Option<String>,
}

/// Postgres 15+ do not send the `pg_tblspc/<oid>` links when a tablespace map is requested
/// (13-14 do): the manifest gets one for every listed tablespace all the same, pointing at
/// the tablespace's location, so that it reads the same whatever the server's version.
/// Placed before `global/pg_control`, which stays last.
fn add_missing_tablespace_links(out: &mut Collected) {
    for ts in &out.tablespaces {
        let path = format!("pg_tblspc/{}", ts.oid);
        if out.files.iter().any(|f| f.path == path) {
            continue;
        }
        let link = FileEntry {
            path,
            kind: FileKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: 0,
            crc32c: None,
            bundle: None,
            offset: None,
            link_target: Some(ts.location.clone()),
        };
        let at = out
            .files
            .iter()
            .position(|f| f.path == "global/pg_control")
            .unwrap_or(out.files.len());
        out.files.insert(at, link);
    }
}

/// Consumes `rx` to its end; see the module doc.
pub fn collect(
    mut rx: EventBatches,
    mut bundler: Bundler,
    progress: Arc<Progress>,
) -> Result<Collected, BackupError> {
    let mut out = Collected::default();
    let mut manifest: Option<Vec<u8>> = None;
    let mut archives_seen = Vec::<Option<u32>>::new();
    while let Some(event) = rx.blocking_next() {
        match event {
            BackupEvent::Started {
                start_lsn,
                timeline,
            } => out.start = Some((start_lsn, timeline)),
            BackupEvent::Tablespaces {
                tablespaces,
                estimated_bytes,
            } => {
                out.tablespaces = tablespaces;
                if let Some(bytes) = estimated_bytes {
                    progress.set_estimate(bytes);
                }
            }
            BackupEvent::ArchiveStart { name, tablespace } => {
                if out.start.is_none() {
                    return Err(BackupError::Protocol(format!(
                        "archive {name} arrived before the start position"
                    )));
                }
                if let Some(oid) = tablespace
                    && !out.tablespaces.iter().any(|t| t.oid == oid)
                {
                    return Err(BackupError::Protocol(format!(
                        "archive {name} is for tablespace {oid}, which the server did not list"
                    )));
                }
                if archives_seen.contains(&tablespace) {
                    return Err(BackupError::Protocol(format!(
                        "archive {name} arrived twice"
                    )));
                }
                archives_seen.push(tablespace);
                read_archive(
                    &mut rx,
                    ArchiveSink {
                        name: &name,
                        tablespace,
                        tablespaces: &out.tablespaces,
                        bundler: &mut bundler,
                        files: &mut out.files,
                        small: &mut out.small,
                    },
                )?;
            }
            BackupEvent::Manifest(chunk) => {
                let buf = manifest.get_or_insert_with(Vec::new);
                if buf.len() + chunk.len() > MAX_PG_MANIFEST {
                    return Err(BackupError::Protocol(
                        "backup_manifest is larger than 1 GiB".into(),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            BackupEvent::Progress(_) => {}
            BackupEvent::Ended { stop_lsn, timeline } => out.stop = Some((stop_lsn, timeline)),
            BackupEvent::Data(_) | BackupEvent::ArchiveEnd => {
                return Err(BackupError::Protocol(
                    "archive data arrived outside an archive".into(),
                ));
            }
        }
    }
    if !archives_seen.contains(&None) {
        return Err(BackupError::Protocol(
            "the stream ended without the main data directory's archive".into(),
        ));
    }
    add_missing_tablespace_links(&mut out);
    if let Some(bytes) = manifest {
        let text = String::from_utf8(bytes)
            .map_err(|_| BackupError::Protocol("backup_manifest is not valid UTF-8".into()))?;
        out.pg_manifest = Some(text);
    }
    out.bundles = bundler.finish()?;
    Ok(out)
}
