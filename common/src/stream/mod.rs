//! `walship stream`: WAL over the replication protocol into the repository, as a sidecar.
//!
//! Data flow: [`session`] holds one replication connection (via [`crate::pgconn`]) and feeds
//! the WAL into a [`segment::SegmentAssembler`]; each complete segment goes to the
//! [`uploader::Uploader`], which stores it exactly as `walship archive` would
//! ([`crate::archive::archive_content`]: same key, same checks, create-only, identical content
//! is success); the growing tail of the current segment is offered to the uploader every
//! `partial_interval` (or after every message with `synchronous`) and stored by [`pieces`] as
//! append-only pieces `<segment>.partial.<offset>`, consolidated in the background into the
//! base `<segment>.partial` under the rule of [`tail`]. The uploader publishes how far WAL is
//! durably stored, and [`status`] reports exactly that as `flush` to the server. [`start`]
//! picks where to begin (slot, repository, server position); a broken connection is retried
//! with [`backoff`] from the segment the stream was in; a timeline's end stores the next
//! `.history` first and follows. [`metrics`] counts for `--metrics-addr`.
//!
//! **Invariants:** `flush` never exceeds what the repository durably holds; streaming starts
//! at segment boundaries, so every complete segment is stored whole; the stream never
//! overwrites an object it did not write.

pub mod backoff;
pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod pieces;
#[cfg(test)]
mod pieces_tests;
pub mod segment;
pub mod session;
pub mod start;
pub mod status;
pub mod tail;
pub mod tail_codec;
pub mod uploader;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lsn::Lsn;
use crate::pgconn::ConnParams;
use crate::repo::Repository;

pub use error::StreamError;
pub use metrics::StreamMetrics;

/// How `walship stream` runs.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The replication connection (its `application_name` is what
    /// `synchronous_standby_names` lists).
    pub conn: ConnParams,
    /// The physical replication slot (created if missing).
    pub slot: String,
    /// How often the partial tail is uploaded when WAL has arrived.
    pub partial_interval: Duration,
    /// Upload the tail after every message instead of every `partial_interval`, so that a
    /// synchronous commit waits only for one upload (uploads in flight group commits).
    pub synchronous: bool,
    /// The longest time between two status replies.
    pub status_interval: Duration,
    /// Reconnect when the server sends nothing (not even a keepalive) for this long; at half
    /// of it, a reply asking the server for a keepalive goes out, so an idle server answers.
    pub silence_timeout: Duration,
    /// Once cancelled, how long the uploader keeps trying to store what was received
    /// before it gives up ([`StreamError::StopTimeout`]).
    pub stop_timeout: Duration,
}

impl StreamOptions {
    /// Options with the defaults for everything but the connection and slot.
    pub fn new(conn: ConnParams, slot: impl Into<String>) -> StreamOptions {
        StreamOptions {
            conn,
            slot: slot.into(),
            partial_interval: Duration::from_secs(1),
            synchronous: false,
            status_interval: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(20),
        }
    }
}

/// Streams until `cancel` fires (then stores and reports everything received and returns the
/// flush position) or a non-retryable error stops it. Lost connections are retried with
/// backoff and resume at the segment the stream was in, so nothing is skipped.
///
/// Stopping is bounded: `opts.stop_timeout` after `cancel` fires (or after an error ends the
/// stream), an uploader still failing to store gives up, and this returns
/// [`StreamError::StopTimeout`]; the flush reported to the server never passed what is
/// stored, so nothing acknowledged is lost.
pub async fn run(
    repo: &Repository,
    opts: &StreamOptions,
    metrics: &Arc<StreamMetrics>,
    cancel: &CancellationToken,
) -> Result<Lsn, StreamError> {
    let give_up = CancellationToken::new();
    let deadline = tokio::spawn({
        let (cancel, give_up, limit) = (cancel.clone(), give_up.clone(), opts.stop_timeout);
        async move {
            cancel.cancelled().await;
            tokio::time::sleep(limit).await;
            give_up.cancel();
        }
    });
    let mut shared = session::Shared {
        repo,
        opts,
        metrics,
        cancel,
        give_up: &give_up,
        resume: None,
        uploader: None,
        received_any: false,
    };
    let mut backoff = backoff::Backoff::reconnect();
    let outcome = loop {
        shared.received_any = false;
        let result = tokio::select! {
            result = session::run(&mut shared) => result,
            // Cancelled while connecting: nothing more to receive. While streaming, the
            // session itself stores and reports what it received, then returns.
            _ = async {
                cancel.cancelled().await;
                while metrics.is_connected() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => Ok(session::SessionEnd::Cancelled),
        };
        metrics.set_connected(false);
        match result {
            Ok(session::SessionEnd::Cancelled) => break Ok(()),
            // Stopping: an error now (the uploader gave up) ends the stream.
            Err(e) if cancel.is_cancelled() => break Err(e),
            Err(e) if e.is_retryable() => {
                metrics.reconnect();
                if shared.received_any {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::warn!("replication connection lost (reconnecting in {wait:?}): {e}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => break Ok(()),
                }
            }
            Err(e) => break Err(e),
        }
    };
    // From here on the stop timeout runs, whatever ended the loop: storing the rest is
    // bounded even when an error (not a signal) stopped the stream.
    cancel.cancel();
    let flushed = match shared.uploader.take() {
        Some(uploader) => uploader.finish().await,
        None => Ok(metrics.flushed_lsn()),
    };
    deadline.abort();
    match (outcome, flushed) {
        // The uploader's own failure explains a session's "uploader stopped".
        (Err(StreamError::UploaderGone(_)), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), result) => result,
    }
}
