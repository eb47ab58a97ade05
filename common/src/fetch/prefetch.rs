//! The prefetch worker of `walship fetch`: one long-lived process per spool that keeps the
//! next segments Postgres will ask for verified in the spool, ahead of recovery.
//!
//! The worker follows the spool's `.position` (the segment Postgres asked for last, written
//! by every `fetch` call) and keeps the `count` segments after it in the spool, nearest
//! first, so that each `restore_command` finds its segment waiting. Downloads from S3 overlap
//! (`parallel` at a time); decoding, checking and writing run one at a time, and a local
//! repository is read one segment at a time, so the worker takes at most one core from the
//! recovery it serves (on 2 cores, parallel decodes made replay slower, not faster). It stops when the position has not moved for [`PrefetchPlan::idle_exit`] and
//! nothing is left to fetch (the next `fetch` call starts a new one), or when the spool
//! directory disappears or is replaced (its lock file is no longer the one it locked). A segment the repository does not have (yet) is asked for again
//! after [`RETRY_MISSING`]. Only one worker runs per spool (`flock` on `.lock`). As the
//! position moves, the worker drops the page cache of the segments Postgres has finished
//! reading ([`DropBehind`]), so that writing the next entries reuses recently used memory.
//!
//! **Invariant:** an entry is committed only after its content decoded with a matching
//! crc32c and its page headers matched its name and the repository's identity; the receipt
//! records the size and crc32c of exactly those bytes.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::caller_gate::{Caller, CallerGate};
use super::decode_turns::DecodeTurns;
use super::drop_behind::DropBehind;
use super::segment_file;
use super::spool::{FetchSpool, SpoolOrigin};
use super::{FetchError, check_content};
use crate::codec::{self, ObjectSummary};
use crate::fsutil::{self, FsError};
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::repo::{RepoError, RepoIdentity, Repository, layout, limits};
use crate::task::run_blocking;

/// How long a segment found missing (or failing) is left alone before it is asked for again.
pub const RETRY_MISSING: Duration = Duration::from_secs(1);
/// How often the worker looks at the position. Each look wakes the worker beside the
/// recovery it serves; on two cores, looking every 5 ms made replay about 15 % slower than
/// every 20-100 ms (BENCHMARKS.md, "Replay through fetch: a quieter worker"). The window
/// is `count` segments deep, so noticing a move a few segments late costs nothing.
const POLL: Duration = Duration::from_millis(25);
/// How often the worker looks at the whole window even when nothing moved.
const RESCAN: Duration = Duration::from_millis(100);

/// What the worker keeps ahead, and for how long it waits for Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchPlan {
    /// Segments kept ready after the position.
    pub count: usize,
    /// Downloads in flight at once.
    pub parallel: usize,
    /// The worker exits when the position has not moved for this long and nothing is left
    /// to fetch.
    pub idle_exit: Duration,
    /// The `fetch` call that started the worker, whose end its first decode waits for
    /// (`caller_gate.rs`).
    pub caller: Option<Caller>,
}

/// Runs the prefetch worker on `spool` for the repository configured as `repository` (see
/// [`SpoolOrigin`]), starting after `after` until the position `fetch` calls record stops
/// moving. Returns the number of segments added; 0 at once if another worker holds the spool.
pub async fn run_worker(
    repo: &Repository,
    spool: &FetchSpool,
    repository: &str,
    after: WalFileName,
    plan: PrefetchPlan,
) -> Result<usize, FetchError> {
    let write_error = |source: FsError| FetchError::Write {
        name: after.to_string(),
        source,
    };
    let Some(lock) = spool.try_lock().map_err(write_error)? else {
        return Ok(0);
    };
    let identity = repo.require_identity().await?;
    spool
        .adopt_origin(&SpoolOrigin {
            repository: repository.to_string(),
            identity: identity.clone(),
        })
        .map_err(write_error)?;
    let mut worker = Worker {
        repo,
        spool,
        lock: &lock,
        identity: &identity,
        plan,
        position: spool.position().unwrap_or(after),
        moved_at: Instant::now(),
        drop_behind: DropBehind::for_spool(spool.dir()),
        in_flight: BTreeSet::new(),
        retry_at: HashMap::new(),
        added: 0,
    };
    worker.run().await;
    Ok(worker.added)
}

struct Worker<'a> {
    repo: &'a Repository,
    spool: &'a FetchSpool,
    /// The spool's lock; the worker stops once it no longer guards the spool.
    lock: &'a super::spool::SpoolLock,
    identity: &'a RepoIdentity,
    plan: PrefetchPlan,
    /// The segment Postgres asked for last.
    position: WalFileName,
    /// When `position` last changed.
    moved_at: Instant,
    /// The page cache of segments behind the position, when the spool is inside `pg_wal`.
    drop_behind: Option<DropBehind>,
    /// Segments being downloaded now.
    in_flight: BTreeSet<WalFileName>,
    /// Segments found missing or failing, and when to try them again.
    retry_at: HashMap<WalFileName, Instant>,
    /// Entries committed.
    added: usize,
}

impl Worker<'_> {
    async fn run(&mut self) {
        // Downloads overlap; decoding, checking and writing (CPU) run one at a time, nearest
        // segment first, so the worker never takes more than one core from the recovery it
        // serves. The decode buffers are shared (their pages are faulted in once, not per
        // segment).
        let cpu = DecodeTurns::new(DecodeBuffers::default());
        let cpu = &cpu;
        let gate = CallerGate::new(self.plan.caller);
        let gate = &gate;
        let mut downloads = FuturesUnordered::new();
        // Whether the spool may lack something the window wants: the window moved, a
        // download ended, or it is time for the periodic look (which also catches entries
        // a `fetch` call threw away, and retries that came due).
        let mut rescan = true;
        let mut rescanned_at = Instant::now();
        loop {
            if !self.lock.still_holds(self.spool) {
                return;
            }
            if let Some(position) = self.spool.position()
                && position != self.position
            {
                self.position = position;
                self.moved_at = Instant::now();
                rescan = true;
                if let Some(drop_behind) = &mut self.drop_behind {
                    drop_behind.advance(position);
                }
            }
            let now = Instant::now();
            if rescan || now.duration_since(rescanned_at) >= RESCAN {
                (rescan, rescanned_at) = (false, now);
                self.retry_at.retain(|_, at| *at > now);
                let (repo, spool, identity) = (self.repo, self.spool, self.identity);
                for wal in self.wanted() {
                    self.in_flight.insert(wal);
                    downloads.push(async move {
                        (
                            wal,
                            prefetch_one(repo, spool, identity, wal, cpu, gate).await,
                        )
                    });
                }
            }
            if downloads.is_empty() {
                if self.moved_at.elapsed() >= self.plan.idle_exit {
                    return;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            let done = tokio::select! {
                done = downloads.next() => done,
                () = tokio::time::sleep(POLL) => None,
            };
            if let Some((wal, result)) = done {
                self.finished(wal, result);
                rescan = true;
            }
        }
    }

    /// Records the end of the download of `wal`.
    fn finished(&mut self, wal: WalFileName, result: Result<(), FetchError>) {
        self.in_flight.remove(&wal);
        match result {
            Ok(()) => self.added += 1,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!("prefetch of {wal} failed (it will be fetched on demand): {e}");
                }
                self.retry_at.insert(wal, Instant::now() + RETRY_MISSING);
            }
        }
    }

    /// The next segments to start downloading: those of the window after the position that
    /// are not in the spool, not in flight and not waiting for a retry, nearest first, up to
    /// the free download slots.
    fn wanted(&self) -> Vec<WalFileName> {
        let free = self
            .plan
            .parallel
            .max(1)
            .saturating_sub(self.in_flight.len());
        let mut wanted = Vec::new();
        let mut next = self.position.next();
        for _ in 0..self.plan.count {
            let Some(wal) = next else { break };
            if wanted.len() == free {
                break;
            }
            if !self.in_flight.contains(&wal)
                && !self.retry_at.contains_key(&wal)
                && !self.spool.contains(&wal)
            {
                wanted.push(wal);
            }
            next = wal.next();
        }
        wanted
    }
}

/// The worker's decode buffers, reused from segment to segment (their pages are faulted in
/// once): one lz4 block, and a whole segment for objects decoded whole.
#[derive(Debug, Default)]
struct DecodeBuffers {
    block: Vec<u8>,
    content: Vec<u8>,
}

/// Downloads, verifies and commits one entry; `cpu` hands out the decode buffers, held while
/// decoding, checking and writing, after `gate` (the first time).
async fn prefetch_one(
    repo: &Repository,
    spool: &FetchSpool,
    identity: &RepoIdentity,
    wal: WalFileName,
    cpu: &DecodeTurns<DecodeBuffers>,
    gate: &CallerGate,
) -> Result<(), FetchError> {
    let name = ArchiveFileName::Segment(wal);
    let key = layout::wal_key(&name);
    let _mark = spool.fetching(&wal);
    let place = cpu.line_up(wal);
    let limit = limits::wal_content_limit(&name);
    let Some(stored) = super::get_stored(repo, name).await? else {
        return Err(FetchError::NotFound {
            name: name.to_string(),
            location: repo.location().to_string(),
            partial_exists: false,
        });
    };
    let stored = repo.open_stored(&key, stored).await?;
    let write_error = |source| FetchError::Write {
        name: name.to_string(),
        source,
    };
    let temp = fsutil::temp_path_for(&spool.entry_path(&wal));
    let mut permit = place.decoder().await;
    gate.pass().await;
    let mut buffers = std::mem::take(&mut *permit);
    let sysid = identity.system_identifier;
    let (buffers_back, stored, streamed) = {
        let temp = temp.clone();
        run_blocking(move || {
            let streamed = segment_file::decode_to_new_file(
                &stored,
                limit,
                &mut buffers.block,
                &temp,
                wal,
                sysid,
            );
            (buffers, stored, streamed)
        })
        .await
    };
    buffers = buffers_back;
    let staged = match streamed {
        Err(e) => Err(write_error(e)),
        Ok(Some((file, summary, report))) => {
            super::check_segment_report(repo, wal, report, identity)
                .map(|()| (file, summary))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&temp);
                })
        }
        Ok(None) => decode_whole(repo, identity, name, stored, &mut buffers.content, &temp).await,
    };
    *permit = buffers;
    let (file, summary) = staged?;
    // Flushed to disk before the entry is offered, outside the CPU permit (the next segment
    // decodes meanwhile): Postgres fsyncs every segment it restores (durable_rename in
    // KeepFileRestoredFromArchive) in the startup process, and an entry still in the page
    // cache made that fsync cost 13-15 ms of replay per segment.
    drop(permit);
    drop(place);
    let spool = spool.clone();
    run_blocking(move || {
        let committed = file
            .sync_data()
            .map_err(|source| FsError {
                action: "flush prefetched segment",
                path: temp.clone(),
                source,
            })
            .and_then(|()| spool.commit(&wal, &temp, summary.raw_len, summary.crc32c));
        if committed.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        committed
    })
    .await
    .map_err(write_error)
}

/// Decodes `stored` whole into `content`, checks it and writes it to the new file `temp`:
/// for the objects [`segment_file::decode_to_new_file`] leaves (other codecs), and for the verdict on a
/// corrupt one.
async fn decode_whole(
    repo: &Repository,
    identity: &RepoIdentity,
    name: ArchiveFileName,
    stored: Bytes,
    content: &mut Vec<u8>,
    temp: &Path,
) -> Result<(File, ObjectSummary), FetchError> {
    let key = layout::wal_key(&name);
    let limit = limits::wal_content_limit(&name);
    let buffer = std::mem::take(content);
    let (buffer, summary) = run_blocking(move || {
        let mut buffer = buffer;
        let summary = codec::decode_into(&stored, &mut buffer, limit);
        (buffer, summary)
    })
    .await;
    *content = buffer;
    let summary = summary.map_err(|source| RepoError::Corrupt {
        key: key.to_string(),
        location: repo.location().to_string(),
        source,
    })?;
    check_content(repo, name, content, identity)?;
    let file = write_unsynced(temp, content).map_err(|source| FetchError::Write {
        name: name.to_string(),
        source,
    })?;
    Ok((file, summary))
}

/// Writes `content` to the new file `path` and returns it, still open, for the caller to flush.
fn write_unsynced(path: &Path, content: &[u8]) -> Result<File, FsError> {
    let fail = |source| FsError {
        action: "write prefetched segment",
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(fail)?;
    if let Err(e) = file.write_all(content) {
        let _ = std::fs::remove_file(path);
        return Err(fail(e));
    }
    Ok(file)
}
