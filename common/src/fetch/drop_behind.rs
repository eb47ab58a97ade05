//! Dropping the page cache of segments recovery has finished reading.
//!
//! Why: every segment the prefetch worker writes into its spool needs 16 MiB of page cache,
//! and restored segments stay in `pg_wal` (and in the cache) until a restartpoint removes
//! them, so without this each segment takes memory the kernel has not used recently. On a
//! VM whose host takes back the memory a guest frees (free page reporting, ballooning), the
//! first touch of such memory is slow: on the 2-vCPU CI machine, writing a new 16 MiB file
//! took 44-63 ms of kernel time, against about 4 ms when its pages came from a file just
//! dropped from the cache, and the worker could not keep ahead of replay. Dropping the
//! segments Postgres has finished with gives the worker recently used pages, and keeps the
//! cache from filling with WAL nobody reads again.
//!
//! Advisory only (`posix_fadvise(POSIX_FADV_DONTNEED)`): no file is changed, and a segment
//! read again comes from disk. Only segments at least [`KEEP`] behind the one Postgres asked
//! for last are dropped: Postgres asks for a segment when it has finished reading the one
//! before.

use std::path::{Path, PathBuf};

use super::spool::FetchSpool;
use crate::fsutil;
use crate::pg::file_name::WalFileName;
use crate::pg::segment::SegNo;

/// Segments before the position kept in the cache: the one just finished, and the position
/// itself.
pub const KEEP: u64 = 2;
/// Most segments looked at behind the first position seen (a worker started late).
const LOOKBACK: u64 = 16;

/// The segments of one `pg_wal` dropped so far.
#[derive(Debug)]
pub struct DropBehind {
    pg_wal: PathBuf,
    /// The last segment number dropped (or looked at), on the position's timeline.
    done_through: Option<(WalFileName, SegNo)>,
}

impl DropBehind {
    /// For a spool in its default place, `<pg_wal>/walship/fetch`; `None` for a spool
    /// elsewhere (`fetch.spool_dir`), whose `pg_wal` is not known.
    pub fn for_spool(spool_dir: &Path) -> Option<DropBehind> {
        let pg_wal = spool_dir.parent()?.parent()?;
        let is_default = pg_wal.file_name().is_some_and(|n| n == "pg_wal")
            && FetchSpool::dir_for_pg_wal(pg_wal) == spool_dir;
        is_default.then(|| DropBehind {
            pg_wal: pg_wal.to_path_buf(),
            done_through: None,
        })
    }

    /// Postgres asked for `position`: drops the cached pages of the segments of its timeline
    /// up to [`KEEP`] before it that were not dropped yet. Errors (a segment already
    /// removed or recycled by a restartpoint) are ignored: the advice is only an advice.
    pub fn advance(&mut self, position: WalFileName) {
        let Some(last) = position.segno().0.checked_sub(KEEP) else {
            return;
        };
        let first = match self.done_through {
            Some((wal, done)) if wal.timeline() == position.timeline() => done.0 + 1,
            _ => last.saturating_sub(LOOKBACK - 1),
        };
        for segno in first..=last {
            if let Ok(wal) =
                WalFileName::new(position.timeline(), SegNo(segno), position.seg_size())
            {
                fsutil::drop_cached_pages(&self.pg_wal.join(wal.to_string()));
            }
        }
        if first <= last {
            self.done_through = Some((position, SegNo(last)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::segment::WalSegSize;

    fn wal(segno: u64) -> WalFileName {
        WalFileName::new(
            crate::pg::TimelineId(1),
            SegNo(segno),
            WalSegSize::from_mib(16).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn only_the_default_spool_inside_pg_wal_knows_its_pg_wal() {
        let data = Path::new("/data");
        let spool = FetchSpool::dir_for_pg_wal(&data.join("pg_wal"));
        let found = DropBehind::for_spool(&spool).unwrap();
        assert_eq!(found.pg_wal, data.join("pg_wal"));
        assert!(DropBehind::for_spool(Path::new("/var/spool/walship")).is_none());
        assert!(DropBehind::for_spool(Path::new("/data/other/walship/fetch")).is_none());
    }

    #[test]
    fn drops_each_segment_once_and_never_the_last_two() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        std::fs::create_dir(&pg_wal).unwrap();
        let segment = pg_wal.join(wal(38).to_string());
        std::fs::write(&segment, b"replayed WAL").unwrap();
        let mut drop = DropBehind::for_spool(&FetchSpool::dir_for_pg_wal(&pg_wal)).unwrap();
        drop.advance(wal(1));
        assert!(
            drop.done_through.is_none(),
            "nothing is two behind segment 1"
        );
        drop.advance(wal(40));
        assert_eq!(drop.done_through.unwrap().1, SegNo(38));
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            b"replayed WAL",
            "advice only"
        );
        drop.advance(wal(40));
        assert_eq!(drop.done_through.unwrap().1, SegNo(38));
        drop.advance(wal(43));
        assert_eq!(drop.done_through.unwrap().1, SegNo(41));
    }
}
