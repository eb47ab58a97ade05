//! The `--metrics-addr` HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /health` (200 while streaming and uploads succeed, 503 otherwise). A few lines on a
//! tokio listener; it reads one request line per connection and closes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::StreamMetrics;

/// Binds `addr` (before streaming starts, so a bad address fails at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `metrics` on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<StreamMetrics>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cancel.cancelled() => return,
        };
        let Ok((socket, _)) = accepted else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                reader.read_line(&mut line),
            )
            .await;
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            // Read the headers too (up to the blank line, bounded): closing with unread bytes
            // would reset the connection under a client still sending them.
            let mut header = String::new();
            for _ in 0..100 {
                header.clear();
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    reader.read_line(&mut header),
                )
                .await;
                if !matches!(read, Ok(Ok(n)) if n > 0) || header.trim().is_empty() {
                    break;
                }
            }
            let response = respond(&line, &metrics);
            let _ = write.write_all(response.as_bytes()).await;
            let _ = write.shutdown().await;
        });
    }
}

fn respond(request_line: &str, metrics: &StreamMetrics) -> String {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/health" | "/healthz") if metrics.is_healthy() => {
            ("200 OK", "text/plain", "ok\n".to_string())
        }
        ("GET", "/health" | "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "not streaming, or the last upload failed\n".to_string(),
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
}
