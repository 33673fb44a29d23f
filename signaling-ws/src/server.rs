//! [`SignalingServer`]: accepts WebSocket connections, registers peers into rooms, forwards
//! signals within a room, and guards every connection (size limit, rate limit, keep-alive).
//! A bad connection gets an error frame or a close with a reason; nobody else notices.

use crate::metrics::Metrics;
use crate::protocol::{
    header_decode, parse_client, ClientMsg, ErrorCode, ServerMsg, MAX_HEADER_REGISTER, REGISTER_HEADER,
    REGISTER_TAKEN_HEADER,
};
use crate::store::{Conn, MemoryRoomStore, RoomStore};
use futures::{SinkExt, StreamExt};
use mesh_core::{MemberInfo, PeerId, Role, RoomId, WorkerRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long a connection may stay silent before the server drops it (the default of
/// `idle_timeout_ms`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Server settings; every limit has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Workers per room (clients are not counted).
    pub max_workers_per_room: usize,
    /// Largest frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Sustained frames per second per connection.
    pub rate_per_sec: u32,
    /// Burst of frames above the sustained rate.
    pub rate_burst: u32,
    /// Server pings a quiet connection this often.
    pub keepalive_interval_ms: u64,
    /// A connection silent this long is closed (half-open detection).
    pub idle_timeout_ms: u64,
    /// Time a new connection has to complete the WebSocket handshake and register.
    pub handshake_timeout_ms: u64,
    /// Connections open at once; more are refused with a close reason.
    pub max_connections: usize,
    /// Connections open at once from one source address; more are refused with a close reason.
    pub max_connections_per_address: usize,
    /// Per-room access tokens.
    pub tokens: BTreeMap<String, String>,
    /// Token for rooms without their own; none means open rooms.
    pub shared_secret: Option<String>,
    /// The Redis shared by a cluster of servers (`redis://host:port`); none: rooms live in
    /// this process.
    pub redis_url: Option<String>,
    /// With Redis: how long a server that stopped refreshing its lease keeps its peers.
    pub lease_ms: u64,
    /// Worker public keys allowed to register (64 hex digits each); empty: any key.
    pub allow_workers: Vec<String>,
    /// Client public keys allowed to register; empty: any key (worker keys always may).
    pub allow_clients: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_workers_per_room: 10,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 100,
            rate_burst: 200,
            keepalive_interval_ms: 15_000,
            idle_timeout_ms: IDLE_TIMEOUT.as_millis() as u64,
            handshake_timeout_ms: 10_000,
            max_connections: 20_000,
            max_connections_per_address: 256,
            tokens: BTreeMap::new(),
            shared_secret: None,
            redis_url: None,
            lease_ms: 3_000,
            allow_workers: Vec::new(),
            allow_clients: Vec::new(),
        }
    }
}

/// A running signaling server.
pub struct SignalingServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
}

impl SignalingServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving; with `redis_url`, connects
    /// to the cluster's Redis first (an error if it cannot).
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> std::io::Result<Self> {
        let store: Arc<dyn RoomStore> = match &config.redis_url {
            Some(url) => crate::redis_store::RedisRoomStore::connect(url, Duration::from_millis(config.lease_ms))
                .await
                .map_err(std::io::Error::other)?,
            None => Arc::new(MemoryRoomStore::default()),
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let shared = Shared { config: Arc::new(config), store: store.clone(), metrics: metrics.clone() };
        let task = tokio::spawn(accept_loop(listener, shared, rx));
        tracing::info!(%addr, "signaling server listening");
        Ok(Self { addr, shutdown, task, store, metrics })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ws://` URL of this server.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The Prometheus text `GET /metrics` serves.
    pub async fn metrics(&self) -> String {
        self.metrics.render(self.store.room_count().await)
    }

    /// Rooms currently alive (in the whole cluster, with Redis).
    pub async fn room_count(&self) -> usize {
        self.store.room_count().await
    }

    /// Closes every connection (with a reason) and waits for all tasks, at most 5 s.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// What every connection shares.
#[derive(Clone)]
struct Shared {
    config: Arc<ServerConfig>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
}

async fn accept_loop(listener: TcpListener, shared: Shared, mut shutdown: watch::Receiver<bool>) {
    let config = shared.config.clone();
    let mut connections = JoinSet::new();
    let mut refusing = JoinSet::new();
    let addresses = crate::limits::Addresses::default();
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            Some(_) = refusing.join_next(), if !refusing.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let slot = match addresses.admit(remote.ip(), connections.len(), &config) {
                        Ok(slot) => slot,
                        Err(why) => {
                            tracing::warn!(%remote, why, "connection refused");
                            if refusing.len() < crate::limits::MAX_REFUSING {
                                refusing.spawn(crate::limits::refuse(tcp, why));
                            }
                            continue;
                        }
                    };
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("conn", id, %remote);
                    let lost = Arc::new(tokio::sync::Notify::new());
                    let (config, store, metrics) = (shared.config.clone(), shared.store.clone(), shared.metrics.clone());
                    let c = Connection { id, config, store, metrics, registered: None, key: None, proven: Default::default(), lost };
                    let run = c.run(tcp, shutdown.clone());
                    connections.spawn(tracing::Instrument::instrument(async move { run.await; drop(slot) }, span));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    while connections.join_next().await.is_some() {}
}

/// A token bucket.
struct Rate {
    tokens: f64,
    last: Instant,
    per_sec: f64,
    burst: f64,
}

impl Rate {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Connection {
    id: u64,
    config: Arc<ServerConfig>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
    registered: Option<(RoomId, PeerId, Role)>,
    /// The key this connection registered (handed out with its signals).
    key: Option<String>,
    /// The epoch and voters of this connection's last admin proof that held: they are not
    /// checked again as the proof grows.
    proven: (u64, std::collections::BTreeSet<PeerId>),
    /// Notified when the store lost this connection's registration.
    lost: Arc<tokio::sync::Notify>,
}

/// What to do after a frame.
enum Next {
    Continue,
    Close(CloseCode, &'static str),
}

/// The upgrade callback: takes a `register` from the request header into `slot` and says so in
/// the response. (Its error type is tungstenite's, large by design.)
#[allow(clippy::result_large_err)]
fn take_register(
    slot: Arc<std::sync::Mutex<Option<String>>>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> + Unpin {
    move |request: &Request, mut response: Response| {
        let value = request.headers().get(REGISTER_HEADER).map(|v| v.as_bytes());
        if let Some(text) = value.filter(|v| v.len() <= 3 * MAX_HEADER_REGISTER).and_then(header_decode) {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(text);
            }
            response.headers_mut().insert(REGISTER_TAKEN_HEADER, HeaderValue::from_static("1"));
        }
        Ok(response)
    }
}

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

impl Connection {
    /// A frame for the socket, counted (and its refusal, if it is one).
    fn text(&self, msg: &ServerMsg) -> Message {
        self.metrics.frame_out(msg);
        Message::Text(msg.to_text().into())
    }

    async fn run(self, tcp: TcpStream, shutdown: watch::Receiver<bool>) {
        let handshake = Duration::from_millis(self.config.handshake_timeout_ms);
        if let Some(path) = crate::http::plain_request(&tcp, handshake).await {
            return crate::http::answer(tcp, path, &self.metrics, self.store.as_ref()).await;
        }
        let metrics = self.metrics.clone();
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        self.serve(tcp, shutdown).await;
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }

    async fn serve(mut self, tcp: TcpStream, mut shutdown: watch::Receiver<bool>) {
        // The transport's hard cap is twice ours, so memory stays bounded while a frame over our
        // limit is still read whole and answered with an error frame and a clean close.
        let hard_cap = self.config.max_frame_bytes.saturating_mul(2);
        // Small buffers (tungstenite reserves 128 KiB per connection by default): signals are a
        // few KiB, and 10,000 idle connections should not cost 1.4 GB.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(hard_cap))
            .max_frame_size(Some(hard_cap))
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_write_buffer_size(hard_cap.max(1024 * 1024));
        let _ = tcp.set_nodelay(true); // signals are small and latency-bound
        let handshake = Duration::from_millis(self.config.handshake_timeout_ms);
        // The upgrade and the registration together must come within the handshake timeout.
        let register_by = Instant::now() + handshake;
        // A `register` in the upgrade request is taken as the first frame (and said so).
        let header_register = Arc::new(std::sync::Mutex::new(None::<String>));
        let take = take_register(header_register.clone());
        let accept = tokio_tungstenite::accept_hdr_async_with_config(tcp, take, Some(ws_config));
        let ws = match tokio::time::timeout(handshake, accept).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(err)) => return tracing::info!(error = %err, "handshake failed"),
            Err(_) => return tracing::info!("handshake timed out"),
        };
        let first = header_register.lock().ok().and_then(|mut s| s.take());
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::channel::<ServerMsg>(256);
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        let mut keepalive = tokio::time::interval(Duration::from_millis(self.config.keepalive_interval_ms));
        keepalive.tick().await;
        let mut last_heard = Instant::now();
        let mut rate = Rate {
            tokens: self.config.rate_burst as f64,
            last: Instant::now(),
            per_sec: self.config.rate_per_sec as f64,
            burst: self.config.rate_burst as f64,
        };
        // Frames refused by the rate in this flood: a flood ends after a second without one. The
        // first refusal of a flood is answered; the connection closes past `rate_burst` of them,
        // however many frames the rate let through in between (a steady flood is still a flood).
        let (mut strikes, mut last_strike) = (0u32, Instant::now());
        let mut refused = match first {
            Some(text) => match self.on_text(&text, &tx).await {
                Next::Close(code, reason) => Some((code, reason)),
                Next::Continue => None,
            },
            None => None,
        };
        let closing: Option<Message> = loop {
            if let Some((code, reason)) = refused.take() {
                while let Ok(msg) = rx.try_recv() {
                    let _ = sink.send(self.text(&msg)).await;
                }
                break Some(close(code, reason));
            }
            tokio::select! {
                _ = shutdown.changed() => break Some(close(CloseCode::Away, "server shutting down")),
                _ = self.lost.notified() => {
                    tracing::warn!("the room store lost this registration; closing so the peer registers again");
                    break Some(close(CloseCode::Again, "registration lost by the room store; register again"));
                }
                Some(msg) = rx.recv() => {
                    if sink.send(self.text(&msg)).await.is_err() {
                        break None;
                    }
                }
                _ = keepalive.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break None;
                    }
                }
                _ = tokio::time::sleep_until(register_by), if self.registered.is_none() => {
                    tracing::info!("no registration in time; closing");
                    let error = ServerMsg::error(ErrorCode::NotRegistered, "no register within the handshake timeout");
                    let _ = sink.send(self.text(&error)).await;
                    break Some(close(CloseCode::Policy, "no registration in time"));
                }
                _ = tokio::time::sleep_until(last_heard + idle) => {
                    tracing::info!("keep-alive timeout; closing");
                    break Some(close(CloseCode::Policy, "keep-alive timeout"));
                }
                frame = stream.next() => {
                    last_heard = Instant::now();
                    if let Some(Ok(_)) = &frame {
                        self.metrics.frame_in();
                    }
                    let next = match frame {
                        None | Some(Ok(Message::Close(_))) => break None,
                        Some(Err(WsError::Capacity(err))) => {
                            tracing::warn!(error = %err, "oversized frame; closing");
                            let _ = sink.send(self.text(&ServerMsg::error(ErrorCode::TooLarge, err.to_string()))).await;
                            break Some(close(CloseCode::Size, "frame too large"));
                        }
                        Some(Err(err)) => {
                            tracing::info!(error = %err, "connection error");
                            break None;
                        }
                        // Every frame counts against the rate (binary, ping and pong too).
                        Some(Ok(_)) if !rate.allow() => {
                            if last_strike.elapsed() >= Duration::from_secs(1) {
                                strikes = 0;
                            }
                            (strikes, last_strike) = (strikes + 1, Instant::now());
                            if strikes == 1 {
                                tracing::warn!("rate limit exceeded");
                                // Straight to the socket: a flood fills the queue, and the
                                // flooder must still learn why it is being cut off. Further
                                // frames of the flood are dropped unanswered.
                                let error = ServerMsg::error(ErrorCode::RateLimited, "too many frames; slow down");
                                let _ = sink.send(self.text(&error)).await;
                            }
                            if strikes > self.config.rate_burst { Next::Close(CloseCode::Policy, "rate limit exceeded") } else { Next::Continue }
                        }
                        Some(Ok(Message::Text(text))) if text.len() > self.config.max_frame_bytes => {
                            tracing::warn!(len = text.len(), "oversized frame; closing");
                            let message = format!("frame of {} bytes exceeds the {}-byte limit", text.len(), self.config.max_frame_bytes);
                            let _ = tx.try_send(ServerMsg::error(ErrorCode::TooLarge, message));
                            Next::Close(CloseCode::Size, "frame too large")
                        }
                        Some(Ok(Message::Text(text))) => self.on_text(&text, &tx).await,
                        Some(Ok(Message::Binary(_))) => {
                            let _ = tx.try_send(ServerMsg::error(ErrorCode::InvalidMessage, "binary frames are not part of the protocol"));
                            Next::Continue
                        }
                        Some(Ok(_)) => Next::Continue, // ping/pong: liveness only
                    };
                    if let Next::Close(code, reason) = next {
                        while let Ok(msg) = rx.try_recv() {
                            let _ = sink.send(self.text(&msg)).await;
                        }
                        break Some(close(code, reason));
                    }
                }
            }
        };
        // Leave the room first: the others hear of it at once, the id is free again. Not when the
        // server itself is stopping: the peers did not leave, and their mesh must not be told so.
        if let Some((room, peer, _)) = self.registered.take() {
            if !*shutdown.borrow() {
                let t = Instant::now();
                self.store.leave(&room, &peer, self.id).await;
                self.metrics.store_op(t.elapsed());
                tracing::info!(%room, %peer, "peer left");
            }
        }
        if let Some(frame) = closing {
            // Complete the closing handshake: discard what the peer still sends until its close
            // (bounded). Closing with unread data would reset the connection and lose our reason.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                if sink.send(frame).await.is_ok() {
                    while let Some(Ok(msg)) = stream.next().await {
                        if msg.is_close() {
                            break;
                        }
                    }
                }
            })
            .await;
        }
    }

    async fn on_text(&mut self, text: &str, tx: &mpsc::Sender<ServerMsg>) -> Next {
        let reply = |msg: ServerMsg| {
            let _ = tx.try_send(msg);
        };
        let msg = match parse_client(text) {
            Ok(msg) => msg,
            Err((code, message)) => {
                tracing::warn!(?code, %message, "frame rejected");
                reply(ServerMsg::error(code, message));
                return Next::Continue;
            }
        };
        match (msg, self.registered.clone()) {
            (ClientMsg::Register { room, peer, role, token, record, rejoin, key }, None) => {
                if key.as_ref().is_some_and(|k| k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit())) {
                    reply(ServerMsg::error(
                        ErrorCode::InvalidMessage,
                        "key: expected 64 hex digits (an Ed25519 public key)",
                    ));
                    return Next::Continue;
                }
                if !self.token_ok(&room, token.as_deref()) {
                    tracing::warn!(%room, %peer, "bad token");
                    reply(ServerMsg::error(ErrorCode::BadToken, format!("wrong or missing token for room {room}")));
                    return Next::Close(CloseCode::Policy, "bad token");
                }
                let (workers, clients) = (&self.config.allow_workers, &self.config.allow_clients);
                if !crate::trust::allowed(workers, clients, role, key.as_deref()) {
                    tracing::warn!(%room, %peer, ?role, "key not on the allowlist");
                    let message = format!("the key registered is not on this server's allowlist for {role:?}s");
                    reply(ServerMsg::error(ErrorCode::NotAllowed, message));
                    return Next::Close(CloseCode::Policy, "key not allowed");
                }
                let member_key = key.clone();
                let member = MemberInfo {
                    peer: peer.clone(),
                    record: record.unwrap_or_else(|| WorkerRecord::new(0, Default::default())),
                    key,
                };
                let conn = Conn { id: self.id, tx: tx.clone(), lost: self.lost.clone() };
                let t = Instant::now();
                let joined = self.store.join(&room, member, role, rejoin, conn, self.config.max_workers_per_room).await;
                self.metrics.store_op(t.elapsed());
                match joined {
                    Ok((members, admin)) => {
                        self.metrics.registered();
                        tracing::info!(%room, %peer, ?role, "registered");
                        self.registered = Some((room.clone(), peer.clone(), role));
                        self.key = member_key;
                        reply(ServerMsg::Registered { room: room.clone(), peer: peer.clone(), members, admin });
                        self.store.answered(&room, &peer, self.id).await;
                    }
                    Err(code) => {
                        tracing::warn!(%room, %peer, ?code, "registration refused");
                        let message = match code {
                            ErrorCode::RoomFull => {
                                format!("room {room} has its {} workers", self.config.max_workers_per_room)
                            }
                            ErrorCode::DuplicatePeer => format!("peer id {peer} is already registered in room {room}"),
                            ErrorCode::Unavailable => "the room store is unreachable; try again".into(),
                            _ => "registration refused".into(),
                        };
                        reply(ServerMsg::error(code, message));
                    }
                }
            }
            (ClientMsg::Register { .. }, Some(_)) => {
                reply(ServerMsg::error(ErrorCode::AlreadyRegistered, "already registered on this connection"))
            }
            (ClientMsg::Ping { id }, _) => reply(ServerMsg::Pong { id }),
            (_, None) => reply(ServerMsg::error(ErrorCode::NotRegistered, "register first")),
            (ClientMsg::Signal { to, signal }, Some((room, peer, _))) => {
                let t = Instant::now();
                let sender = crate::store::Sender { peer: peer.clone(), key: self.key.clone() };
                let forwarded = self.store.forward(&room, sender, &to, signal).await;
                self.metrics.store_op(t.elapsed());
                if forwarded.is_ok() {
                    self.metrics.forwarded();
                }
                if let Err(code) = forwarded {
                    let message = match code {
                        ErrorCode::Unavailable => "the room store is unreachable; try again".into(),
                        _ => format!("{to} is not in room {room}"),
                    };
                    reply(ServerMsg::error(code, message));
                }
            }
            (ClientMsg::AnnounceAdmin { epoch, votes }, Some((room, peer, role))) => {
                if role != Role::Worker {
                    reply(ServerMsg::error(ErrorCode::NotWorker, "only workers can be admin"));
                    return Next::Continue;
                }
                let t = Instant::now();
                let refusal = match self.store.workers(&room).await {
                    Err(code) => Some((code, "the room store is unreachable; try again".to_string())),
                    Ok(workers) => {
                        let checked = if self.proven.0 == epoch { self.proven.1.clone() } else { Default::default() };
                        match crate::trust::check_admin_proof(&room, &peer, epoch, &votes, &workers, &checked) {
                            Err(why) => Some((ErrorCode::NotProven, why)),
                            Ok(_) if !self.store.set_admin(&room, &peer, epoch).await => {
                                Some((ErrorCode::NotProven, format!("an admin of an epoch above {epoch} is named")))
                            }
                            Ok(voters) => {
                                self.proven = (epoch, voters);
                                None
                            }
                        }
                    }
                };
                self.metrics.store_op(t.elapsed());
                if let Some((code, message)) = refusal {
                    tracing::info!(%room, %peer, epoch, %message, "admin announcement refused");
                    reply(ServerMsg::error(code, message));
                }
            }
            (ClientMsg::WithdrawAdmin, Some((room, peer, _))) => self.store.withdraw_admin(&room, &peer).await,
            (ClientMsg::Leave, Some(_)) => return Next::Close(CloseCode::Normal, "left the room"),
        }
        Next::Continue
    }

    fn token_ok(&self, room: &RoomId, given: Option<&str>) -> bool {
        let expected = self.config.tokens.get(room.as_str()).or(self.config.shared_secret.as_ref());
        match expected {
            None => true,
            Some(expected) => bool::from(expected.as_bytes().ct_eq(given.unwrap_or_default().as_bytes())),
        }
    }
}
