//! The `--metrics-addr` HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /health` (200 while streaming and uploads succeed, 503 otherwise). A few lines on a
//! tokio listener; it reads one request per connection, answers and closes.
//!
//! The endpoint may be reachable from a whole network (the image binds `0.0.0.0` for the
//! kubelet's probes and Prometheus), so nothing a client sends can make it grow: a request
//! (line and headers) is read into at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`],
//! larger ones get `431` and are closed; at most [`MAX_CONNECTIONS`] are served at once and
//! any further one is closed as soon as it is accepted; a failing `accept` (out of file
//! descriptors) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::metrics::StreamMetrics;

/// What an endpoint serves: `walship stream`'s metrics, or `walship exporter`'s repository
/// metrics.
pub trait Exposition: Send + Sync + 'static {
    /// The body of `GET /metrics`.
    fn render(&self) -> String;
    /// Its content type.
    fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }
    /// Whether `GET /health` answers 200.
    fn is_healthy(&self) -> bool;
    /// The body of an unhealthy `GET /health`.
    fn unhealthy(&self) -> &'static str;
}

impl Exposition for StreamMetrics {
    fn render(&self) -> String {
        StreamMetrics::render(self)
    }
    fn is_healthy(&self) -> bool {
        StreamMetrics::is_healthy(self)
    }
    fn unhealthy(&self) -> &'static str {
        "not streaming, or the last upload failed\n"
    }
}

/// The largest request (request line plus headers) read; a scrape or probe sends a few
/// hundred bytes.
pub const MAX_REQUEST: usize = 8 << 10;
/// Connections served at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its whole request, and to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Binds `addr` (before streaming starts, so a bad address fails at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `metrics` on `listener` until `cancel` fires.
pub async fn serve<S: Exposition>(
    listener: TcpListener,
    metrics: Arc<S>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cancel.cancelled() => return,
        };
        let socket = match accepted {
            Ok((socket, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                socket
            }
            Err(e) => {
                // EMFILE and the like leave the connection queued, so accepting again at
                // once would fail again at once: a busy loop. Wait, longer each time.
                tracing::warn!("--metrics-addr: accept failed (retrying in {backoff:?}): {e}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closing now costs nothing and keeps every resource bounded.
            drop(socket);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ =
                tokio::time::timeout(REQUEST_TIMEOUT * 2, answer(socket, metrics.as_ref())).await;
        });
    }
}

/// What a client sent, read within the bounds.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// The request line (the headers were read and ignored).
    Line(String),
    /// More than [`MAX_REQUEST`] bytes before the end of the headers.
    TooLarge,
}

/// Reads one request and answers it.
async fn answer<S: Exposition>(socket: TcpStream, metrics: &S) {
    let (mut read, mut write) = socket.into_split();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut read)).await {
        Ok(Ok(Request::Line(line))) => respond(&line, metrics),
        Ok(Ok(Request::TooLarge)) => too_large(),
        // Timed out, reset, or closed before a whole line: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let _ = write.write_all(response.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Reads up to the blank line ending the headers (or the end of the stream after at least
/// one line), never more than [`MAX_REQUEST`] bytes. Reading the headers too matters:
/// closing with unread bytes would reset the connection under a client still sending them.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(read: &mut R) -> std::io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return match buf.iter().position(|&b| b == b'\n') {
                Some(end) => Ok(Request::Line(request_line(&buf[..end]))),
                None => Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = headers_end(&buf) {
            let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(end);
            return Ok(Request::Line(request_line(&buf[..line_end])));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(Request::TooLarge);
        }
    }
}

/// Where the headers end (`\r\n\r\n` or `\n\n`), if they do.
fn headers_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

fn request_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_string()
}

fn too_large() -> String {
    let body = "request too large\n";
    format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn respond<S: Exposition>(request_line: &str, metrics: &S) -> String {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", metrics.content_type(), metrics.render()),
        ("GET", "/health" | "/healthz") if metrics.is_healthy() => {
            ("200 OK", "text/plain", "ok\n".to_string())
        }
        ("GET", "/health" | "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            metrics.unhealthy().to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", String::new()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let m = StreamMetrics::default();
        assert!(respond("GET /metrics HTTP/1.1\r\n", &m).contains("walship_stream_up 0"));
        assert!(respond("GET /health HTTP/1.1\r\n", &m).starts_with("HTTP/1.1 503"));
        m.set_connected(true);
        assert!(respond("GET /health HTTP/1.1\r\n", &m).starts_with("HTTP/1.1 200"));
        assert!(respond("GET /x HTTP/1.1\r\n", &m).starts_with("HTTP/1.1 404"));
        assert!(respond("POST /metrics HTTP/1.1\r\n", &m).starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn requests_are_read_within_bounds() {
        let read = |bytes: Vec<u8>| async move { read_request(&mut bytes.as_slice()).await };
        assert_eq!(
            read(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
                .await
                .unwrap(),
            Request::Line("GET /health HTTP/1.1".into())
        );
        assert_eq!(
            read(b"GET /metrics HTTP/1.0\n".to_vec()).await.unwrap(),
            Request::Line("GET /metrics HTTP/1.0".into())
        );
        assert_eq!(read(vec![b'G'; 1 << 20]).await.unwrap(), Request::TooLarge);
        let mut many_headers = b"GET / HTTP/1.1\r\n".to_vec();
        many_headers.extend(b"X: y\r\n".repeat(4096));
        assert_eq!(read(many_headers).await.unwrap(), Request::TooLarge);
        assert!(read(b"GET /".to_vec()).await.is_err());
    }
}
