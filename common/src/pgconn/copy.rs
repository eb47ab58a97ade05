//! COPY OUT streams on a replication connection, as BASE_BACKUP produces them: result sets,
//! then one or several CopyOutResponse ... CopyData ... CopyDone runs (PG13-14 send one per
//! tablespace, plus one for the manifest; PG15+ with `TARGET 'client'` send one), then the
//! trailing result sets, then ReadyForQuery.
//!
//! [`CopyOutStream::next_event`] yields these in order as [`CopyOutEvent`]s and `None` at the
//! end, so a consumer handles both shapes with one loop.

use bytes::Bytes;
use postgres_protocol::message::backend::Message;

use super::client::ReplicationClient;
use super::error::{PgConnError, ServerError};
use super::query::{FeedError, ResultSet, ResultSetBuilder};
use super::wire::Backend;

/// One step of a COPY OUT command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutEvent {
    /// A complete result set (BASE_BACKUP: start position, tablespace list, end position).
    ResultSet(ResultSet),
    /// A CopyOutResponse: a new copy stream begins.
    CopyStart,
    /// The body of one CopyData message.
    Data(Bytes),
    /// CopyDone: the current copy stream ended.
    CopyEnd,
}

/// The output of a command that answers with COPY OUT; borrows the client until it ends.
#[derive(Debug)]
pub struct CopyOutStream<'a> {
    client: &'a mut ReplicationClient,
    command: String,
    builder: ResultSetBuilder,
    error: Option<ServerError>,
    finished: bool,
}

impl ReplicationClient {
    /// Sends `command` (e.g. a BASE_BACKUP) and returns the stream of its output.
    pub async fn copy_out(&mut self, command: &str) -> Result<CopyOutStream<'_>, PgConnError> {
        self.send_query(command).await?;
        Ok(CopyOutStream {
            client: self,
            command: command.to_string(),
            builder: ResultSetBuilder::default(),
            error: None,
            finished: false,
        })
    }
}

impl CopyOutStream<'_> {
    /// The next event, or `None` once the server is ready for the next command. A server error
    /// is returned once the server is ready again (the connection stays usable).
    ///
    /// Each wait is bounded by the client's read timeout. Cancel safe: bytes read before a
    /// cancellation stay buffered and the next call continues from them.
    pub async fn next_event(&mut self) -> Result<Option<CopyOutEvent>, PgConnError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let msg = self.client.recv().await?;
            match self.builder.feed(msg) {
                Ok(Some(set)) => return Ok(Some(CopyOutEvent::ResultSet(set))),
                Ok(None) => {}
                Err(FeedError::Malformed(m)) => return Err(self.client.protocol_error(m)),
                Err(FeedError::Other(Backend::Message(msg))) => match msg {
                    Message::CopyOutResponse(_) => return Ok(Some(CopyOutEvent::CopyStart)),
                    Message::CopyData(body) => {
                        return Ok(Some(CopyOutEvent::Data(body.into_bytes())));
                    }
                    Message::CopyDone => return Ok(Some(CopyOutEvent::CopyEnd)),
                    Message::ErrorResponse(body) => {
                        let error = ServerError::from_fields(body.fields());
                        if error.severity == "FATAL" || error.severity == "PANIC" {
                            self.finished = true;
                            return Err(self.client.server_error(error));
                        }
                        self.error = Some(error);
                    }
                    Message::ReadyForQuery(_) => {
                        self.finished = true;
                        return match self.error.take() {
                            Some(e) => Err(self.client.server_error(e)),
                            None => Ok(None),
                        };
                    }
                    other => {
                        let during = format!("output of `{}`", self.command);
                        return Err(self.client.unexpected(&Backend::Message(other), &during));
                    }
                },
                Err(FeedError::Other(other)) => {
                    let during = format!("output of `{}`", self.command);
                    return Err(self.client.unexpected(&other, &during));
                }
            }
        }
    }

    /// The client, e.g. to change its read timeout mid-stream.
    pub fn client(&mut self) -> &mut ReplicationClient {
        self.client
    }
}
