//! START_REPLICATION (physical) and the COPY BOTH stream it opens: [`WalStream`] yields WAL
//! and keepalives, sends standby status updates, and at the end of a historic timeline
//! completes the CopyDone handshake and reads the `(next_tli, next_tli_startpos)` result set.
//!
//! The handshake is split so that the streaming loop can run [`WalStream::next_event`] inside
//! `tokio::select!`: `next_event` only *receives* (cancel safe) and reports the server's
//! CopyDone as [`WalEvent::ServerDone`]; [`WalStream::finish`], awaited outside any select,
//! answers it and reads the next timeline. Doing that exchange inside a cancellable future
//! once lost the next timeline whenever another select branch fired mid-way.

use std::time::Duration;

use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::ReplicationClient;
use super::error::{PgConnError, ServerError};
use super::query::{FeedError, ResultSet, ResultSetBuilder};
use super::replication::validate_slot_name;
use super::stream_messages::{ReplicationMessage, StandbyStatusUpdate};
use super::wire::Backend;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// Where the server continues after the end of a historic timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTimeline {
    /// The timeline that follows.
    pub next_tli: TimelineId,
    /// Where it forked off the streamed timeline (its switchpoint).
    pub next_tli_startpos: Lsn,
}

/// What START_REPLICATION opened.
#[derive(Debug)]
pub enum StartReplication<'a> {
    /// WAL follows.
    Streaming(WalStream<'a>),
    /// The start position was the end of a historic timeline: no WAL, just where to go next.
    TimelineEnded(Option<NextTimeline>),
}

/// One step of a WAL stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEvent {
    /// XLogData or keepalive.
    Message(ReplicationMessage),
    /// Nothing arrived within the idle limit given to [`WalStream::next_event`]; a good moment
    /// to send a status update.
    Idle,
    /// The server finished sending this timeline (its CopyDone). Nothing more will arrive:
    /// call [`WalStream::finish`] to complete the handshake and learn the next timeline.
    ServerDone,
}

/// Where a [`WalStream`] is in the COPY BOTH exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// WAL and keepalives arrive.
    Streaming,
    /// The server sent CopyDone; ours is still to be sent.
    ServerDone,
    /// The handshake is complete (or failed); the stream is spent.
    Ended,
}

/// An open COPY BOTH stream of START_REPLICATION; borrows the client until it ends.
#[derive(Debug)]
pub struct WalStream<'a> {
    client: &'a mut ReplicationClient,
    state: StreamState,
}

impl ReplicationClient {
    /// START_REPLICATION [SLOT s] PHYSICAL `start` [TIMELINE tli]. Errors the server raises
    /// before streaming (start ahead of the flush position, timeline not in history, WAL
    /// already removed) come back as [`PgConnError::Server`].
    pub async fn start_replication(
        &mut self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<TimelineId>,
    ) -> Result<StartReplication<'_>, PgConnError> {
        let mut cmd = String::from("START_REPLICATION ");
        if let Some(slot) = slot {
            validate_slot_name(slot)?;
            cmd.push_str(&format!("SLOT {slot} "));
        }
        cmd.push_str(&format!("PHYSICAL {start}"));
        if let Some(tli) = timeline {
            cmd.push_str(&format!(" TIMELINE {}", tli.0));
        }
        self.send_query(&cmd).await?;
        match self.recv().await? {
            Backend::CopyBothResponse => Ok(StartReplication::Streaming(WalStream {
                client: self,
                state: StreamState::Streaming,
            })),
            Backend::Message(Message::ErrorResponse(body)) => {
                let error = ServerError::from_fields(body.fields());
                Err(self.fail_after_error(error).await)
            }
            first => {
                let next = self.read_until_ready(Some(first), &cmd).await?;
                Ok(StartReplication::TimelineEnded(next))
            }
        }
    }

    /// Reads result sets up to ReadyForQuery (starting with `first` when given) and returns the
    /// `(next_tli, next_tli_startpos)` row if one came.
    async fn read_until_ready(
        &mut self,
        mut first: Option<Backend>,
        command: &str,
    ) -> Result<Option<NextTimeline>, PgConnError> {
        let mut builder = ResultSetBuilder::default();
        let mut next = None;
        loop {
            let msg = match first.take() {
                Some(m) => m,
                None => self.recv().await?,
            };
            match builder.feed(msg) {
                Ok(Some(set)) => next = Some(self.next_timeline(&set, command)?),
                Ok(None) => {}
                Err(FeedError::Malformed(m)) => return Err(self.protocol_error(m)),
                Err(FeedError::Other(Backend::Message(Message::ReadyForQuery(_)))) => {
                    return Ok(next);
                }
                Err(FeedError::Other(Backend::Message(Message::ErrorResponse(body)))) => {
                    let error = ServerError::from_fields(body.fields());
                    return Err(self.fail_after_error(error).await);
                }
                // Data the server sent before it saw our CopyDone.
                Err(FeedError::Other(Backend::Message(
                    Message::CopyData(_) | Message::CopyDone,
                ))) => {}
                Err(FeedError::Other(other)) => return Err(self.unexpected(&other, command)),
            }
        }
    }

    fn next_timeline(&self, set: &ResultSet, command: &str) -> Result<NextTimeline, PgConnError> {
        let tli = set.text(0, 0).and_then(|t| t.parse::<u32>().ok());
        let pos = set.text(0, 1).and_then(|t| t.parse::<Lsn>().ok());
        match (tli, pos) {
            (Some(tli), Some(pos)) if set.rows.len() == 1 => Ok(NextTimeline {
                next_tli: TimelineId(tli),
                next_tli_startpos: pos,
            }),
            _ => {
                Err(self
                    .unexpected_result(command, "expected one row (next_tli, next_tli_startpos)"))
            }
        }
    }
}

impl WalStream<'_> {
    /// The next message, [`WalEvent::Idle`] when `idle` passes without one, or
    /// [`WalEvent::ServerDone`] when the server finished the timeline (then, and on every later
    /// call, until [`WalStream::finish`]).
    ///
    /// Cancel safe: it only receives, and a cancelled call loses no data.
    pub async fn next_event(&mut self, idle: Duration) -> Result<WalEvent, PgConnError> {
        match self.state {
            StreamState::Streaming => {}
            StreamState::ServerDone => return Ok(WalEvent::ServerDone),
            StreamState::Ended => {
                return Err(self
                    .client
                    .protocol_error("START_REPLICATION stream read after it ended"));
            }
        }
        let Some(msg) = self.client.recv_within(idle).await? else {
            return Ok(WalEvent::Idle);
        };
        match msg {
            Backend::Message(Message::CopyData(body)) => {
                ReplicationMessage::parse(body.into_bytes())
                    .map(WalEvent::Message)
                    .map_err(|e| self.client.protocol_error(e.to_string()))
            }
            Backend::Message(Message::CopyDone) => {
                self.state = StreamState::ServerDone;
                Ok(WalEvent::ServerDone)
            }
            Backend::Message(Message::ErrorResponse(body)) => {
                self.state = StreamState::Ended;
                let error = ServerError::from_fields(body.fields());
                Err(self.client.fail_after_error(error).await)
            }
            other => Err(self
                .client
                .unexpected(&other, "START_REPLICATION streaming")),
        }
    }

    /// Sends a standby status update (`'r'`).
    pub async fn send_status(&mut self, status: &StandbyStatusUpdate) -> Result<(), PgConnError> {
        let body = status.encode();
        let data = frontend::CopyData::new(body).map_err(|e| self.client.io_error(e))?;
        data.write(&mut self.client.wbuf);
        self.client.flush().await
    }

    /// Completes the COPY BOTH handshake: sends our CopyDone, then reads (and drops) what the
    /// server still sends up to ReadyForQuery. Returns the next timeline when the server
    /// reported one: after [`WalEvent::ServerDone`] at the end of a historic timeline, or when
    /// the timeline became historic while we were ending the stream ourselves.
    ///
    /// Not cancel safe: await it outside `select!` (it takes the stream, so it runs once).
    pub async fn finish(mut self) -> Result<Option<NextTimeline>, PgConnError> {
        if self.state == StreamState::Ended {
            return Ok(None);
        }
        self.state = StreamState::Ended;
        frontend::copy_done(&mut self.client.wbuf);
        self.client.flush().await?;
        self.client
            .read_until_ready(None, "START_REPLICATION")
            .await
    }

    /// The client underneath (endpoint, pid, timeouts).
    pub fn client(&self) -> &ReplicationClient {
        self.client
    }
}
