//! The machine's share of `bench fetch`'s gap: the same lz4 decoding a prefetching
//! `restore_command` must do, run by the reference `lz4` tool beside a recovery that reads
//! its WAL from `pg_wal`. No walship code runs, so the slowdown it causes is what any tool
//! that decompresses during recovery pays on this machine's cores, page cache and disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};

/// Segments decoded and not yet removed, as the prefetch spool keeps them.
const KEPT_BEHIND: usize = 2;

/// The segments compressed by `lz4` (fast level, as walship stores them), once, unmeasured.
pub struct CompressedSegments {
    files: Vec<PathBuf>,
}

impl CompressedSegments {
    /// Compresses every segment of `wal` into `dir`.
    pub fn prepare(wal: &[PathBuf], dir: &Path) -> Result<CompressedSegments> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for segment in wal {
            let name = segment.file_name().context("segment without name")?;
            let out = dir.join(name).with_extension("lz4");
            run_lz4(&["-1", "-q", "-f"], segment, &out)?;
            files.push(out);
        }
        Ok(CompressedSegments { files })
    }

    /// Starts decoding every segment into `scratch`, in order, each flushed to disk as the
    /// prefetch worker flushes its entries, and removed once two newer ones exist.
    pub fn decode_in_background(&self, scratch: &Path) -> Result<JoinHandle<Result<()>>> {
        std::fs::create_dir_all(scratch)?;
        let files = self.files.clone();
        let scratch = scratch.to_owned();
        Ok(std::thread::spawn(move || {
            let mut written: Vec<PathBuf> = Vec::new();
            for file in &files {
                let out = scratch.join(file.file_stem().context("lz4 file without name")?);
                run_lz4(&["-d", "-q", "-f"], file, &out)?;
                std::fs::File::open(&out)?.sync_data()?;
                written.push(out);
                if written.len() > KEPT_BEHIND {
                    std::fs::remove_file(written.remove(0))?;
                }
            }
            for out in written {
                std::fs::remove_file(out)?;
            }
            Ok(())
        }))
    }
}

/// `lz4 <flags> <input> <output>`.
fn run_lz4(flags: &[&str], input: &Path, output: &Path) -> Result<()> {
    let status = Command::new("lz4")
        .args(flags)
        .arg(input)
        .arg(output)
        .status()
        .context("run lz4 (Debian package lz4)")?;
    if !status.success() {
        bail!("lz4 {flags:?} {} failed with {status}", input.display());
    }
    Ok(())
}
