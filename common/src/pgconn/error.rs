//! Errors of the Postgres connection helpers: [`PgConnError`] for everything a connection can
//! fail with, and [`ServerError`], the fields of a server's `ErrorResponse`.
//!
//! Every variant that involves a server names its endpoint (`host:port` or the unix socket
//! path), so a log line says which server refused what. No variant ever holds a password.

use std::fmt;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use super::conninfo::ConnInfoError;

/// The fields of a server `ErrorResponse` (or `NoticeResponse`) that a caller or operator needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (field `S`, or the untranslated `V` when present).
    pub severity: String,
    /// The SQLSTATE code, e.g. `28P01` for a wrong password (field `C`).
    pub code: String,
    /// The primary message (field `M`).
    pub message: String,
    /// Optional detail (field `D`).
    pub detail: Option<String>,
    /// Optional hint (field `H`).
    pub hint: Option<String>,
}

impl ServerError {
    /// Collects the fields of an `ErrorResponse`/`NoticeResponse` body; malformed fields are
    /// skipped rather than failing, since the message is already an error report.
    pub(crate) fn from_fields(mut fields: ErrorFields<'_>) -> ServerError {
        let mut err = ServerError::default();
        let mut localized_severity = String::new();
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => localized_severity = value,
                b'V' => err.severity = value,
                b'C' => err.code = value,
                b'M' => err.message = value,
                b'D' => err.detail = Some(value),
                b'H' => err.hint = Some(value),
                _ => {}
            }
        }
        if err.severity.is_empty() {
            err.severity = localized_severity;
        }
        err
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// Everything a Postgres connection (startup, authentication, TLS, commands) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgConnError {
    /// The connection settings are invalid (bad connection string, unknown key, bad value).
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
    /// No host could be reached (TCP connect or unix socket connect failed).
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        /// `host:port` or socket path.
        endpoint: String,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// Reading from or writing to the server failed, or it closed the connection.
    #[error("I/O with {endpoint}: {source}")]
    Io {
        /// `host:port` or socket path.
        endpoint: String,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The server did not answer within the configured time.
    #[error("timed out after {timeout:?} while {during} with {endpoint}")]
    Timeout {
        /// `host:port` or socket path.
        endpoint: String,
        /// What was under way ("connecting", "waiting for a message").
        during: &'static str,
        /// The limit that elapsed.
        timeout: Duration,
    },
    /// The server sent an `ErrorResponse`.
    #[error("server {endpoint}: {error}")]
    Server {
        /// `host:port` or socket path.
        endpoint: String,
        /// The server's fields (severity, SQLSTATE, message, detail, hint).
        error: Box<ServerError>,
    },
    /// TLS could not be set up (handshake failure, certificate verification failure, or the
    /// server refused SSL while the sslmode requires it).
    #[error("TLS with {endpoint}: {message}")]
    Tls {
        /// `host:port`.
        endpoint: String,
        /// What went wrong, e.g. "invalid peer certificate: UnknownIssuer".
        message: String,
    },
    /// Authentication could not proceed on our side (no password known, unsupported method,
    /// SCRAM verification of the server failed).
    #[error("authenticating to {endpoint} as {user}: {message}")]
    Auth {
        /// `host:port` or socket path.
        endpoint: String,
        /// The role name.
        user: String,
        /// What is missing or unsupported.
        message: String,
    },
    /// The server sent something the protocol does not allow at this point.
    #[error("protocol violation from {endpoint}: {message}")]
    Protocol {
        /// `host:port` or socket path.
        endpoint: String,
        /// What was received and what was expected.
        message: String,
    },
    /// A command returned a result of the wrong shape (columns, rows, unparsable values).
    #[error("unexpected result of `{command}` from {endpoint}: {message}")]
    UnexpectedResult {
        /// `host:port` or socket path.
        endpoint: String,
        /// The command sent.
        command: String,
        /// What was wrong.
        message: String,
    },
    /// A name (slot, setting) that cannot be sent safely in a replication command.
    #[error("invalid {what} name \"{name}\"")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A command that needs a newer server was asked of an older one.
    #[error("`{command}` needs PostgreSQL {needed}+, but {endpoint} runs {server_version_num}")]
    Unsupported {
        /// `host:port` or socket path.
        endpoint: String,
        /// The command.
        command: String,
        /// The first major version that has it.
        needed: u32,
        /// The server's `server_version_num`.
        server_version_num: u32,
    },
}

impl PgConnError {
    /// The server's error fields, when the server reported the failure.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            PgConnError::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The SQLSTATE code, when the server reported the failure.
    pub fn sqlstate(&self) -> Option<&str> {
        self.server_error().map(|e| e.code.as_str())
    }
}
