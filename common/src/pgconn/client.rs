//! [`ReplicationClient`]: one open walsender connection, and the low-level send/receive both
//! the commands and the COPY streams use.
//!
//! Every wait for the server is bounded: by the connection's read timeout, or by the idle limit
//! a streaming caller passes. Receiving is cancel safe: bytes read before a timeout or a
//! cancelled future stay in the buffer for the next call.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{PgConnError, ServerError};
use super::wire::{Backend, PgStream, next_backend};

/// Bytes of free buffer space offered to each socket read.
const READ_CHUNK: usize = 256 * 1024;

/// An open physical replication connection (`replication=true`) to one server.
///
/// Only simple queries and replication commands work on it (a walsender refuses the extended
/// protocol). Commands are methods: [`ReplicationClient::simple_query`], `identify_system`,
/// `show`, `timeline_history`, slots, [`ReplicationClient::copy_out`] (BASE_BACKUP) and
/// `start_replication`.
///
/// `Debug` shows the endpoint and session facts only, never the buffers (the write buffer
/// briefly holds the password message during authentication).
pub struct ReplicationClient {
    pub(crate) stream: PgStream,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) endpoint: String,
    pub(crate) server_params: HashMap<String, String>,
    pub(crate) read_timeout: Duration,
    pub(crate) backend_pid: Option<i32>,
    pub(crate) channel_binding: bool,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.stream.is_tls())
            .field("backend_pid", &self.backend_pid)
            .field("server_version", &self.parameter("server_version"))
            .finish_non_exhaustive()
    }
}

impl ReplicationClient {
    pub(crate) fn new(
        stream: PgStream,
        endpoint: String,
        read_timeout: Duration,
    ) -> ReplicationClient {
        ReplicationClient {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(1024),
            endpoint,
            server_params: HashMap::new(),
            read_timeout,
            backend_pid: None,
            channel_binding: false,
        }
    }

    /// `host:port` or the socket path this client is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// True when the connection is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// True when SCRAM authentication bound itself to the TLS channel
    /// (SCRAM-SHA-256-PLUS with `tls-server-end-point`).
    pub fn uses_channel_binding(&self) -> bool {
        self.channel_binding
    }

    /// The server process id (from BackendKeyData), e.g. to find this walsender in
    /// `pg_stat_replication` or `pg_stat_ssl`.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// A run-time parameter the server reported (ParameterStatus), e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.server_params.get(name).map(String::as_str)
    }

    /// The server's version as `server_version_num` (e.g. 150004), from the `server_version`
    /// it reported at startup; 0 when it reported none.
    pub fn server_version_num(&self) -> u32 {
        self.parameter("server_version")
            .map(version_num_from_string)
            .unwrap_or(0)
    }

    /// The server's major version (13, 14, ...).
    pub fn server_major(&self) -> u32 {
        self.server_version_num() / 10000
    }

    /// How long each wait for a server message may take outside streaming.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Changes the read timeout (e.g. longer for a BASE_BACKUP with a spread checkpoint).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    /// Ends the session politely (Terminate) and closes the socket.
    pub async fn close(mut self) -> Result<(), PgConnError> {
        frontend::terminate(&mut self.wbuf);
        self.flush().await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Writes everything queued in the write buffer. The buffer is emptied whatever happens
    /// (after a failed write the connection is unusable anyway, and it may hold a password).
    pub(crate) async fn flush(&mut self) -> Result<(), PgConnError> {
        let timeout = self.read_timeout;
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        let outcome = tokio::time::timeout(timeout, write).await;
        self.wbuf.clear();
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(self.io_error(source)),
            Err(_) => Err(self.timeout_error("sending", timeout)),
        }
    }

    /// The next message, waiting at most the read timeout.
    pub(crate) async fn recv(&mut self) -> Result<Backend, PgConnError> {
        let timeout = self.read_timeout;
        match self.recv_within(timeout).await? {
            Some(msg) => Ok(msg),
            None => Err(self.timeout_error("waiting for a message", timeout)),
        }
    }

    /// The next message, or `None` when `limit` passes without one. ParameterStatus and
    /// NoticeResponse are absorbed here (recorded, logged). Cancel safe.
    pub(crate) async fn recv_within(
        &mut self,
        limit: Duration,
    ) -> Result<Option<Backend>, PgConnError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match next_backend(&mut self.rbuf) {
                Ok(Some(Backend::Message(Message::ParameterStatus(body)))) => {
                    if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                        self.server_params
                            .insert(name.to_string(), value.to_string());
                    }
                    continue;
                }
                Ok(Some(Backend::Message(Message::NoticeResponse(body)))) => {
                    let notice = ServerError::from_fields(body.fields());
                    tracing::info!(endpoint = %self.endpoint, "server notice: {notice}");
                    continue;
                }
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => {}
                Err(source) => return Err(self.io_error(source)),
            }
            // Large reads: a base backup or WAL stream arrives at hundreds of MB/s, and a
            // nearly full buffer would turn it into many small reads.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let read = self.stream.read_buf(&mut self.rbuf);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) => {
                    return Err(self.io_error(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    )));
                }
                Ok(Ok(_)) => {}
                Ok(Err(source)) => return Err(self.io_error(source)),
                Err(_) => return Ok(None),
            }
        }
    }

    /// After an ErrorResponse: reads up to ReadyForQuery (or until the server hangs up, as it
    /// does after FATAL) and returns the server's error.
    pub(crate) async fn fail_after_error(&mut self, error: ServerError) -> PgConnError {
        if error.severity != "FATAL" && error.severity != "PANIC" {
            while let Ok(msg) = self.recv().await {
                if matches!(msg, Backend::Message(Message::ReadyForQuery(_))) {
                    break;
                }
            }
        }
        self.server_error(error)
    }

    pub(crate) fn server_error(&self, error: ServerError) -> PgConnError {
        PgConnError::Server {
            endpoint: self.endpoint.clone(),
            error: Box::new(error),
        }
    }

    pub(crate) fn io_error(&self, source: std::io::Error) -> PgConnError {
        PgConnError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    pub(crate) fn timeout_error(&self, during: &'static str, timeout: Duration) -> PgConnError {
        PgConnError::Timeout {
            endpoint: self.endpoint.clone(),
            during,
            timeout,
        }
    }

    pub(crate) fn protocol_error(&self, message: impl Into<String>) -> PgConnError {
        PgConnError::Protocol {
            endpoint: self.endpoint.clone(),
            message: message.into(),
        }
    }

    /// A protocol error for a message that has no place at this point.
    pub(crate) fn unexpected(&self, msg: &Backend, during: &str) -> PgConnError {
        self.protocol_error(format!("unexpected {} during {during}", msg.name()))
    }
}

/// `server_version` ("15.4 (Debian 15.4-1.pgdg120+1)", "18.0", "17beta1") as
/// `server_version_num`: major * 10000 + minor.
pub(crate) fn version_num_from_string(version: &str) -> u32 {
    let digits = |s: &str| -> u32 {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    };
    let major = digits(version);
    let minor = version
        .split_once('.')
        .map(|(_, rest)| digits(rest))
        .unwrap_or(0);
    major * 10000 + minor
}

#[cfg(test)]
mod tests {
    use super::version_num_from_string;

    #[test]
    fn server_version_strings() {
        assert_eq!(
            version_num_from_string("15.4 (Debian 15.4-1.pgdg120+1)"),
            150004
        );
        assert_eq!(version_num_from_string("18.0"), 180000);
        assert_eq!(version_num_from_string("17beta1"), 170000);
        assert_eq!(version_num_from_string("13.22"), 130022);
    }
}
