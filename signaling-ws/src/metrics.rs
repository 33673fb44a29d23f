//! What an operator watches: counters kept as the server runs, rendered in the Prometheus text
//! format for `GET /metrics`.

use crate::protocol::{ErrorCode, ServerMsg};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
