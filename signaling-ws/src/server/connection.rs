//! One connection's life: the upgrade (with a `register` in its header), the frame loop with
//! its limits (size, rate, keep-alive, registration deadline), and the close with a reason.

use super::ServerConfig;

use crate::metrics::Metrics;
use crate::protocol::{
    header_decode, ErrorCode, ServerMsg, MAX_HEADER_REGISTER, REGISTER_HEADER, REGISTER_TAKEN_HEADER,
};
use crate::store::RoomStore;
use futures::{SinkExt, StreamExt};
use mesh_core::{PeerId, Role, RoomId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

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

pub(super) struct Connection {
    pub(super) id: u64,
    pub(super) config: Arc<ServerConfig>,
    pub(super) store: Arc<dyn RoomStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) registered: Option<(RoomId, PeerId, Role)>,
    /// The key this connection registered (handed out with its signals).
    pub(super) key: Option<String>,
    /// The epoch and voters of this connection's last admin proof that held: they are not
    /// checked again as the proof grows.
    pub(super) proven: (u64, std::collections::BTreeSet<PeerId>),
    /// Notified when the store lost this connection's registration.
    pub(super) lost: Arc<tokio::sync::Notify>,
}

/// What to do after a frame.
pub(super) enum Next {
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
    pub(super) fn text(&self, msg: &ServerMsg) -> Message {
        self.metrics.frame_out(msg);
        Message::Text(msg.to_text().into())
    }

    pub(super) async fn run(self, tcp: TcpStream, shutdown: watch::Receiver<bool>) {
        let handshake = Duration::from_millis(self.config.handshake_timeout_ms);
        if let Some(path) = crate::http::plain_request(&tcp, handshake).await {
            return crate::http::answer(tcp, path, &self.metrics, self.store.as_ref()).await;
        }
        let metrics = self.metrics.clone();
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        self.serve(tcp, shutdown).await;
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Leaves the room (unless the server is stopping: the peers did not leave, and their mesh
    /// must not be told so), then completes the closing handshake with `closing`.
    async fn finish(
        &mut self,
        stopping: bool,
        closing: Option<Message>,
        mut sink: futures::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
        mut stream: futures::stream::SplitStream<WebSocketStream<TcpStream>>,
    ) {
        // Leave the room first: the others hear of it at once, the id is free again. Not when the
        // server itself is stopping: the peers did not leave, and their mesh must not be told so.
        if let Some((room, peer, _)) = self.registered.take() {
            if !stopping {
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

    /// Upgrades `tcp` to a WebSocket within the handshake timeout; also returns a `register`
    /// the upgrade request carried in its header (taken as the first frame, and said so).
    async fn upgrade(&self, tcp: TcpStream) -> Option<(WebSocketStream<TcpStream>, Option<String>)> {
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
        let header_register = Arc::new(std::sync::Mutex::new(None::<String>));
        let take = take_register(header_register.clone());
        let accept = tokio_tungstenite::accept_hdr_async_with_config(tcp, take, Some(ws_config));
        let ws = match tokio::time::timeout(handshake, accept).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(err)) => {
                tracing::info!(error = %err, "handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!("handshake timed out");
                return None;
            }
        };
        let first = header_register.lock().ok().and_then(|mut s| s.take());
        Some((ws, first))
    }

    async fn serve(mut self, tcp: TcpStream, mut shutdown: watch::Receiver<bool>) {
        // The upgrade and the registration together must come within the handshake timeout.
        let register_by = Instant::now() + Duration::from_millis(self.config.handshake_timeout_ms);
        let Some((ws, first)) = self.upgrade(tcp).await else { return };
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
        let stopping = *shutdown.borrow();
        self.finish(stopping, closing, sink, stream).await;
    }
}
