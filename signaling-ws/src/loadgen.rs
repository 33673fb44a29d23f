//! Load generator for a signaling server, shared by the load test and `mesh-bench signaling`:
//! registers `rooms × peers` raw WebSocket clients, measures idle forwarding latency one signal
//! at a time, then a burst where every peer forwards one signal at once.
//!
//! Peers keep their connections until every signal has arrived: closing a socket with unread
//! frames makes the kernel reset it, which discards frames the server has not read yet.

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The shape of one load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Rooms to fill.
    pub rooms: usize,
    /// Peers per room (at most the server's room limit).
    pub peers: usize,
    /// Registrations in flight at once.
    pub concurrency: usize,
    /// Idle one-at-a-time signals timed before the burst.
    pub idle_samples: usize,
    /// Prefix of the room names (distinct per run when several runs share one Redis).
    pub room_prefix: String,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Connections registered.
    pub registered: usize,
    /// Seconds to register them all.
    pub register_secs: f64,
    /// One-way forwarding latency of idle signals, microseconds, sorted.
    pub idle_us: Vec<u64>,
    /// One-way forwarding latency in the all-at-once burst, microseconds, sorted.
    pub burst_us: Vec<u64>,
}

impl LoadReport {
    /// Registrations per second.
    pub fn registrations_per_sec(&self) -> f64 {
        self.registered as f64 / self.register_secs.max(f64::EPSILON)
    }
}

/// The `q` quantile of sorted samples (0 if empty).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    mesh_core::timeline::quantile(sorted, q).unwrap_or(0)
}

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn register(url: String, prefix: String, room: usize, peer: usize) -> Result<(usize, usize, Ws), String> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, None, true).await.map_err(|e| format!("connect: {e}"))?;
    let reg =
        json!({"type": "register", "room": format!("{prefix}{room}"), "peer": format!("p{peer}"), "role": "worker"});
    ws.send(Message::Text(reg.to_string().into())).await.map_err(|e| format!("register: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"registered\"") => return Ok((room, peer, ws)),
            Some(Ok(Message::Text(t))) if t.contains("\"error\"") => return Err(format!("refused: {t}")),
            Some(Ok(_)) => {}
            other => return Err(format!("connection ended during registration: {other:?}")),
        }
    }
}

fn stamped_signal(from: usize, to: usize) -> Message {
    let signal = json!({"session": {"offerer": format!("p{from}"), "seq": 1}, "body": {"kind": "candidate", "candidate": micros_now().to_string()}});
    Message::Text(json!({"type": "signal", "to": format!("p{to}"), "signal": signal}).to_string().into())
}

/// Reads until a signal arrives; returns its one-way latency in microseconds.
async fn await_signal(stream: &mut SplitStream<Ws>) -> Result<u64, String> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| format!("server sent bad JSON: {e}"))?;
                if v["type"] == "error" {
                    return Err(format!("server error: {t}"));
                }
                if v["type"] == "signal" {
                    let sent: u64 = v["signal"]["body"]["candidate"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or("signal without a stamp")?;
                    return Ok(micros_now().saturating_sub(sent));
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("connection ended before its signal: {other:?}")),
        }
    }
}

/// Room, peer index, and the two halves of its connection.
type Peer = (usize, usize, SplitSink<Ws, Message>, SplitStream<Ws>);

/// Runs the load against the servers at `urls` (serving the same rooms): the peers of each
/// room take the servers in turn, so with two servers every signal between neighbours crosses
/// from one to the other.
pub async fn run(urls: &[String], config: &LoadConfig) -> Result<LoadReport, String> {
    if urls.is_empty() {
        return Err("no server to load".into());
    }
    let started = Instant::now();
    let ids: Vec<(usize, usize)> = (0..config.rooms).flat_map(|r| (0..config.peers).map(move |p| (r, p))).collect();
    let conns: Vec<Result<(usize, usize, Ws), String>> = futures::stream::iter(ids)
        .map(|(r, p)| register(urls[p % urls.len()].clone(), config.room_prefix.clone(), r, p))
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let register_secs = started.elapsed().as_secs_f64();
    let mut peers: Vec<Peer> = Vec::with_capacity(conns.len());
    for conn in conns {
        let (r, p, ws) = conn?;
        let (sink, stream) = ws.split();
        peers.push((r, p, sink, stream));
    }
    let registered = peers.len();

    // Idle latency: one signal at a time from p0 to p1 of room 0, nothing else in flight.
    let mut idle_us = Vec::with_capacity(config.idle_samples);
    if config.peers >= 2 {
        let a = peers.iter().position(|(r, p, _, _)| (*r, *p) == (0, 0)).ok_or("room 0 has no p0")?;
        let b = peers.iter().position(|(r, p, _, _)| (*r, *p) == (0, 1)).ok_or("room 0 has no p1")?;
        for _ in 0..config.idle_samples {
            peers[a].2.send(stamped_signal(0, 1)).await.map_err(|e| format!("send: {e}"))?;
            idle_us.push(await_signal(&mut peers[b].3).await?);
        }
    }

    // Burst: every peer sends one signal to the next peer of its room at once.
    let per_room = config.peers;
    let burst: Vec<Result<(u64, Peer), String>> = futures::stream::iter(peers)
        .map(|(r, p, mut sink, mut stream)| async move {
            sink.send(stamped_signal(p, (p + 1) % per_room)).await.map_err(|e| format!("send: {e}"))?;
            let latency = await_signal(&mut stream).await?;
            Ok((latency, (r, p, sink, stream)))
        })
        .buffer_unordered(registered.max(1))
        .collect()
        .await;
    let mut burst_us = Vec::with_capacity(burst.len());
    let mut keep = Vec::with_capacity(burst.len());
    for result in burst {
        let (latency, peer) = result?;
        burst_us.push(latency);
        keep.push(peer);
    }
    drop(keep); // every signal arrived: now closing cannot lose anything
    idle_us.sort_unstable();
    burst_us.sort_unstable();
    Ok(LoadReport { registered, register_secs, idle_us, burst_us })
}

/// A `mesh-signal` process started for a load run; killed on drop.
pub struct ServerProcess {
    child: Child,
    /// Its `ws://` URL.
    pub url: String,
}

impl ServerProcess {
    /// Starts the binary at `path` on a free loopback port with a generous rate burst.
    pub fn spawn(path: &std::path::Path) -> Result<Self, String> {
        Self::spawn_command(Command::new(path), "127.0.0.1:0")
    }

    /// Starts the server `command` names (for example through `ip netns exec`), listening on
    /// `listen`.
    pub fn spawn_command(mut command: Command, listen: &str) -> Result<Self, String> {
        let mut child = command
            .args(["--listen", listen])
            .env("RUST_LOG", "warn")
            .env("MESH_SIGNAL_RATE_BURST", "1000")
            // Load tests open every connection from this one address.
            .env("MESH_SIGNAL_MAX_CONNECTIONS_PER_ADDRESS", "100000")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut first = String::new();
        lines.read_line(&mut first).map_err(|e| format!("no address line: {e}"))?;
        let url = first.trim().strip_prefix("mesh-signal listening on ").ok_or("unexpected first line")?.to_string();
        // Keep draining the output so a full pipe can never block the server.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        Ok(Self { child, url })
    }

    /// Peak resident memory of the server so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; true on a clean exit.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
