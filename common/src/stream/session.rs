//! One replication connection: connect, check the repository, make sure the slot exists,
//! START_REPLICATION where [`super::start`] says, and receive timeline after timeline until
//! the connection breaks or the stream is cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::lsn::Lsn;
use crate::pg::segment::WalSegSize;
use crate::pgconn::{
    NextTimeline, ReplicationClient, ReplicationMessage, StartReplication, WalEvent, WalStream,
};
use crate::repo::{RepoIdentity, Repository};

use super::StreamOptions;
use super::error::StreamError;
use super::metrics::StreamMetrics;
use super::segment::SegmentAssembler;
use super::start::{self, StartPoint, StartReason};
use super::status::StatusPolicy;
use super::uploader::Uploader;

/// SQLSTATE `undefined_file`: "requested WAL segment ... has already been removed".
const UNDEFINED_FILE: &str = "58P01";

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Cancelled (SIGTERM): everything received is stored and reported.
    Cancelled,
}

/// What the session shares with the next one.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The repository.
    pub repo: &'a Repository,
    /// The options.
    pub opts: &'a StreamOptions,
    /// The metrics.
    pub metrics: &'a Arc<StreamMetrics>,
    /// Cancels the stream (SIGTERM).
    pub cancel: &'a CancellationToken,
    /// Fires `stop_timeout` after `cancel`: the uploader stops retrying.
    pub give_up: &'a CancellationToken,
    /// Where to resume after a broken connection (a segment boundary).
    pub resume: Option<StartPoint>,
    /// The uploader, started by the first session.
    pub uploader: Option<Uploader>,
    /// Whether any WAL arrived in this session (resets the reconnect backoff).
    pub received_any: bool,
}

/// Runs one connection until it breaks (error) or is cancelled.
pub async fn run(shared: &mut Shared<'_>) -> Result<SessionEnd, StreamError> {
    let opts = shared.opts;
    let mut client = ReplicationClient::connect(&opts.conn).await?;
    let system = client.identify_system().await?;
    let size_bytes = client.wal_segment_size().await?;
    let seg_size = WalSegSize::new(size_bytes).map_err(|e| {
        StreamError::Refused(format!(
            "{} reports wal_segment_size {size_bytes}: {e}",
            client.endpoint()
        ))
    })?;
    let found = RepoIdentity::new(system.systemid, client.server_major(), seg_size.bytes());
    shared.repo.ensure_identity(&found).await?;
    if start::ensure_slot(&mut client, &opts.slot).await? {
        tracing::info!("created physical replication slot {}", opts.slot);
    }
    let mut point = match shared.resume {
        Some(point) => point,
        None => start::decide(&mut client, shared.repo, &opts.slot, &system, seg_size).await?,
    };
    tracing::info!(
        "streaming from {} on timeline {} at {} ({:?})",
        client.endpoint(),
        point.timeline.0,
        point.lsn,
        point.reason
    );
    if shared.uploader.is_none() {
        shared.uploader = Some(Uploader::start(
            shared.repo.clone(),
            point.lsn,
            shared.metrics.clone(),
            shared.give_up.clone(),
            opts.stop_timeout,
        ));
    }
    loop {
        shared.resume = Some(point);
        let mut asm = SegmentAssembler::new(point.timeline, point.lsn, seg_size)?;
        let endpoint = client.endpoint().to_string();
        let started = client
            .start_replication(Some(&opts.slot), point.lsn, Some(point.timeline))
            .await;
        let next = match started {
            Err(e) if e.sqlstate() == Some(UNDEFINED_FILE) => {
                return Err(StreamError::WalRemoved {
                    endpoint,
                    start: point.lsn,
                    timeline: point.timeline.0,
                    source: e,
                });
            }
            Err(e) => return Err(e.into()),
            Ok(StartReplication::TimelineEnded(next)) => next,
            Ok(StartReplication::Streaming(wal)) => {
                match receive(shared, wal, &mut asm, &endpoint).await? {
                    Received::Cancelled => return Ok(SessionEnd::Cancelled),
                    Received::Ended(next) => next,
                }
            }
        };
        let Some(next) = next else {
            return Err(StreamError::Refused(format!(
                "{endpoint} ended timeline {} without naming the next one",
                point.timeline.0
            )));
        };
        point = follow(shared, &mut client, &asm, next, seg_size).await?;
    }
}

/// After the end of a timeline: store the next timeline's history first, arrange for the old
/// tail to be removed once the new timeline holds that WAL, and start again at the segment
/// holding the switch point (the new timeline's copy of that segment).
async fn follow(
    shared: &mut Shared<'_>,
    client: &mut ReplicationClient,
    asm: &SegmentAssembler,
    next: NextTimeline,
    seg_size: WalSegSize,
) -> Result<StartPoint, StreamError> {
    let history = client.timeline_history(next.next_tli).await?;
    let uploader = uploader_of(shared)?;
    uploader.history(next.next_tli, history.content).await?;
    if !asm.tail().is_empty() {
        uploader
            .release_tail_after(asm.current(), Lsn(next.next_tli_startpos.0 + 1))
            .await?;
    }
    tracing::info!(
        "timeline {} ends at {}; following timeline {}",
        asm.current().timeline().0,
        next.next_tli_startpos,
        next.next_tli.0
    );
    let point = StartPoint {
        timeline: next.next_tli,
        lsn: start::segment_start(next.next_tli_startpos, seg_size),
        reason: StartReason::Resume,
    };
    shared.resume = Some(point);
    Ok(point)
}

enum Received {
    Cancelled,
    Ended(Option<NextTimeline>),
}

fn uploader_of<'u>(shared: &'u Shared<'_>) -> Result<&'u Uploader, StreamError> {
    shared
        .uploader
        .as_ref()
        .ok_or_else(|| StreamError::UploaderGone("not started".into()))
}

/// Receives one timeline's WAL.
async fn receive(
    shared: &mut Shared<'_>,
    mut wal: WalStream<'_>,
    asm: &mut SegmentAssembler,
    endpoint: &str,
) -> Result<Received, StreamError> {
    let opts = shared.opts;
    let metrics = shared.metrics.clone();
    let cancel = shared.cancel.clone();
    let mut flushed = uploader_of(shared)?.flushed();
    let mut status = StatusPolicy::new(opts.status_interval);
    let mut tick = tokio::time::interval(opts.partial_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message = Instant::now();
    let mut pinged = false;
    let mut requested = false;
    metrics.set_connected(true);
    loop {
        let now = Instant::now();
        let flush_lsn = *flushed.borrow_and_update();
        if let Some(reply) = status.due(now, asm.position(), flush_lsn, requested) {
            wal.send_status(&reply).await?;
            status.sent(now, &reply);
            requested = false;
        }
        let silent = last_message.elapsed();
        if silent > opts.silence_timeout {
            return Err(StreamError::Silent {
                endpoint: endpoint.to_string(),
                seconds: silent.as_secs(),
            });
        }
        // Our regular replies keep the walsender from sending keepalives of its own, so an
        // idle server is silent: ask it for one, once per silence.
        if !pinged && silent > opts.silence_timeout / 2 {
            let ping = StatusPolicy::ping(asm.position(), flush_lsn);
            wal.send_status(&ping).await?;
            status.sent(now, &ping);
            pinged = true;
            tracing::debug!("silent for {silent:?}: asked the server for a keepalive");
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                let uploader = uploader_of(shared)?;
                uploader.tail(asm.tail());
                let stored = uploader.sync().await?;
                let reply = StatusPolicy::update(asm.position(), stored);
                wal.send_status(&reply).await?;
                tracing::info!("stopping: WAL up to {stored} is in the repository and reported");
                if let Err(e) = wal.finish().await {
                    tracing::debug!("ending the stream: {e}");
                }
                return Ok(Received::Cancelled);
            }
            event = wal.next_event(Duration::from_secs(1)) => match event? {
                WalEvent::Message(ReplicationMessage::XLogData(x)) => {
                    last_message = Instant::now();
                    pinged = false;
                    metrics.primary(x.wal_end);
                    let done = asm.push(x.data_start, x.data).map_err(|d| StreamError::Discontinuity {
                        endpoint: endpoint.to_string(),
                        expected: d.expected,
                        got: d.got,
                    })?;
                    metrics.received(asm.position());
                    shared.received_any = true;
                    if let Some(resume) = shared.resume.as_mut() {
                        resume.lsn = asm.current().start_lsn();
                        resume.timeline = asm.current().timeline();
                        resume.reason = StartReason::Resume;
                    }
                    let uploader = uploader_of(shared)?;
                    for segment in done {
                        uploader.segment(segment).await?;
                    }
                    if opts.synchronous {
                        uploader.tail(asm.tail());
                    }
                }
                WalEvent::Message(ReplicationMessage::Keepalive(k)) => {
                    last_message = Instant::now();
                    pinged = false;
                    metrics.primary(k.wal_end);
                    requested |= k.reply_requested;
                }
                // Silence is judged at the top of the loop: other branches (the tail tick)
                // often win the race against the idle timeout.
                WalEvent::Idle => {}
                WalEvent::ServerDone => {
                    uploader_of(shared)?.tail(asm.tail());
                    // Outside the select's futures (they are dropped before an arm runs), so
                    // the handshake and the next timeline cannot be lost to another branch.
                    let next = wal.finish().await?;
                    return Ok(Received::Ended(next));
                }
            },
            changed = flushed.changed() => {
                if changed.is_err() {
                    let failure = match shared.uploader.as_mut() {
                        Some(uploader) => uploader.failure().await,
                        None => None,
                    };
                    return Err(failure.unwrap_or_else(|| StreamError::UploaderGone("it stopped".into())));
                }
            }
            _ = tick.tick(), if !opts.synchronous => {
                uploader_of(shared)?.tail(asm.tail());
            }
        }
    }
}
