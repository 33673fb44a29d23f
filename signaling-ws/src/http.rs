//! The plain HTTP requests served on the WebSocket's port: `GET /healthz` (200 when the room
//! store is reachable, 503 otherwise), `GET /metrics` (Prometheus text format), and `GET /`
//! without a WebSocket upgrade, the room dashboard (one self-contained page,
//! `?room=NAME&token=TOKEN`).

use crate::metrics::Metrics;
use crate::store::RoomStore;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits (bounded) for the request head on `tcp`: the plain HTTP path it asks for, if it is
/// one this server answers itself; `None` for a WebSocket upgrade.
pub(crate) async fn plain_request(tcp: &TcpStream, within: Duration) -> Option<&'static str> {
    let mut head = vec![0u8; 8192];
    let peek = async {
        for _ in 0..100 {
            let n = tcp.peek(&mut head).await.ok()?;
            let whole = head[..n].windows(4).any(|w| w == b"\r\n\r\n");
            if n == 0 || n == head.len() || whole || !head[..n.min(4)].starts_with(&b"GET "[..n.min(4)]) {
                return http_path(&head[..n]);
            }
            tokio::time::sleep(Duration::from_millis(2)).await; // the rest of the head is coming
        }
        None
    };
    tokio::time::timeout(within, peek).await.ok().flatten()
}

/// The dashboard page, embedded in the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The path of a plain HTTP request this server answers itself, if `head` (the request head, or
/// as much of it as has come) is one: the operator endpoints, or `/` without a WebSocket upgrade.
pub(crate) fn http_path(head: &[u8]) -> Option<&'static str> {
    let upgrade = String::from_utf8_lossy(head).lines().any(|l| l.to_ascii_lowercase().starts_with("upgrade:"));
    ["/healthz", "/metrics", "/"].into_iter().find(|path| {
        let line = format!("GET {path}");
        head.starts_with(line.as_bytes())
            && matches!(head.get(line.len()), Some(b' ' | b'?'))
            && (*path != "/" || !upgrade)
    })
}

/// Answers `GET path` on `tcp` (its request head read and discarded, bounded) and closes.
pub(crate) async fn answer(mut tcp: TcpStream, path: &str, metrics: &Metrics, store: &dyn RoomStore) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    let (status, body, kind) = match path {
        "/healthz" if store.healthy() => ("200 OK", "ok\n".to_string(), "text/plain"),
        "/healthz" => ("503 Service Unavailable", "room store unreachable\n".to_string(), "text/plain"),
        "/" => ("200 OK", DASHBOARD.to_string(), "text/html; charset=utf-8"),
        _ => ("200 OK", metrics.render(store.room_count().await), "text/plain; version=0.0.4"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::http_path;

    #[test]
    fn only_the_two_operator_paths_are_plain_http() {
        assert_eq!(http_path(b"GET /healthz HTTP/1.1\r\n"), Some("/healthz"));
        assert_eq!(http_path(b"GET /metrics?x=1 HTTP/1.1\r\n"), Some("/metrics"));
        assert_eq!(http_path(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!(http_path(b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n"), None);
        assert_eq!(http_path(b"GET /?room=lab HTTP/1.1\r\nHost: x\r\n\r\n"), Some("/"));
        assert_eq!(http_path(b"GET /healthzz HTTP/1.1"), None);
        assert_eq!(http_path(b"POST /metrics HTTP/1.1"), None);
    }
}
