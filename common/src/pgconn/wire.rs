//! The byte stream under a connection (TCP, unix socket or TLS over TCP) and the framing of
//! backend messages on it.
//!
//! Backend messages are parsed by postgres-protocol's `Message::parse`, except `'W'`
//! (CopyBothResponse), which that parser rejects: [`next_backend`] recognises it from the
//! header and consumes it itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use postgres_protocol::message::backend::{Header, Message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

/// A connected socket, encrypted or not.
#[derive(Debug)]
pub(crate) enum PgStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl PgStream {
    /// True when the stream is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, PgStream::Tls(_))
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            PgStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            PgStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            PgStream::Unix(s) => Pin::new(s).poll_flush(cx),
            PgStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A backend message: postgres-protocol's, or the CopyBothResponse it cannot parse.
pub(crate) enum Backend {
    /// `'W'`: the server entered COPY BOTH mode (START_REPLICATION).
    CopyBothResponse,
    /// Every other message.
    Message(Message),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Backend {
    /// A short name for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::CopyBothResponse => "CopyBothResponse",
            Backend::Message(m) => match m {
                Message::AuthenticationOk => "AuthenticationOk",
                Message::BackendKeyData(_) => "BackendKeyData",
                Message::CommandComplete(_) => "CommandComplete",
                Message::CopyData(_) => "CopyData",
                Message::CopyDone => "CopyDone",
                Message::CopyInResponse(_) => "CopyInResponse",
                Message::CopyOutResponse(_) => "CopyOutResponse",
                Message::DataRow(_) => "DataRow",
                Message::EmptyQueryResponse => "EmptyQueryResponse",
                Message::ErrorResponse(_) => "ErrorResponse",
                Message::NoticeResponse(_) => "NoticeResponse",
                Message::ParameterStatus(_) => "ParameterStatus",
                Message::ReadyForQuery(_) => "ReadyForQuery",
                Message::RowDescription(_) => "RowDescription",
                _ => "another message",
            },
        }
    }
}

/// Takes one complete message off the front of `buf`, or `None` when more bytes are needed.
pub(crate) fn next_backend(buf: &mut BytesMut) -> io::Result<Option<Backend>> {
    let Some(header) = Header::parse(buf)? else {
        return Ok(None);
    };
    if header.tag() == b'W' {
        let total = 1 + header.len() as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        // Body: Int8 overall format, Int16 column count, Int16 formats; nothing we need.
        let _ = buf.split_to(total);
        return Ok(Some(Backend::CopyBothResponse));
    }
    Ok(Message::parse(buf)?.map(Backend::Message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_both_response_is_intercepted_and_the_next_message_still_parses() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[b'W', 0, 0, 0, 7, 0, 0, 0]);
        buf.extend_from_slice(&[b'c', 0, 0, 0, 4]);
        assert!(matches!(
            next_backend(&mut buf).unwrap(),
            Some(Backend::CopyBothResponse)
        ));
        assert!(matches!(
            next_backend(&mut buf).unwrap(),
            Some(Backend::Message(Message::CopyDone))
        ));
        assert!(next_backend(&mut buf).unwrap().is_none());
    }

    #[test]
    fn partial_messages_wait_for_more_bytes() {
        let mut buf = BytesMut::from(&[b'W', 0, 0, 0, 7, 0][..]);
        assert!(next_backend(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 6);
    }
}
