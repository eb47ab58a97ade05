//! Decoding a stored WAL segment straight into a new file, block by block, its pages
//! checked as they pass: the prefetch worker's entries and `fetch`'s deliveries from the
//! repository. No whole-segment buffer is needed, so a `fetch` process faults in no fresh
//! 16 MiB of memory (about 30 ms of a call on the bench machine, whose new memory is slow:
//! BENCHMARKS.md, "Replay through fetch"), and the worker makes one pass through memory.
//! The file's writeback is paced as it is written, so that it never fills the disk queue
//! in front of the flushes of the recovery it serves.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::codec::{self, ObjectSummary};
use crate::fsutil::{FsError, PacedWriteback};
use crate::pg::file_name::WalFileName;
use crate::pg::segment_check::{SegmentError, SegmentReport, SegmentValidator};

/// How much of a new file may wait in the disk queue at once ([`PacedWriteback`]): replay
/// beside the prefetch worker was about 9 % faster with 1 MiB than with the whole segment
/// left to the final `fdatasync` (BENCHMARKS.md, "Replay through fetch: a quieter worker").
const WRITEBACK_CHUNK: u64 = 1 << 20;

/// A segment as [`decode_to_new_file`] wrote it: the new file (unflushed), the verified
/// summary of its content, and the verdict on its pages.
pub(super) type Decoded = (File, ObjectSummary, Result<SegmentReport, SegmentError>);

/// Decodes `stored` (an opened object of segment `wal`, content at most `limit` bytes)
/// into the new file `path` (mode 0600), checking its pages against `wal` and `sysid` as
/// they pass (see [`codec::decode_blocks_to`]). `None` when the object is not one that path
/// decodes, or does not verify: nothing is left at `path`, and decoding it whole gives the
/// verdict. The caller removes `path` when the pages' verdict is an error.
pub(super) fn decode_to_new_file(
    stored: &[u8],
    limit: u64,
    block: &mut Vec<u8>,
    path: &Path,
    wal: WalFileName,
    sysid: u64,
) -> Result<Option<Decoded>, FsError> {
    let fail = |source| FsError {
        action: "write segment",
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    let mut validator = SegmentValidator::new(wal, Some(sysid));
    let mut wrong = None;
    let mut writeback = PacedWriteback::new(WRITEBACK_CHUNK);
    let decoded = codec::decode_blocks_to(stored, limit, block, |bytes| {
        if wrong.is_none()
            && let Err(e) = validator.feed(bytes)
        {
            wrong = Some(e);
        }
        file.write_all(bytes)?;
        writeback.wrote(&file, bytes.len());
        Ok(())
    });
    let summary = match decoded {
        Ok(Some(summary)) => summary,
        Ok(None) => {
            let _ = std::fs::remove_file(path);
            return Ok(None);
        }
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(fail(e));
        }
    };
    let report = match wrong {
        Some(e) => Err(e),
        None => validator.finish(),
    };
    Ok(Some((file, summary, report)))
}
