//! The `ws` [`Signaler`]: one WebSocket to the signaling server, kept open for the worker's life.
//! If the server goes away it reconnects with exponential backoff (250 ms doubling to 10 s, with
//! jitter) and registers again under the same identity; the mesh is not disturbed meanwhile.

use crate::protocol::{
    header_encode, ClientMsg, ServerMsg, MAX_HEADER_REGISTER, REGISTER_HEADER, REGISTER_TAKEN_HEADER,
};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use mesh_core::{
    Announcement, Identity, Inbound, PeerId, Signal, SignalError, Signaler, SignalerContext, SignalingEvent,
};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The plugin name.
pub const NAME: &str = "ws";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(10);

/// Why a registration failed, as the server said it.
#[derive(Debug, thiserror::Error)]
#[error("signaling server refused registration: {0}")]
pub struct Refused(pub String);

/// Signaling through a `mesh-signal` server.
pub struct WsSignaler {
    url: String,
    token: Option<String>,
    outgoing: Mutex<Option<mpsc::Sender<ClientMsg>>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WsSignaler {
    /// A signaler for the server at `url` (`ws://host:port`), with the room's token if any.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        Self {
            url: url.into(),
            token,
            outgoing: Mutex::new(None),
            shutdown: watch::channel(false).0,
            task: Mutex::new(None),
        }
    }

    fn outgoing(&self) -> Option<mpsc::Sender<ClientMsg>> {
        self.outgoing.lock().ok().and_then(|o| o.clone())
    }
}

/// The upgrade request for `url`, carrying `register` in a header when it is small enough (the
/// server then answers `registered` without waiting for a frame: one round trip less).
fn upgrade_request(url: &str, register: &str) -> Option<Request> {
    let mut request = url.into_client_request().ok()?;
    if register.len() <= MAX_HEADER_REGISTER {
        if let Ok(value) = HeaderValue::from_str(&header_encode(register)) {
            request.headers_mut().insert(REGISTER_HEADER, value);
        }
    }
    Some(request)
}

/// One connection: connect, register, pump until it breaks. `Err` carries a refusal (no retry).
async fn session(
    url: &str,
    token: &Option<String>,
    id: &Identity,
    inbox: &mpsc::Sender<Inbound>,
    outgoing: &mut mpsc::Receiver<ClientMsg>,
    registered: &mut Option<oneshot::Sender<Result<(), String>>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let register = ClientMsg::Register {
        room: id.room.clone(),
        peer: id.peer.clone(),
        role: id.role,
        token: token.clone(),
        record: Some(id.record.clone()),
        // Once registered, every later registration is a rejoin.
        rejoin: registered.is_none(),
        key: id.key.clone(),
    };
    let text = serde_json::to_string(&register).unwrap_or_default();
    let Some(request) = upgrade_request(url, &text) else {
        return Err(format!("{url} is not a WebSocket URL"));
    };
    let (ws, response) =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async_with_config(request, None, true))
            .await
        {
            Ok(Ok(ok)) => ok,
            Ok(Err(err)) => {
                tracing::debug!(%url, error = %err, "signaling connect failed");
                return Ok(());
            }
            Err(_) => {
                tracing::debug!(%url, "signaling connect timed out");
                return Ok(());
            }
        };
    mesh_core::mark!("ws_connected", %url);
    let (mut sink, mut stream) = ws.split();
    // A server that took the registration from the upgrade request answers it without a frame.
    if !response.headers().contains_key(REGISTER_TAKEN_HEADER) && sink.send(Message::Text(text.into())).await.is_err() {
        return Ok(());
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() { return Ok(()); }
            }
            Some(msg) = outgoing.recv() => {
                let text = serde_json::to_string(&msg).unwrap_or_default();
                if sink.send(Message::Text(text.into())).await.is_err() { return Ok(()); }
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                    Some(Ok(_)) => continue,
                };
                let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else {
                    tracing::warn!("unparseable frame from the signaling server; ignored");
                    continue;
                };
                let event = match msg {
                    ServerMsg::Registered { members, admin, .. } => {
                        if let Some(tx) = registered.take() { let _ = tx.send(Ok(())); }
                        SignalingEvent::Registered { members, admin }
                    }
                    ServerMsg::PeerJoined { member } => SignalingEvent::PeerJoined(member),
                    ServerMsg::PeerLeft { peer } => SignalingEvent::PeerLeft(peer),
                    ServerMsg::Signal { from, signal } => SignalingEvent::Signal { from, signal },
                    ServerMsg::Admin { peer } => SignalingEvent::Admin(peer),
                    ServerMsg::Pong { .. } => continue,
                    ServerMsg::Error { code, message } => {
                        tracing::warn!(?code, %message, "signaling server error");
                        if let Some(tx) = registered.take() {
                            let _ = tx.send(Err(message.clone()));
                            return Err(message);
                        }
                        continue;
                    }
                };
                if inbox.send(Inbound { path: NAME, event }).await.is_err() { return Ok(()); }
            }
        }
    }
}

#[async_trait]
impl Signaler for WsSignaler {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError> {
        let (tx, mut rx) = mpsc::channel(256);
        if let Ok(mut o) = self.outgoing.lock() {
            *o = Some(tx);
        }
        let (first_tx, first_rx) = oneshot::channel();
        let (url, token, mut shutdown) = (self.url.clone(), self.token.clone(), self.shutdown.subscribe());
        let task = tokio::spawn(async move {
            let mut first = Some(first_tx);
            let mut backoff = BACKOFF_MIN;
            let mut failures = 0u32;
            loop {
                let was_first = first.is_some();
                let result = session(&url, &token, &ctx.identity, &ctx.inbox, &mut rx, &mut first, &mut shutdown).await;
                if *shutdown.borrow() || result.is_err() {
                    return;
                }
                if !was_first || first.is_none() {
                    let _ = ctx.inbox.send(Inbound { path: NAME, event: SignalingEvent::Disconnected }).await;
                    backoff = BACKOFF_MIN;
                    failures = 0;
                }
                let delay = backoff.mul_f64(0.8 + 0.2 * rand::random::<f64>());
                failures += 1;
                if failures == 1 {
                    // The first failure is worth a warning: a newcomer with no server running
                    // must see why nothing happens. Later ones would only repeat it.
                    tracing::warn!(%url, retry_in = ?delay, "cannot reach the signaling server; retrying with backoff");
                } else {
                    tracing::info!(%url, retry_in = ?delay, failures, "signaling server still unreachable");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        match tokio::time::timeout(Duration::from_secs(30), first_rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(SignalError::Other(Box::new(Refused(message)))),
            _ => {
                self.stop().await;
                Err(SignalError::Other(Box::new(Refused(format!("no registration from {} within 30 s", self.url)))))
            }
        }
    }

    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError> {
        let tx = self.outgoing().ok_or(SignalError::NotRunning)?;
        tx.try_send(ClientMsg::Signal { to: to.clone(), signal })
            .map_err(|_| SignalError::Unreachable { peer: to.clone(), why: "signaling connection busy or down".into() })
    }

    async fn announce(&self, what: Announcement) -> Result<(), SignalError> {
        let tx = self.outgoing().ok_or(SignalError::NotRunning)?;
        let msg = match what {
            Announcement::Admin => ClientMsg::AnnounceAdmin,
            Announcement::Withdraw => ClientMsg::WithdrawAdmin,
            Announcement::Leaving => ClientMsg::Leave,
        };
        tx.send(msg).await.map_err(|_| SignalError::NotRunning)
    }

    async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for WsSignaler {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }
}
