//! One WebRTC link: the [`Link`] handle the node sends on, and the task that owns the peer
//! connection, reads both channels, trickles candidates and reports `Open`/`Closed` exactly once.

use crate::chunk::{self, Reassembled, Reassembler};
use crate::peer::{PcEvent, Peer};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use mesh_core::{CloseReason, Link, LinkEvent, LinkHandle, SignalBody, SignalSink, TransportError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription};

/// Queue of link events towards the node.
const EVENT_QUEUE: usize = 16;
/// Remote candidates held until the remote description arrives.
const MAX_EARLY_CANDIDATES: usize = 64;
/// Bound on each step of closing.
const CLOSE_STEP: Duration = Duration::from_secs(2);
/// Longest wait for the peer to acknowledge a local close (and so the data sent before it).
const FLUSH_LIMIT: Duration = Duration::from_millis(500);
/// First resend of the open handshake; doubles up to [`HELLO_MAX`].
const HELLO_FIRST: Duration = Duration::from_millis(20);
/// Longest pause between handshake resends.
const HELLO_MAX: Duration = Duration::from_millis(320);

/// Remote description state: candidates that arrive before it are held, then applied.
#[derive(Default)]
struct Remote {
    described: bool,
    early: Vec<RTCIceCandidateInit>,
}

/// State shared by the handle and the link task.
struct Shared {
    pc: Arc<dyn PeerConnection>,
    reliable: Arc<dyn DataChannel>,
    heartbeat: Arc<dyn DataChannel>,
    heartbeat_channel: bool,
    remote: Mutex<Remote>,
    /// Held for a whole message so its chunks stay contiguous.
    send_lock: Mutex<()>,
    opened: AtomicBool,
    closed: AtomicBool,
    /// Set by `close`, by dropping the handle, or by a peer's `abort`; the task then tears down.
    stop: CancellationToken,
    stop_reason: std::sync::Mutex<Option<CloseReason>>,
    /// Fired once the peer connection is closed.
    torn_down: CancellationToken,
}

impl Shared {
    fn request_stop(&self, reason: CloseReason) {
        if let Ok(mut slot) = self.stop_reason.lock() {
            slot.get_or_insert(reason);
        }
        self.stop.cancel();
    }

    async fn add_candidate(&self, init: RTCIceCandidateInit) -> Result<(), TransportError> {
        self.pc.add_ice_candidate(init).await.map_err(|e| TransportError::BadSignal(format!("candidate: {e}")))?;
        self.nudge().await; // check the new pair now, not on the driver's next (up to 1 s) tick
        Ok(())
    }

    /// Wakes the connection's driver so that work queued by something other than a packet (a new
    /// remote candidate, the SCTP INIT queued when DTLS completes) happens now rather than on the
    /// driver's next timer tick, which in webrtc 0.21.1 can be 200 ms to 1 s away.
    async fn nudge(&self) {
        let _ = self.heartbeat.set_buffered_amount_low_threshold(0).await;
    }
}

/// The [`Link`] over one peer connection. Dropping the last handle closes it.
pub struct WebRtcLink {
    shared: Arc<Shared>,
}

/// Everything [`spawn`] needs besides the peer connection.
pub(crate) struct LinkSetup {
    pub(crate) signals: SignalSink,
    pub(crate) described: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) heartbeat_channel: bool,
}

/// Starts the link task for `peer` and returns the node's handle.
pub(crate) fn spawn(peer: Peer, setup: LinkSetup) -> LinkHandle {
    let Peer { pc, reliable, heartbeat, events: pc_events } = peer;
    let shared = Arc::new(Shared {
        pc,
        reliable,
        heartbeat,
        heartbeat_channel: setup.heartbeat_channel,
        remote: Mutex::new(Remote { described: setup.described, early: Vec::new() }),
        send_lock: Mutex::new(()),
        opened: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        stop: CancellationToken::new(),
        stop_reason: std::sync::Mutex::new(None),
        torn_down: CancellationToken::new(),
    });
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let task = Task {
        shared: shared.clone(),
        events: events_tx,
        signals: setup.signals,
        outgoing: VecDeque::new(),
        reassembler: Reassembler::new(setup.max_message_bytes),
        max_message_bytes: setup.max_message_bytes,
        peer_said_bye: false,
    };
    tokio::spawn(task.run(pc_events, setup.connect_timeout));
    LinkHandle { link: Arc::new(WebRtcLink { shared }), events }
}

impl Drop for WebRtcLink {
    fn drop(&mut self) {
        self.shared.request_stop(CloseReason::Local);
    }
}

#[async_trait]
impl Link for WebRtcLink {
    async fn apply_signal(&self, body: SignalBody) -> Result<(), TransportError> {
        match body {
            SignalBody::Answer { sdp } => {
                let mut remote = self.shared.remote.lock().await;
                if remote.described {
                    return Err(TransportError::BadSignal("a second answer for one attempt".into()));
                }
                let desc = RTCSessionDescription::answer(sdp).map_err(|e| TransportError::BadSignal(e.to_string()))?;
                self.shared
                    .pc
                    .set_remote_description(desc)
                    .await
                    .map_err(|e| TransportError::BadSignal(format!("answer: {e}")))?;
                remote.described = true;
                for init in std::mem::take(&mut remote.early) {
                    if let Err(err) = self.shared.add_candidate(init).await {
                        tracing::debug!(error = %err, "early candidate refused");
                    }
                }
                Ok(())
            }
            SignalBody::Candidate { candidate } => {
                let init: RTCIceCandidateInit = serde_json::from_str(&candidate)
                    .map_err(|e| TransportError::BadSignal(format!("candidate is not ICE candidate JSON: {e}")))?;
                let mut remote = self.shared.remote.lock().await;
                if remote.described {
                    drop(remote);
                    return self.shared.add_candidate(init).await;
                }
                if remote.early.len() >= MAX_EARLY_CANDIDATES {
                    return Err(TransportError::BadSignal("too many candidates before the answer".into()));
                }
                remote.early.push(init);
                Ok(())
            }
            SignalBody::Abort { reason } => {
                self.shared.request_stop(CloseReason::Failed(format!("aborted by peer: {reason}")));
                Ok(())
            }
            SignalBody::Offer { .. } => Err(TransportError::BadSignal("an offer on an existing attempt".into())),
        }
    }

    async fn send(&self, data: Bytes) -> Result<(), TransportError> {
        if !self.shared.opened.load(Ordering::Acquire) || self.shared.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let _whole_message = self.shared.send_lock.lock().await;
        for piece in chunk::split(&data) {
            self.shared.reliable.send(piece).await.map_err(|_| TransportError::Closed)?;
        }
        Ok(())
    }

    async fn send_unordered(&self, data: Bytes) -> Result<(), TransportError> {
        if !self.shared.heartbeat_channel || data.len() > chunk::CHUNK_PAYLOAD {
            return self.send(data).await;
        }
        if !self.shared.opened.load(Ordering::Acquire) || self.shared.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        match self.shared.heartbeat.try_send(BytesMut::from(&data[..])).await {
            Ok(()) => Ok(()),
            Err(webrtc::error::Error::ErrSendBufferFull) => Ok(()), // loss-tolerant by contract
            Err(_) => self.send(data).await,
        }
    }

    async fn close(&self) {
        self.shared.request_stop(CloseReason::Local);
        let _ = tokio::time::timeout(3 * CLOSE_STEP, self.shared.torn_down.cancelled()).await;
    }
}

/// The link task: owns the event queue towards the node.
struct Task {
    shared: Arc<Shared>,
    events: mpsc::Sender<LinkEvent>,
    signals: SignalSink,
    outgoing: VecDeque<SignalBody>,
    reassembler: Reassembler,
    max_message_bytes: usize,
    /// The peer closed with the BYE handshake (we answered it).
    peer_said_bye: bool,
}

impl Task {
    async fn run(mut self, pc_events: mpsc::UnboundedReceiver<PcEvent>, connect_timeout: Duration) {
        let reason = self.drive(pc_events, connect_timeout).await;
        tracing::debug!(%reason, "webrtc link closing");
        self.shared.closed.store(true, Ordering::Release);
        if reason == CloseReason::Local && self.shared.opened.load(Ordering::Acquire) {
            self.say_goodbye().await;
        } else if self.peer_said_bye {
            self.await_peer_close().await; // so our BYE_ACK leaves before the association goes
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.shared.pc.close()).await;
        self.shared.torn_down.cancel();
        let _ = tokio::time::timeout(CLOSE_STEP, self.events.send(LinkEvent::Closed(reason))).await;
    }

    /// Closing handshake: BYE travels after everything sent before it on the ordered channel, so
    /// the peer's BYE_ACK proves all of it arrived (a goodbye message included). Only then does
    /// the association go. Bounded: a peer that does not answer is closed on anyway.
    async fn say_goodbye(&mut self) {
        if self.send_control(chunk::BYE).await.is_err() {
            return;
        }
        let acked = async {
            while let Some(event) = self.shared.reliable.poll().await {
                match event {
                    DataChannelEvent::OnMessage(msg) if msg.data.first() == Some(&chunk::BYE_ACK) => return,
                    DataChannelEvent::OnMessage(msg) if msg.data.first() == Some(&chunk::BYE) => {
                        let _ = self.send_control(chunk::BYE_ACK).await; // both closing at once
                        return;
                    }
                    DataChannelEvent::OnClose => return,
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(FLUSH_LIMIT, acked).await.is_err() {
            tracing::debug!("peer did not acknowledge the close");
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.shared.reliable.close()).await;
    }

    /// After answering a BYE: the peer closes as soon as it reads the answer.
    async fn await_peer_close(&self) {
        let closed = async {
            while let Some(event) = self.shared.reliable.poll().await {
                if matches!(event, DataChannelEvent::OnClose) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(FLUSH_LIMIT, closed).await;
    }

    async fn send_control(&self, header: u8) -> Result<(), webrtc::error::Error> {
        self.shared.reliable.send(BytesMut::from(&[header][..])).await
    }

    fn stop_reason(&self) -> CloseReason {
        self.shared.stop_reason.lock().ok().and_then(|r| r.clone()).unwrap_or(CloseReason::Local)
    }

    /// Hands one event to the node, giving up if the link is told to stop meanwhile.
    async fn deliver(&self, event: LinkEvent) -> Result<(), CloseReason> {
        tokio::select! {
            sent = self.events.send(event) => sent.map_err(|_| CloseReason::Local),
            _ = self.shared.stop.cancelled() => Err(self.stop_reason()),
        }
    }

    /// Runs the link until it must close. Open handshake: the webrtc crate can drop data that
    /// arrives in the same burst as the SCTP handshake (before the receiving side has attached its
    /// channel), so each side sends HELLO when its channel opens, resending with backoff until it
    /// hears the peer's, and answers the first HELLO it hears. `Open` is reported on hearing the
    /// peer's HELLO: from then on the peer's channel is attached and nothing sent is lost.
    async fn drive(
        &mut self,
        mut pc_events: mpsc::UnboundedReceiver<PcEvent>,
        connect_timeout: Duration,
    ) -> CloseReason {
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let (reliable, heartbeat) = (self.shared.reliable.clone(), self.shared.heartbeat.clone());
        let (shared, signals) = (self.shared.clone(), self.signals.clone());
        let mut heartbeat_open = true;
        let mut channel_open = false;
        let (mut next_hello, mut hello_gap) = (tokio::time::Instant::now(), HELLO_FIRST);
        loop {
            let opened = shared.opened.load(Ordering::Acquire);
            tokio::select! {
                _ = shared.stop.cancelled() => return self.stop_reason(),
                _ = tokio::time::sleep_until(deadline), if !opened => return CloseReason::ConnectTimeout,
                _ = tokio::time::sleep_until(next_hello), if channel_open && !opened => {
                    self.send_hello().await;
                    next_hello += hello_gap;
                    hello_gap = (hello_gap * 2).min(HELLO_MAX);
                }
                permit = signals.reserve(), if !self.outgoing.is_empty() => match (permit, self.outgoing.pop_front()) {
                    (Ok(permit), Some(body)) => permit.send(body),
                    _ => self.outgoing.clear(), // the node stopped listening for this attempt's signals
                },
                event = pc_events.recv() => match event {
                    Some(PcEvent::Candidate(init)) => match serde_json::to_string(&init) {
                        Ok(candidate) => self.outgoing.push_back(SignalBody::Candidate { candidate }),
                        Err(err) => tracing::debug!(error = %err, "candidate not encodable"),
                    },
                    Some(PcEvent::State(RTCPeerConnectionState::Connected)) => shared.nudge().await,
                    Some(PcEvent::State(RTCPeerConnectionState::Failed)) => {
                        return CloseReason::Failed("ICE/DTLS connection failed".into())
                    }
                    Some(PcEvent::State(RTCPeerConnectionState::Closed)) => return CloseReason::Remote,
                    Some(PcEvent::State(state)) => tracing::trace!(?state, "connection state"),
                    None => return CloseReason::Failed("peer connection ended".into()),
                },
                event = reliable.poll() => match event {
                    Some(DataChannelEvent::OnOpen) if !channel_open => {
                        channel_open = true;
                        next_hello = tokio::time::Instant::now();
                    }
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        if let Err(reason) = self.on_chunk(&msg.data).await {
                            return reason;
                        }
                    }
                    Some(DataChannelEvent::OnClose) | None => {
                        return if opened { CloseReason::Remote } else { CloseReason::Failed("channel closed before opening".into()) }
                    }
                    Some(other) => tracing::trace!(?other, "reliable channel event"),
                },
                event = heartbeat.poll(), if heartbeat_open => match event {
                    Some(DataChannelEvent::OnMessage(msg)) if opened && msg.data.len() <= self.max_message_bytes => {
                        // Loss-tolerant: a full queue drops the heartbeat rather than stall this loop.
                        let _ = self.events.try_send(LinkEvent::Message(msg.data.freeze()));
                    }
                    Some(DataChannelEvent::OnClose) | None => heartbeat_open = false,
                    Some(_) => {}
                },
            }
        }
    }

    async fn send_hello(&self) {
        if let Err(err) = self.send_control(chunk::HELLO).await {
            tracing::debug!(error = %err, "hello not sent");
        }
    }

    async fn on_chunk(&mut self, data: &[u8]) -> Result<(), CloseReason> {
        match self.reassembler.push(data) {
            Reassembled::Partial => Ok(()),
            Reassembled::Hello if self.shared.opened.load(Ordering::Acquire) => Ok(()),
            Reassembled::Bye => {
                let _ = self.send_control(chunk::BYE_ACK).await;
                self.peer_said_bye = true;
                Err(CloseReason::Remote)
            }
            Reassembled::ByeAck => Ok(()),
            Reassembled::Hello => {
                self.send_hello().await; // the peer may not have heard ours yet
                self.shared.opened.store(true, Ordering::Release);
                self.deliver(LinkEvent::Open).await
            }
            Reassembled::Message(_) if !self.shared.opened.load(Ordering::Acquire) => {
                tracing::warn!("peer sent data before the open handshake; dropped");
                Ok(())
            }
            Reassembled::Message(message) => self.deliver(LinkEvent::Message(message)).await,
            Reassembled::TooLarge => {
                tracing::warn!(limit = self.max_message_bytes, "peer sent an oversized message; dropped");
                Ok(())
            }
            Reassembled::Malformed => {
                tracing::warn!("peer sent a chunk without a valid header; dropped");
                Ok(())
            }
        }
    }
}
