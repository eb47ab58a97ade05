//! Restoring an incremental chain (PostgreSQL 17+): a full backup plus incrementals, each
//! taken against the one before. [`crate::materialise`] writes the newest member's files as
//! they are, `INCREMENTAL.*` files included; [`reconstruct`] then turns each
//! `INCREMENTAL.<name>` into `<name>`, block by block, as pg_combinebackup's reconstruct.c
//! does:
//!
//! - the output is `max(truncation_block_length, highest listed block + 1)` blocks long (the
//!   newest member's header: a truncation is honoured, older blocks past it never return);
//! - a block the newest incremental lists comes from it;
//! - every other block below `truncation_block_length` comes from the newest older member
//!   that has it: an older incremental's listed blocks, else the whole file of the nearest
//!   member that has one (blocks past that file's end stay zero, as Postgres zero-fills
//!   blocks no backup mentions); the walk stops at the first whole file;
//! - a file of the newest member that is not incremental is whole already, and a file the
//!   newest member's manifest does not list is not restored at all (dropped relations).
//!
//! Older members are read bundle by bundle (`parallel` bundles at once, as a full restore
//! reads them), each streamed once with only its needed files handed over
//! ([`crate::bundle_files`]); memory is one bit per block of each file being
//! rebuilt plus fixed buffers. Every output byte is written once. The pass over a file's
//! whole copy (the last one for it) writes the blocks still missing in order and computes
//! the file's CRC-32C for the rewritten `backup_manifest` as it goes (the few blocks newer
//! members wrote are read back from the page cache), then, on that reader's thread, fsyncs
//! the file, gives it the newest member's mtime and owner and removes the `INCREMENTAL.*`
//! file; only a file no whole copy reaches is read back at the end.
//!
//! **Invariant:** a file that cannot be rebuilt (a member lacks it, a header is malformed, a
//! bundle is corrupt) is an error: the restore stops before `pg_control` exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Serialize;
use walship_common::catalog::{BackupId, BackupManifest, FileEntry, FileKind};
use walship_common::fsutil::FsError;
use walship_common::pg::backup_manifest::NewEntry;
use walship_common::pg::incremental_file::{
    BLCKSZ, IncrementalHeader, incremental_path, reconstructed_path,
};
use walship_common::repo::Repository;

use crate::bundle::{ProgressFn, set_mode_and_mtime};
use crate::bundle_files::{CallbackError, FileReader, WantedFile, read_files_blocking};
use crate::error::RestoreError;
use crate::owner::Owner;
use crate::paths::Destinations;

/// What restoring a chain reads from one member (`--dry-run` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRead {
    /// The member.
    pub id: BackupId,
    /// Its parent (`None` for the full backup).
    pub parent: Option<BackupId>,
    /// Bundles read from it.
    pub bundles: usize,
    /// Their stored bytes: all of the newest member's, and at most this much of an older
    /// one's (a bundle is read only when it holds a file the newer members do not complete).
    pub bytes_stored: u64,
}

/// The members of `chain` (full first, newest last) and what restoring it reads from each.
pub fn reads(chain: &[BackupManifest]) -> Vec<MemberRead> {
    let Some(newest) = chain.last() else {
        return Vec::new();
    };
    let mut out = vec![MemberRead {
        id: newest.id,
        parent: newest.parent,
        bundles: newest.bundles.len(),
        bytes_stored: newest.bundles.iter().map(|b| b.stored_len).sum(),
    }];
    let mut needed: BTreeSet<String> = newest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .filter_map(|f| reconstructed_path(&f.path))
        .collect();
    for member in chain.iter().rev().skip(1) {
        let files = file_index(member);
        let mut bundles = BTreeSet::new();
        needed.retain(|path| {
            if let Some(f) = files.get(path.as_str()) {
                bundles.extend(f.bundle);
                false
            } else {
                if let Some(f) = files.get(incremental_path(path).as_str()) {
                    bundles.extend(f.bundle);
                }
                true
            }
        });
        out.push(MemberRead {
            id: member.id,
            parent: member.parent,
            bundles: bundles.len(),
            bytes_stored: bundles
                .iter()
                .filter_map(|i| member.bundles.get(*i as usize))
                .map(|b| b.stored_len)
                .sum(),
        });
    }
    out.reverse();
    out
}

fn file_index(m: &BackupManifest) -> BTreeMap<&str, &FileEntry> {
    m.files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| (f.path.as_str(), f))
        .collect()
}

/// One file being rebuilt.
struct Pending {
    /// Its path in the backup (`base/5/16384`).
    path: String,
    /// The `INCREMENTAL.*` path it comes from.
    incremental: String,
    /// Opened only while it is written (thousands of files may be rebuilt at once).
    out_path: PathBuf,
    incremental_dest: PathBuf,
    truncation: u32,
    /// The output's length in blocks.
    blocks: u32,
    /// One bit per block below `truncation`: already written.
    filled: Vec<u64>,
    /// Blocks below `truncation` not yet written.
    remaining: u32,
    mtime: i64,
    owner: Option<Owner>,
    /// Set once the output is complete, durable and checksummed (by [`take_whole`], which
    /// computes the CRC-32C while it writes, in block order).
    done: Option<NewEntry>,
}

impl Pending {
    fn is_filled(&self, b: u32) -> bool {
        self.filled[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    /// Marks `b` filled; true when it was not (and is below the truncation length).
    fn take(&mut self, b: u32) -> bool {
        if b >= self.truncation || self.is_filled(b) {
            return false;
        }
        self.filled[(b / 64) as usize] |= 1 << (b % 64);
        self.remaining -= 1;
        true
    }

    fn open(&self) -> Result<File, RestoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.out_path)
            .map_err(fs_err("open", &self.out_path))
    }

    /// Reads block `b` of the output back (a hole reads as zeros).
    fn read_block(&self, out: &File, b: u32, block: &mut [u8]) -> Result<(), RestoreError> {
        out.read_exact_at(block, u64::from(b) * BLCKSZ)
            .map_err(fs_err("read", &self.out_path))
    }

    /// Writes `block` (one block, or a run of consecutive ones) at block `b`.
    fn write_block(&self, out: &File, b: u32, block: &[u8]) -> Result<(), RestoreError> {
        out.write_all_at(block, u64::from(b) * BLCKSZ)
            .map_err(fs_err("write", &self.out_path))
    }
}

fn fs_err(action: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| {
        RestoreError::Fs(FsError {
            action,
            path,
            source,
        })
    }
}

/// Rebuilds every `INCREMENTAL.*` file of the newest member of `chain` (already written
/// under `dests`) from the older members; see the module doc. Returns, for the rewritten
/// `backup_manifest`, each incremental path's new entry.
pub async fn reconstruct(
    repo: &Repository,
    chain: &[BackupManifest],
    dests: &Destinations,
    parallel: usize,
    progress: ProgressFn,
) -> Result<BTreeMap<String, NewEntry>, RestoreError> {
    let repo = repo.clone();
    let chain = chain.to_vec();
    let dests = dests.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        reconstruct_blocking(&repo, &runtime, &chain, &dests, parallel, &progress)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn reconstruct_blocking(
    repo: &Repository,
    runtime: &tokio::runtime::Handle,
    chain: &[BackupManifest],
    dests: &Destinations,
    parallel: usize,
    progress: &ProgressFn,
) -> Result<BTreeMap<String, NewEntry>, RestoreError> {
    let Some(newest) = chain.last() else {
        return Ok(BTreeMap::new());
    };
    let backup = newest.id.to_string();
    let mut pending = Vec::new();
    for entry in newest.files.iter().filter(|f| f.kind == FileKind::File) {
        let Some(path) = reconstructed_path(&entry.path) else {
            continue;
        };
        pending.push(start(&backup, entry, path, dests)?);
    }
    for member in chain.iter().rev().skip(1) {
        fill_from(repo, runtime, member, &mut pending, parallel, progress)?;
    }
    let mut changes = BTreeMap::new();
    for p in pending {
        changes.insert(p.incremental.clone(), finish(p)?);
    }
    Ok(changes)
}

/// Opens the newest member's incremental file, creates the output at its full length
/// (zeros) and writes the blocks the newest member carries.
fn start(
    backup: &str,
    entry: &FileEntry,
    path: String,
    dests: &Destinations,
) -> Result<Pending, RestoreError> {
    let bad = |message: String| RestoreError::BadManifest {
        backup: backup.to_string(),
        message,
    };
    let (incremental_dest, _) = dests
        .of(backup, &entry.path)?
        .ok_or_else(|| bad(format!("{} cannot be a file", entry.path)))?;
    let (out_path, owner) = dests
        .of(backup, &path)?
        .ok_or_else(|| bad(format!("{path} cannot be a file")))?;
    let input = File::open(&incremental_dest).map_err(fs_err("open", &incremental_dest))?;
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let header =
        IncrementalHeader::read(&mut reader).map_err(|e| bad(format!("{}: {e}", entry.path)))?;
    if header.file_length() != entry.size {
        return Err(bad(format!(
            "{}: its header describes {} bytes, the file has {}",
            entry.path,
            header.file_length(),
            entry.size
        )));
    }
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&out_path)
        .map_err(fs_err("create", &out_path))?;
    if let Some(owner) = owner {
        owner.apply_to_file(&out, &out_path)?;
    }
    let blocks = header.reconstructed_blocks();
    out.set_len(u64::from(blocks) * BLCKSZ)
        .map_err(fs_err("extend", &out_path))?;
    let truncation = header.truncation_block_length;
    let mut p = Pending {
        path,
        incremental: entry.path.clone(),
        out_path,
        incremental_dest,
        truncation,
        blocks,
        filled: vec![0; truncation.div_ceil(64) as usize],
        remaining: truncation,
        mtime: entry.mtime,
        owner,
        done: None,
    };
    let mut block = vec![0u8; BLCKSZ as usize];
    for b in &header.blocks {
        reader
            .read_exact(&mut block)
            .map_err(fs_err("read", &p.incremental_dest))?;
        p.take(*b);
        p.write_block(&out, *b, &block)?;
    }
    Ok(p)
}

/// A file of an older member for one output: the output's index among the pending files,
/// the member's entry, and whether the entry is a whole file (else an incremental one).
type FileJob<'a> = (usize, &'a FileEntry, bool);

/// Fills what `member` can give to the files still missing blocks, reading up to `parallel`
/// of its bundles at once (each file is in one bundle of a member, so no two bundles
/// write the same output).
fn fill_from(
    repo: &Repository,
    runtime: &tokio::runtime::Handle,
    member: &BackupManifest,
    pending: &mut [Pending],
    parallel: usize,
    progress: &ProgressFn,
) -> Result<(), RestoreError> {
    let files = file_index(member);
    // bundle -> [(pending index, entry, whole?)]
    let mut by_bundle: BTreeMap<u32, Vec<FileJob<'_>>> = BTreeMap::new();
    for (i, p) in pending.iter().enumerate() {
        if p.remaining == 0 {
            continue;
        }
        let (entry, whole) = match files.get(p.path.as_str()) {
            Some(e) => (*e, true),
            None => match files.get(incremental_path(&p.path).as_str()) {
                Some(e) => (*e, false),
                None => {
                    return Err(RestoreError::BadManifest {
                        backup: member.id.to_string(),
                        message: format!(
                            "{} needs blocks of {} from this older member of its chain, which has neither it nor {}",
                            p.incremental,
                            p.path,
                            incremental_path(&p.path)
                        ),
                    });
                }
            },
        };
        let Some(bundle) = entry.bundle else {
            return Err(RestoreError::BadManifest {
                backup: member.id.to_string(),
                message: format!("file {} has no bundle", entry.path),
            });
        };
        by_bundle.entry(bundle).or_default().push((i, entry, whole));
    }
    let by_bundle: Vec<(u32, Vec<FileJob<'_>>)> = by_bundle.into_iter().collect();
    let cells: Vec<Mutex<&mut Pending>> = pending.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let read_bundles = || -> Result<(), RestoreError> {
        while !failed.load(Ordering::Relaxed) {
            let Some((bundle, jobs)) = by_bundle.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            let result = fill_bundle(repo, runtime, member, *bundle, jobs, &cells, progress);
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
                return result;
            }
        }
        Ok(())
    };
    let workers = parallel.clamp(1, by_bundle.len().max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(read_bundles)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Result<Vec<()>, RestoreError>>()
    })?;
    drop(cells);
    // A whole file ends the walk for its output: what it lacks is zeros.
    for p in pending.iter_mut() {
        if p.remaining > 0 && files.contains_key(p.path.as_str()) {
            p.remaining = 0;
        }
    }
    Ok(())
}

/// Reads one bundle of `member` and hands each wanted file to its output.
fn fill_bundle(
    repo: &Repository,
    runtime: &tokio::runtime::Handle,
    member: &BackupManifest,
    bundle: u32,
    jobs: &[FileJob<'_>],
    cells: &[Mutex<&mut Pending>],
    progress: &ProgressFn,
) -> Result<(), RestoreError> {
    let mut jobs = jobs.to_vec();
    {
        jobs.sort_by_key(|(_, e, _)| e.offset);
        let info =
            member
                .bundles
                .get(bundle as usize)
                .ok_or_else(|| RestoreError::BadManifest {
                    backup: member.id.to_string(),
                    message: format!("bundle index {bundle} is not in the manifest"),
                })?;
        let wanted: Vec<WantedFile> = jobs
            .iter()
            .map(|(_, e, _)| WantedFile {
                path: e.path.clone(),
                offset: e.offset.unwrap_or(0),
                size: e.size,
                crc32c: e.crc32c.unwrap_or(0),
            })
            .collect();
        if jobs
            .iter()
            .any(|(_, e, _)| e.offset.is_none() || e.crc32c.is_none())
        {
            return Err(RestoreError::BadManifest {
                backup: member.id.to_string(),
                message: format!("a file of bundle {} has no offset or crc32c", info.name),
            });
        }
        read_files_blocking(
            repo,
            runtime,
            member.id,
            &info.name,
            info.raw_len,
            &wanted,
            |j, reader| {
                let (i, entry, whole) = jobs[j];
                let mut p = cells[i].lock().unwrap_or_else(|e| e.into_inner());
                if whole {
                    take_whole(&mut p, entry.size, reader, progress)
                } else {
                    take_incremental(&mut p, &member.id, entry, reader, progress)
                }
            },
        )?;
    }
    Ok(())
}

/// Blocks of a whole file below the truncation length that are still missing; this ends the
/// walk for the output, so it is then completed ([`complete`]). The output's CRC-32C is
/// computed here, in block order, from the bytes written and (for the blocks newer members
/// wrote) the bytes read back, so no rebuilt file is read whole again.
fn take_whole(
    p: &mut Pending,
    size: u64,
    reader: &mut FileReader<'_>,
    progress: &ProgressFn,
) -> Result<(), CallbackError> {
    let usable = (size / BLCKSZ).min(u64::from(p.truncation)) as u32;
    let out = p.open()?;
    let mut block = vec![0u8; BLCKSZ as usize];
    let mut crc = 0u32;
    // Consecutive missing blocks are read from the older copy straight into one buffer and
    // go out in one write (a whole segment of a full backup is 131,072 blocks: one `pwrite`
    // each cost seconds per GiB, and a copy per block through a second buffer a second of
    // CPU per 3 GiB).
    let mut run = vec![0u8; RUN_BYTES];
    let mut b = 0u32;
    while b < usable {
        if !p.take(b) {
            // A newer member wrote this block: skip the older copy's, hash the one on disk.
            reader.read_exact(&mut block)?;
            p.read_block(&out, b, &mut block)?;
            crc = walship_common::crc::crc32c_append(crc, &block);
            b += 1;
            continue;
        }
        let start = b;
        b += 1;
        while b < usable && ((b - start) as usize) < RUN_BLOCKS && p.take(b) {
            b += 1;
        }
        let bytes = (b - start) as usize * BLCKSZ as usize;
        reader.read_exact(&mut run[..bytes])?;
        progress(bytes as u64);
        crc = walship_common::crc::crc32c_append(crc, &run[..bytes]);
        p.write_block(&out, start, &run[..bytes])?;
    }
    // Past the whole file's end: newer members' blocks, and zeros (holes read as zeros).
    for b in usable..p.blocks {
        p.read_block(&out, b, &mut block)?;
        crc = walship_common::crc::crc32c_append(crc, &block);
    }
    p.remaining = 0;
    let size = u64::from(p.blocks) * BLCKSZ;
    p.done = Some(complete(p, out, size, crc)?);
    Ok(())
}

/// Makes a rebuilt file durable with its mtime and owner, removes its `INCREMENTAL.*` file
/// and returns its manifest entry.
fn complete(p: &Pending, out: File, size: u64, crc32c: u32) -> Result<NewEntry, RestoreError> {
    set_mode_and_mtime(&out, &p.out_path, p.mtime)?;
    if let Some(owner) = p.owner {
        owner.apply_to_file(&out, &p.out_path)?;
    }
    walship_common::fsutil::sync_and_release(&out, &p.out_path)?;
    drop(out);
    fs::remove_file(&p.incremental_dest).map_err(fs_err("remove", &p.incremental_dest))?;
    Ok(NewEntry {
        path: p.path.clone(),
        size,
        crc32c,
    })
}

/// The most bytes of consecutive blocks [`take_whole`] writes in one call.
const RUN_BYTES: usize = 1 << 20;
/// [`RUN_BYTES`] in blocks.
const RUN_BLOCKS: usize = RUN_BYTES / BLCKSZ as usize;

/// Blocks an older incremental carries that are still missing.
fn take_incremental(
    p: &mut Pending,
    member: &BackupId,
    entry: &FileEntry,
    reader: &mut FileReader<'_>,
    progress: &ProgressFn,
) -> Result<(), CallbackError> {
    let header = IncrementalHeader::read(reader).map_err(|e| {
        CallbackError::Other(RestoreError::BadManifest {
            backup: member.to_string(),
            message: format!("{}: {e}", entry.path),
        })
    })?;
    if header.file_length() != entry.size {
        return Err(CallbackError::Other(RestoreError::BadManifest {
            backup: member.to_string(),
            message: format!(
                "{}: its header describes {} bytes, the manifest says {}",
                entry.path,
                header.file_length(),
                entry.size
            ),
        }));
    }
    let out = p.open()?;
    let mut block = vec![0u8; BLCKSZ as usize];
    for b in &header.blocks {
        reader.read_exact(&mut block)?;
        if p.take(*b) {
            p.write_block(&out, *b, &block)?;
            progress(BLCKSZ);
        }
    }
    Ok(())
}

/// The manifest entry of a rebuilt file: [`take_whole`] completed most of them; the others
/// (every block came from incrementals, or nothing is below the truncation length) are
/// checksummed by reading them back, then completed.
fn finish(mut p: Pending) -> Result<NewEntry, RestoreError> {
    if let Some(done) = p.done.take() {
        return Ok(done);
    }
    let out = p.open()?;
    let mut crc = 0u32;
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut f = &out;
    loop {
        let n = f.read(&mut buf).map_err(fs_err("read", &p.out_path))?;
        if n == 0 {
            break;
        }
        crc = walship_common::crc::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
    complete(&p, out, size, crc)
}

/// The newest member's `backup_label` for the rebuilt directory: without the
/// `INCREMENTAL FROM LSN`/`INCREMENTAL FROM TLI` lines (Postgres refuses to start on a label
/// that has them: it is a backup to combine, not a data directory).
pub fn combined_backup_label(label: &str) -> String {
    label
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("INCREMENTAL FROM "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_loses_its_incremental_lines_only() {
        let label = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nCHECKPOINT LOCATION: 0/4000080\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-01-01 00:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\nINCREMENTAL FROM LSN: 0/2000028\nINCREMENTAL FROM TLI: 1\n";
        let out = combined_backup_label(label);
        assert!(!out.contains("INCREMENTAL"));
        assert!(out.ends_with("START TIMELINE: 1\n"));
        assert_eq!(out.lines().count(), 7);
    }
}
