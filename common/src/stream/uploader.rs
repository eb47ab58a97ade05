//! The uploader: one task that stores what the receiver hands it, in order, and publishes how
//! far the WAL is durably in the repository (the `flush` of the status updates).
//!
//! Complete segments and history files queue in order ([`Uploader::segment`],
//! [`Uploader::history`]); the partial tail is a single slot that always holds only the newest
//! snapshot ([`Uploader::tail`]), so that while one upload runs, any number of newer tails
//! collapse into the next one: that is how `--synchronous` groups many commits into one upload.
//! Queued jobs always go before the tail, so a stored tail implies every earlier segment is
//! stored too. Storage failures are retried with backoff until the stream stops: then, once
//! the `give_up` token fires (the stop timeout after SIGTERM), an upload still failing or
//! hanging is abandoned and the uploader ends with [`StreamError::StopTimeout`]. Refusals
//! (different content already archived, another cluster) stop the uploader and the stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::archive::{self, ArchiveError};
use crate::lsn::Lsn;
use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::pg::timeline::TimelineId;
use crate::repo::{RepoError, Repository};

use super::backoff::Backoff;
use super::error::StreamError;
use super::metrics::{StreamMetrics, UploadKind};
use super::pieces::PieceStore;
use super::segment::{CompleteSegment, Tail};
use super::tail::TailOutcome;

/// Complete segments that may wait in the queue before the receiver waits for the uploader
/// (bounds memory: each is one segment).
const QUEUE_SEGMENTS: usize = 4;

enum Job {
    Segment(CompleteSegment),
    History(TimelineId, Bytes),
    /// Remove the stream's own tail of this segment once WAL up to the LSN is stored.
    ReleaseTailAfter(WalFileName, Lsn),
    Sync(oneshot::Sender<Lsn>),
}

/// The receiver's handle on the uploader task.
#[derive(Debug)]
pub struct Uploader {
    jobs: mpsc::Sender<Job>,
    tail: watch::Sender<Option<Tail>>,
    flushed: watch::Receiver<Lsn>,
    task: JoinHandle<Result<(), StreamError>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Segment(s) => write!(f, "Segment({})", s.name),
            Job::History(t, _) => write!(f, "History({})", t.0),
            Job::ReleaseTailAfter(n, l) => write!(f, "ReleaseTailAfter({n}, {l})"),
            Job::Sync(_) => write!(f, "Sync"),
        }
    }
}

impl Uploader {
    /// Starts the uploader on `repo`. `flushed` is where durable WAL starts (everything
    /// before the stream's start point is the repository's business). When `give_up`
    /// fires (`stop_timeout` after the stream was told to stop), storing stops.
    pub fn start(
        repo: Repository,
        flushed: Lsn,
        metrics: Arc<StreamMetrics>,
        give_up: CancellationToken,
        stop_timeout: Duration,
    ) -> Uploader {
        let (jobs, jobs_rx) = mpsc::channel(QUEUE_SEGMENTS);
        let (tail, tail_rx) = watch::channel(None);
        let (flushed_tx, flushed_rx) = watch::channel(flushed);
        metrics.flushed(flushed);
        let worker = Worker {
            repo,
            tails: PieceStore::default(),
            flushed: flushed_tx,
            metrics,
            releases: Vec::new(),
            give_up,
            stop_timeout,
        };
        let task = tokio::spawn(worker.run(jobs_rx, tail_rx));
        Uploader {
            jobs,
            tail,
            flushed: flushed_rx,
            task,
        }
    }

    /// Queues a complete segment (waits while the queue is full).
    pub async fn segment(&self, segment: CompleteSegment) -> Result<(), StreamError> {
        self.send(Job::Segment(segment)).await
    }

    /// Queues a timeline history file.
    pub async fn history(&self, timeline: TimelineId, content: Bytes) -> Result<(), StreamError> {
        self.send(Job::History(timeline, content)).await
    }

    /// Queues the removal of the stream's own tail of `name` once WAL up to `after` is stored
    /// (the end of a timeline: the next timeline's copy of that WAL must be safe first).
    pub async fn release_tail_after(
        &self,
        name: WalFileName,
        after: Lsn,
    ) -> Result<(), StreamError> {
        self.send(Job::ReleaseTailAfter(name, after)).await
    }

    /// Offers the newest tail; an older one not yet uploaded is dropped.
    pub fn tail(&self, tail: Tail) {
        self.tail.send_replace(Some(tail));
    }

    /// Waits until everything queued and the newest tail are stored; returns the flush LSN.
    pub async fn sync(&self) -> Result<Lsn, StreamError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Sync(tx)).await?;
        rx.await
            .map_err(|_| StreamError::UploaderGone("it stopped during a sync".into()))
    }

    /// A receiver of the flush position (WAL durably stored up to there).
    pub fn flushed(&self) -> watch::Receiver<Lsn> {
        self.flushed.clone()
    }

    /// Stores what is queued and the newest tail, then stops; returns the uploader's result.
    pub async fn finish(self) -> Result<Lsn, StreamError> {
        let flushed = self.flushed.clone();
        drop(self.jobs);
        drop(self.tail);
        match self.task.await {
            Ok(Ok(())) => Ok(*flushed.borrow()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StreamError::UploaderGone(e.to_string())),
        }
    }

    /// If the uploader task stopped with an error, that error.
    pub async fn failure(&mut self) -> Option<StreamError> {
        if !self.task.is_finished() {
            return None;
        }
        match (&mut self.task).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(StreamError::UploaderGone(e.to_string())),
        }
    }

    async fn send(&self, job: Job) -> Result<(), StreamError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StreamError::UploaderGone("it stopped; see the error above".into()))
    }
}

struct Worker {
    repo: Repository,
    tails: PieceStore,
    flushed: watch::Sender<Lsn>,
    metrics: Arc<StreamMetrics>,
    releases: Vec<(WalFileName, Lsn)>,
    give_up: CancellationToken,
    stop_timeout: Duration,
}

impl Worker {
    /// The error of an uploader that stopped trying.
    fn gave_up(&self) -> StreamError {
        StreamError::StopTimeout {
            stored: *self.flushed.borrow(),
            waited: self.stop_timeout,
        }
    }

    /// `work`, unless the stop timeout passes first (then `work` is dropped: an upload
    /// in flight is abandoned, which never leaves a partial object).
    async fn unless_given_up<T>(&self, work: impl Future<Output = T>) -> Result<T, StreamError> {
        tokio::select! {
            biased;
            _ = self.give_up.cancelled() => Err(self.gave_up()),
            done = work => Ok(done),
        }
    }

    async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut tail: watch::Receiver<Option<Tail>>,
    ) -> Result<(), StreamError> {
        let mut tail_open = true;
        loop {
            tokio::select! {
                biased;
                job = jobs.recv() => match job {
                    Some(job) => self.handle(job, &mut tail).await?,
                    None => {
                        self.store_tail(&mut tail).await?;
                        self.release_due().await?;
                        let give_up = self.give_up.clone();
                        tokio::select! {
                            biased;
                            _ = give_up.cancelled() => return Err(self.gave_up()),
                            () = self.tails.settle() => {}
                        }
                        return Ok(());
                    }
                },
                changed = tail.changed(), if tail_open => match changed {
                    Ok(()) => self.store_tail(&mut tail).await?,
                    Err(_) => tail_open = false,
                },
            }
        }
    }

    async fn handle(
        &mut self,
        job: Job,
        tail: &mut watch::Receiver<Option<Tail>>,
    ) -> Result<(), StreamError> {
        match job {
            Job::Segment(segment) => {
                let name = segment.name;
                let end = name.end_lsn();
                let content = segment.content;
                self.retrying(&format!("store segment {name}"), || {
                    archive::archive_content(
                        &self.repo,
                        ArchiveFileName::Segment(name),
                        content.clone(),
                    )
                })
                .await?;
                self.metrics.uploaded(UploadKind::Segment);
                tracing::info!("stored segment {name}");
                self.advance(end);
                self.release_one(name).await?;
            }
            Job::History(timeline, content) => {
                self.retrying(&format!("store {:08X}.history", timeline.0), || {
                    archive::archive_content(
                        &self.repo,
                        ArchiveFileName::History(timeline),
                        content.clone(),
                    )
                })
                .await?;
                self.metrics.uploaded(UploadKind::History);
                tracing::info!("stored {:08X}.history", timeline.0);
            }
            Job::ReleaseTailAfter(name, after) => self.releases.push((name, after)),
            Job::Sync(reply) => {
                self.store_tail(tail).await?;
                let _ = reply.send(*self.flushed.borrow());
            }
        }
        self.release_due().await
    }

    /// Uploads the newest tail if it holds WAL not yet stored.
    async fn store_tail(
        &mut self,
        tail: &mut watch::Receiver<Option<Tail>>,
    ) -> Result<(), StreamError> {
        let Some(newest) = tail.borrow_and_update().clone() else {
            return Ok(());
        };
        if newest.is_empty() || newest.end_lsn() <= *self.flushed.borrow() {
            return Ok(());
        }
        let mut retry = Retry::new(&self.metrics);
        let started = std::time::Instant::now();
        let outcome = loop {
            let stored = tokio::select! {
                biased;
                _ = self.give_up.cancelled() => return Err(self.gave_up()),
                stored = self.tails.store(&self.repo, &newest) => stored,
            };
            match stored {
                Ok(outcome) => break outcome,
                Err(e) => {
                    let what = format!("store the tail of {}", newest.name);
                    let wait = retry.delay_or_fail(&what, e)?;
                    self.unless_given_up(tokio::time::sleep(wait)).await?;
                }
            }
        };
        if outcome == TailOutcome::Stored {
            let took = started.elapsed();
            self.metrics.tail_upload_time(took);
            self.metrics.uploaded(UploadKind::Tail);
            tracing::debug!(
                "stored the tail of {} up to {} in {took:?}",
                newest.name,
                newest.end_lsn()
            );
            self.advance(newest.end_lsn());
        }
        Ok(())
    }

    fn advance(&mut self, lsn: Lsn) {
        self.flushed.send_if_modified(|current| {
            if lsn > *current {
                *current = lsn;
                true
            } else {
                false
            }
        });
        self.metrics.flushed(lsn);
    }

    async fn release_due(&mut self) -> Result<(), StreamError> {
        let flushed = *self.flushed.borrow();
        let due: Vec<WalFileName> = self
            .releases
            .iter()
            .filter(|(_, after)| *after <= flushed)
            .map(|(name, _)| *name)
            .collect();
        self.releases.retain(|(_, after)| *after > flushed);
        for name in due {
            self.release_one(name).await?;
        }
        Ok(())
    }

    async fn release_one(&mut self, name: WalFileName) -> Result<(), StreamError> {
        let mut retry = Retry::new(&self.metrics);
        loop {
            let released = tokio::select! {
                biased;
                _ = self.give_up.cancelled() => return Err(self.gave_up()),
                released = self.tails.release(&self.repo, name) => released,
            };
            match released {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let what = format!("remove the stream tail of {name}");
                    let wait = retry.delay_or_fail(&what, e)?;
                    self.unless_given_up(tokio::time::sleep(wait)).await?;
                }
            }
        }
    }

    async fn retrying<T, F, Fut, E>(&self, what: &str, mut op: F) -> Result<T, StreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<StreamError>,
    {
        let mut retry = Retry::new(&self.metrics);
        loop {
            match self.unless_given_up(op()).await?.map_err(Into::into) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let wait = retry.delay_or_fail(what, e)?;
                    self.unless_given_up(tokio::time::sleep(wait)).await?;
                }
            }
        }
    }
}

/// The one retry rule of the uploader's loops (a store, a tail, a release): after a failed
/// attempt, a transient error is counted, logged and waited out with [`Backoff::uploads`];
/// anything else ends the loop.
struct Retry<'a> {
    metrics: &'a StreamMetrics,
    backoff: Backoff,
}

impl<'a> Retry<'a> {
    fn new(metrics: &'a StreamMetrics) -> Retry<'a> {
        Retry {
            metrics,
            backoff: Backoff::uploads(),
        }
    }

    /// How long to wait before the next attempt at `what` when `e` is transient (counted and
    /// logged); `e` otherwise. The caller waits, so that a stop signal can cut the wait short.
    fn delay_or_fail(&mut self, what: &str, e: StreamError) -> Result<Duration, StreamError> {
        if !is_transient(&e) {
            return Err(e);
        }
        self.metrics.upload_retry();
        let wait = self.backoff.next_delay();
        tracing::error!("{what} (retrying in {wait:?}): {e}");
        Ok(wait)
    }
}

/// Storage trouble worth retrying; a refusal or another cluster is not.
fn is_transient(e: &StreamError) -> bool {
    match e {
        StreamError::Archive(ArchiveError::Repo(r)) => repo_transient(r),
        StreamError::Archive(a) => !a.is_refusal(),
        StreamError::Repo(r) => repo_transient(r),
        StreamError::Storage(s) => !s.is_permanent() || s.is_retryable(),
        _ => false,
    }
}

fn repo_transient(e: &RepoError) -> bool {
    match e {
        RepoError::Storage(s) => !s.is_not_found() && (!s.is_permanent() || s.is_retryable()),
        _ => false,
    }
}
