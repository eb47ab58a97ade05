//! The machine's share of `bench fetch`'s gap: the same lz4 decoding a prefetching
//! `restore_command` must do, run by the reference `lz4` tool beside a recovery that reads
//! its WAL from `pg_wal`. No walship code runs, so the slowdown it causes is what any tool
//! that decompresses during recovery pays on this machine's cores, page cache and disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Segments decoded and not yet removed, as the prefetch spool keeps them.
const KEPT_BEHIND: usize = 2;
/// How far ahead of replay the decoding runs (walship's default `fetch.prefetch`).
const AHEAD: usize = 8;
/// How often replay's position is looked up.
const POLL: Duration = Duration::from_millis(2);
/// How long to wait for the recovery's startup process before giving up.
const NEVER_SEEN: Duration = Duration::from_secs(120);

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

    /// Starts decoding every segment into `scratch`, in order, as walship's prefetch worker
    /// paces itself: at most [`AHEAD`] segments past the one the recovery of `data_dir` is
    /// replaying (its startup process's title), each flushed to disk and removed once two
    /// newer ones exist. Stops when the recovery ends.
    pub fn decode_in_background(
        &self,
        scratch: &Path,
        data_dir: &Path,
    ) -> Result<JoinHandle<Result<()>>> {
        std::fs::create_dir_all(scratch)?;
        let files = self.files.clone();
        let scratch = scratch.to_owned();
        let data_dir = data_dir.to_owned();
        Ok(std::thread::spawn(move || {
            let mut written: Vec<PathBuf> = Vec::new();
            let mut seen_replay = false;
            let started = std::time::Instant::now();
            for (n, file) in files.iter().enumerate() {
                let name = file.file_stem().context("lz4 file without name")?;
                loop {
                    match replaying(&data_dir) {
                        Some(segment) => {
                            seen_replay = true;
                            let replayed = files
                                .iter()
                                .filter(|f| f.file_stem().is_some_and(|s| *s < *segment))
                                .count();
                            if n <= replayed + AHEAD {
                                break;
                            }
                        }
                        None if seen_replay => return Ok(()),
                        None if started.elapsed() > NEVER_SEEN => bail!(
                            "no startup process of {} showed the segment it replays in {NEVER_SEEN:?}",
                            data_dir.display()
                        ),
                        None => {}
                    }
                    std::thread::sleep(POLL);
                }
                let out = scratch.join(name);
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

/// The segment the startup process of the server in `data_dir` is replaying, from its
/// process title (`postgres: startup recovering <segment>`); `None` when there is none.
fn replaying(data_dir: &Path) -> Option<std::ffi::OsString> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let postmaster = pid_file.lines().next()?.trim().to_owned();
    let children =
        std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).ok()?;
    children.split_whitespace().find_map(|pid| {
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let title = String::from_utf8_lossy(&title);
        let segment = title.split("startup recovering ").nth(1)?;
        Some(segment.trim_end_matches(['\0', ' ']).into())
    })
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
