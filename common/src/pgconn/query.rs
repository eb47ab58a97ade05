//! Simple-query results: [`ResultSet`] (column names plus rows of raw text values), how they are
//! assembled from RowDescription/DataRow/CommandComplete, and
//! [`ReplicationClient::simple_query`].
//!
//! Values stay raw bytes (`Bytes`): a walsender sends some columns declared `bytea` as raw file
//! contents (TIMELINE_HISTORY), which must not be decoded.

use bytes::Bytes;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::ReplicationClient;
use super::error::{PgConnError, ServerError};
use super::wire::Backend;

/// One result set of a simple query: columns, rows of text-format values, command tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    /// Column names in order.
    pub columns: Vec<String>,
    /// Rows; `None` is SQL NULL; values are the text format's raw bytes.
    pub rows: Vec<Vec<Option<Bytes>>>,
    /// The CommandComplete tag (e.g. `SELECT`, `IDENTIFY_SYSTEM`).
    pub tag: String,
}

impl ResultSet {
    /// The value at (row, column) as UTF-8 text; `None` for NULL, absent or non-UTF-8.
    pub fn text(&self, row: usize, column: usize) -> Option<&str> {
        let value = self.rows.get(row)?.get(column)?.as_ref()?;
        std::str::from_utf8(value).ok()
    }

    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Accumulates one result set from messages; shared by simple queries and COPY streams.
#[derive(Debug, Default)]
pub(crate) struct ResultSetBuilder {
    current: Option<ResultSet>,
}

impl ResultSetBuilder {
    /// Feeds a RowDescription, DataRow or CommandComplete. Returns `Ok(Some(set))` when a
    /// CommandComplete closes a set that had a RowDescription; `Ok(None)` otherwise.
    /// `Err(msg)` hands back any other message.
    pub(crate) fn feed(&mut self, msg: Backend) -> Result<Option<ResultSet>, FeedError> {
        match msg {
            Backend::Message(Message::RowDescription(body)) => {
                let columns = body
                    .fields()
                    .map(|f| Ok(f.name().to_string()))
                    .collect()
                    .map_err(|e| FeedError::Malformed(e.to_string()))?;
                self.current = Some(ResultSet {
                    columns,
                    ..ResultSet::default()
                });
                Ok(None)
            }
            Backend::Message(Message::DataRow(body)) => {
                let set = self
                    .current
                    .as_mut()
                    .ok_or_else(|| FeedError::Malformed("DataRow without RowDescription".into()))?;
                let buffer = body.buffer_bytes().clone();
                let row = body
                    .ranges()
                    .map(|r| Ok(r.map(|r| buffer.slice(r))))
                    .collect()
                    .map_err(|e| FeedError::Malformed(e.to_string()))?;
                set.rows.push(row);
                Ok(None)
            }
            Backend::Message(Message::CommandComplete(body)) => {
                let tag = body.tag().unwrap_or_default().to_string();
                Ok(self.current.take().map(|mut set| {
                    set.tag = tag;
                    set
                }))
            }
            other => Err(FeedError::Other(other)),
        }
    }
}

/// What [`ResultSetBuilder::feed`] could not take.
#[derive(Debug)]
pub(crate) enum FeedError {
    /// A row message that does not parse.
    Malformed(String),
    /// A message that is not part of a result set.
    Other(Backend),
}

impl ReplicationClient {
    /// Runs `sql` with the simple-query protocol and returns every result set that had rows
    /// (statements without a RowDescription produce none). A server error is returned after
    /// the server is ready again, so the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<ResultSet>, PgConnError> {
        self.send_query(sql).await?;
        let mut builder = ResultSetBuilder::default();
        let mut sets = Vec::new();
        let mut error: Option<ServerError> = None;
        loop {
            let msg = self.recv().await?;
            match builder.feed(msg) {
                Ok(Some(set)) => sets.push(set),
                Ok(None) => {}
                Err(FeedError::Malformed(m)) => return Err(self.protocol_error(m)),
                Err(FeedError::Other(Backend::Message(Message::ErrorResponse(body)))) => {
                    error = Some(ServerError::from_fields(body.fields()));
                    if error.as_ref().is_some_and(|e| e.severity == "FATAL") {
                        break;
                    }
                }
                Err(FeedError::Other(Backend::Message(Message::EmptyQueryResponse))) => {}
                Err(FeedError::Other(Backend::Message(Message::ReadyForQuery(_)))) => break,
                Err(FeedError::Other(other)) => {
                    return Err(self.unexpected(&other, &format!("simple query `{sql}`")));
                }
            }
        }
        match error {
            Some(e) => Err(self.server_error(e)),
            None => Ok(sets),
        }
    }

    /// Sends a Query message.
    pub(crate) async fn send_query(&mut self, sql: &str) -> Result<(), PgConnError> {
        frontend::query(sql, &mut self.wbuf).map_err(|e| self.io_error(e))?;
        self.flush().await
    }

    /// Runs a command expected to return exactly one result set; errors name the command.
    pub(crate) async fn query_one_set(&mut self, sql: &str) -> Result<ResultSet, PgConnError> {
        let mut sets = self.simple_query(sql).await?;
        if sets.len() != 1 {
            return Err(
                self.unexpected_result(sql, format!("{} result sets, expected 1", sets.len()))
            );
        }
        Ok(sets.remove(0))
    }

    pub(crate) fn unexpected_result(
        &self,
        command: &str,
        message: impl Into<String>,
    ) -> PgConnError {
        PgConnError::UnexpectedResult {
            endpoint: self.endpoint.clone(),
            command: command.to_string(),
            message: message.into(),
        }
    }
}
