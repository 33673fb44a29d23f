//! What an operator watches: counters kept as the server runs, and the plain HTTP requests
//! served on the WebSocket's port: `GET /healthz` (200 when the room store is reachable, 503
//! otherwise), `GET /metrics` (Prometheus text format), and `GET /` without a WebSocket upgrade,
//! the room dashboard (one self-contained page, `?room=NAME&token=TOKEN`).

use crate::protocol::{ErrorCode, ServerMsg};
use crate::store::RoomStore;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections: AtomicU64,
    registrations: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    forwarded: AtomicU64,
    refusals: Mutex<BTreeMap<String, u64>>,
    store_ops: AtomicU64,
    store_micros: AtomicU64,
}

impl Metrics {
    /// A frame came in.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// `msg` goes out: counted, and its error code too if it is a refusal.
    pub fn frame_out(&self, msg: &ServerMsg) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        if let ServerMsg::Error { code, .. } = msg {
            self.refused(*code);
        }
    }

    /// A peer registered.
    pub fn registered(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
    }

    /// A signal was handed to the store for its recipient.
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self, code: ErrorCode) {
        let name = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        *self.refusals.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_insert(0) += 1;
    }

    /// One room-store operation took `took`.
    pub fn store_op(&self, took: Duration) {
        self.store_ops.fetch_add(1, Ordering::Relaxed);
        self.store_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text of every counter, with `rooms` from the store.
    pub fn render(&self, rooms: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            out += &format!("# HELP mesh_signal_{name} {help}\n# TYPE mesh_signal_{name} {kind}\n");
            for (labels, value) in lines {
                out += &format!("mesh_signal_{name}{labels} {value}\n");
            }
        };
        metric("connections", "gauge", "WebSocket connections open.", vec![(String::new(), get(&self.connections))]);
        metric(
            "rooms",
            "gauge",
            "Rooms with members (in the whole cluster on Redis).",
            vec![(String::new(), rooms as u64)],
        );
        metric("registrations_total", "counter", "Peers registered.", vec![(String::new(), get(&self.registrations))]);
        metric("frames_in_total", "counter", "Frames received.", vec![(String::new(), get(&self.frames_in))]);
        metric("frames_out_total", "counter", "Frames sent.", vec![(String::new(), get(&self.frames_out))]);
        metric("signals_forwarded_total", "counter", "Signals forwarded.", vec![(String::new(), get(&self.forwarded))]);
        let refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let lines = refusals.into_iter().map(|(code, n)| (format!("{{code=\"{code}\"}}"), n)).collect();
        metric("refusals_total", "counter", "Error frames sent, by error code.", lines);
        let secs = get(&self.store_micros) as f64 / 1e6;
        out += "# HELP mesh_signal_store_seconds Time spent in room-store operations.\n";
        out += "# TYPE mesh_signal_store_seconds summary\n";
        out += &format!(
            "mesh_signal_store_seconds_sum {secs}\nmesh_signal_store_seconds_count {}\n",
            get(&self.store_ops)
        );
        out
    }
}

/// The dashboard page, embedded in the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The path of a plain HTTP request this server answers itself, if `head` (the request head, or
/// as much of it as has come) is one: the operator endpoints, or `/` without a WebSocket upgrade.
pub fn http_path(head: &[u8]) -> Option<&'static str> {
    let upgrade = String::from_utf8_lossy(head).lines().any(|l| l.to_ascii_lowercase().starts_with("upgrade:"));
    ["/healthz", "/metrics", "/"].into_iter().find(|path| {
        let line = format!("GET {path}");
        head.starts_with(line.as_bytes())
            && matches!(head.get(line.len()), Some(b' ' | b'?'))
            && (*path != "/" || !upgrade)
    })
}

/// Answers `GET path` on `tcp` (its request head read and discarded, bounded) and closes.
pub async fn answer(mut tcp: TcpStream, path: &str, metrics: &Metrics, store: &dyn RoomStore) {
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
