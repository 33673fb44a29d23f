//! The `ws` [`Signaler`]: one WebSocket to the signaling server, kept open for the worker's life.
//! It may be given several servers (a cluster sharing rooms on Redis): they are tried in order.
//! If its server goes away it connects to the next one and registers again under the same
//! identity (an admin announces itself again); the mesh is not disturbed meanwhile. Failed
//! attempts back off as [`crate::backoff`] says (briskly for 30 s after losing a registered
//! connection, then up to 10 s, with jitter); a registration refused on reconnecting (the old one
//! not yet expired) is retried too.

use crate::backoff::{jittered, Backoff};
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
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The plugin name.
pub const NAME: &str = "ws";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
/// A registration refused on reconnecting is asked for again this soon.
const REFUSED_RETRY: Duration = Duration::from_millis(500);

/// Why a registration failed, as the server said it.
#[derive(Debug, thiserror::Error)]
#[error("signaling server refused registration: {0}")]
pub struct Refused(pub String);

/// How a connection to a server ended (other than by a refusal of the first registration).
enum Ended {
    /// No connection.
    Missed,
    /// The server refused to register us again (on a cluster, the registration held by a
    /// server that died is taken over once its lease expires): ask the same server again soon.
    Refused,
    /// Registered, then the connection broke.
    Lost,
}

/// Signaling through a `mesh-signal` server (or one of several serving the same rooms).
pub struct WsSignaler {
    urls: Vec<String>,
    token: Option<String>,
    outgoing: Mutex<Option<mpsc::Sender<ClientMsg>>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WsSignaler {
    /// A signaler for the server at `url` (`ws://host:port`), with the room's token if any.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        Self::with_urls(vec![url.into()], token)
    }

    /// A signaler for servers serving the same rooms, tried in order (at least one).
    pub fn with_urls(urls: Vec<String>, token: Option<String>) -> Self {
        Self { urls, token, outgoing: Mutex::new(None), shutdown: watch::channel(false).0, task: Mutex::new(None) }
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

/// Dials the server with staggered attempts ([`crate::dial`]) and upgrades the winner.
async fn connect(request: Request) -> Result<(WebSocketStream<TcpStream>, Response), String> {
    let uri = request.uri();
    if uri.scheme_str() == Some("wss") {
        return Err("wss:// needs TLS, which this build does not include".into());
    }
    let host = uri.host().ok_or("no host in the URL")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = crate::dial::dial(&host, port).await.map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async_with_config(request, stream, None).await.map_err(|e| e.to_string())
}

/// One connection: connect, register, pump until it breaks. `Err` carries a refusal of the
/// first registration (no retry).
async fn session(
    url: &str,
    token: &Option<String>,
    id: &Identity,
    inbox: &mpsc::Sender<Inbound>,
    outgoing: &mut mpsc::Receiver<ClientMsg>,
    registered: &mut Option<oneshot::Sender<Result<(), String>>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, String> {
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
    let here = |joined: bool| if joined { Ended::Lost } else { Ended::Missed };
    let mut joined = false;
    let Some(request) = upgrade_request(url, &text) else {
        return Err(format!("{url} is not a WebSocket URL"));
    };
    let (ws, response) = match tokio::time::timeout(CONNECT_TIMEOUT, connect(request)).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(err)) => {
            tracing::debug!(%url, error = %err, "signaling connect failed");
            return Ok(here(joined));
        }
        Err(_) => {
            tracing::debug!(%url, "signaling connect timed out");
            return Ok(here(joined));
        }
    };
    mesh_core::mark!("ws_connected", %url);
    let (mut sink, mut stream) = ws.split();
    // A server that took the registration from the upgrade request answers it without a frame.
    if !response.headers().contains_key(REGISTER_TAKEN_HEADER) && sink.send(Message::Text(text.into())).await.is_err() {
        return Ok(here(joined));
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(here(joined));
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() { return Ok(here(joined)); }
            }
            Some(msg) = outgoing.recv() => {
                let text = serde_json::to_string(&msg).unwrap_or_default();
                if sink.send(Message::Text(text.into())).await.is_err() { return Ok(here(joined)); }
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(here(joined)),
                    Some(Ok(_)) => continue,
                };
                let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else {
                    tracing::warn!("unparseable frame from the signaling server; ignored");
                    continue;
                };
                let event = match msg {
                    ServerMsg::Registered { members, admin, .. } => {
                        joined = true;
                        if let Some(tx) = registered.take() { let _ = tx.send(Ok(())); }
                        SignalingEvent::Registered { members, admin }
                    }
                    ServerMsg::PeerJoined { member } => SignalingEvent::PeerJoined(member),
                    ServerMsg::PeerLeft { peer } => SignalingEvent::PeerLeft(peer),
                    ServerMsg::Signal { from, signal, key } => SignalingEvent::Signal { from, signal, key },
                    ServerMsg::Admin { peer } => SignalingEvent::Admin(peer),
                    ServerMsg::Pong { .. } => continue,
                    ServerMsg::Error { code, message } => {
                        if code == crate::protocol::ErrorCode::NotProven {
                            // The admin's proof is not a majority's yet at the server: it is
                            // announced again as votes come in.
                            tracing::debug!(%message, "admin announcement not taken yet");
                        } else {
                            tracing::warn!(?code, %message, "signaling server error");
                        }
                        if let Some(tx) = registered.take() {
                            let _ = tx.send(Err(message.clone()));
                            return Err(message);
                        }
                        if !joined {
                            return Ok(Ended::Refused);
                        }
                        continue;
                    }
                };
                if inbox.send(Inbound { path: NAME, event }).await.is_err() { return Ok(here(joined)); }
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
        let (urls, token, mut shutdown) = (self.urls.clone(), self.token.clone(), self.shutdown.subscribe());
        let task = tokio::spawn(async move {
            let mut first = Some(first_tx);
            let mut backoff = Backoff::default();
            let (mut index, mut misses) = (0usize, 0usize);
            loop {
                let url = &urls[index % urls.len()];
                let result = session(url, &token, &ctx.identity, &ctx.inbox, &mut rx, &mut first, &mut shutdown).await;
                let ended = match result {
                    Ok(ended) if !*shutdown.borrow() => ended,
                    _ => return,
                };
                let now = std::time::Instant::now();
                let delay = match ended {
                    Ended::Refused => REFUSED_RETRY, // the same, live server, soon
                    Ended::Lost => {
                        // The next attempt goes to the next server (the one after a dead one).
                        index += 1;
                        let _ = ctx.inbox.send(Inbound { path: NAME, event: SignalingEvent::Disconnected }).await;
                        backoff.lost(now);
                        misses = 0;
                        backoff.next(now, false)
                    }
                    Ended::Missed => {
                        index += 1;
                        misses += 1;
                        backoff.next(now, misses % urls.len() == 0) // a whole round of servers failed
                    }
                };
                let delay = jittered(delay, rand::random::<f64>());
                if let Ended::Missed = ended {
                    if misses == 1 {
                        // The first failure is worth a warning: a newcomer with no server running
                        // must see why nothing happens. Later ones would only repeat it.
                        tracing::warn!(%url, retry_in = ?delay, "cannot reach the signaling server; retrying with backoff");
                    } else {
                        tracing::info!(%url, retry_in = ?delay, misses, "signaling server still unreachable");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
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
                let urls = self.urls.join(", ");
                Err(SignalError::Other(Box::new(Refused(format!("no registration from {urls} within 30 s")))))
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
            Announcement::Admin(proof) => ClientMsg::AnnounceAdmin { epoch: proof.epoch, votes: proof.votes },
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

/// The servers of a `[ws]` section: `urls` (a list, or one string of comma-separated URLs, as
/// `MESH_WS__URLS` gives it), else `url`, else the local default; each must be `ws://` or
/// `wss://`.
pub fn urls_of(section: &serde_json::Value) -> Result<Vec<String>, String> {
    if let Some(bad) =
        section.as_object().and_then(|o| o.keys().find(|k| !["url", "urls", "token"].contains(&k.as_str())))
    {
        return Err(format!("unknown key `ws.{bad}` (known: url, urls, token)"));
    }
    let urls: Vec<String> = match (section.get("urls"), section.get("url")) {
        (Some(serde_json::Value::Array(list)), _) => list
            .iter()
            .map(|u| u.as_str().map(String::from).ok_or("ws.urls must be strings"))
            .collect::<Result<_, _>>()?,
        (Some(serde_json::Value::String(csv)), _) => {
            csv.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
        }
        (Some(other), _) => return Err(format!("ws.urls must be a list of URLs, got {other}")),
        (None, Some(url)) => vec![url.as_str().ok_or("ws.url must be a string")?.to_string()],
        (None, None) => vec!["ws://127.0.0.1:8765".to_string()],
    };
    if urls.is_empty() {
        return Err("ws.urls is empty".into());
    }
    match urls.iter().find(|u| !u.starts_with("ws://") && !u.starts_with("wss://")) {
        Some(bad) => Err(format!("ws.url must start with ws:// or wss://, got {bad}")),
        None => Ok(urls),
    }
}

#[cfg(test)]
mod tests {
    use super::urls_of;
    use serde_json::json;

    #[test]
    fn servers_come_from_urls_as_a_list_or_csv_else_url() {
        let two = vec!["ws://a:1".to_string(), "ws://b:2".to_string()];
        assert_eq!(urls_of(&json!({"urls": ["ws://a:1", "ws://b:2"]})), Ok(two.clone()));
        assert_eq!(urls_of(&json!({"urls": "ws://a:1, ws://b:2"})), Ok(two));
        assert_eq!(urls_of(&json!({"url": "ws://a:1"})), Ok(vec!["ws://a:1".to_string()]));
        assert_eq!(urls_of(&json!(null)), Ok(vec!["ws://127.0.0.1:8765".to_string()]));
        assert!(urls_of(&json!({"urls": ["http://a"]})).unwrap_err().contains("ws://"));
        assert!(urls_of(&json!({"urls": []})).is_err());
    }
}
