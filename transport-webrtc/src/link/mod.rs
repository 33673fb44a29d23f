//! One WebRTC link: the [`Link`] handle the node sends on, the state it shares with the link's
//! task, and [`spawn`], which starts that task ([`task`]).

mod protocol;
mod route;
mod task;

use crate::chunk;
use crate::peer::Peer;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use mesh_core::{CloseReason, Link, LinkHandle, SignalBody, SignalSink, TransportError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use task::Task;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

/// How long bulk data naps while the send buffer is above its high-water mark.
const BULK_NAP: Duration = Duration::from_millis(1);
/// Queue of link events towards the node.
const EVENT_QUEUE: usize = 16;
/// Remote candidates held until the remote description arrives.
const MAX_EARLY_CANDIDATES: usize = 64;
/// Bound on each step of closing.
const CLOSE_STEP: Duration = Duration::from_secs(2);
/// Longest wait for the peer to acknowledge a local close (and so the data sent before it).
const FLUSH_LIMIT: Duration = Duration::from_millis(500);

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
    /// Held by the one bulk message that may wait for `send_lock`: the others queue here, so
    /// mesh control waits behind at most one bulk message.
    bulk_lock: Mutex<()>,
    bulk_high_water: usize,
    opened: AtomicBool,
    closed: AtomicBool,
    /// Set by `close`, by dropping the handle, or by a peer's `abort`; the task then tears down.
    stop: CancellationToken,
    stop_reason: std::sync::Mutex<Option<CloseReason>>,
    /// Fired once the peer connection is closed.
    torn_down: CancellationToken,
    /// The selected candidate pair's types (`local/remote`), once known.
    route: std::sync::Mutex<Option<String>>,
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
    pub(crate) gather_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) heartbeat_channel: bool,
    /// Bulk data waits while the channel holds more than this unacknowledged (control need not).
    pub(crate) bulk_high_water: usize,
}

/// Starts the link task for `peer`, owned by `owner`, and returns the node's handle.
pub(crate) fn spawn(peer: Peer, setup: LinkSetup, owner: &tokio_util::task::TaskTracker) -> LinkHandle {
    let Peer { pc, reliable, heartbeat, events: pc_events } = peer;
    let shared = Arc::new(Shared {
        pc,
        reliable,
        heartbeat,
        heartbeat_channel: setup.heartbeat_channel,
        remote: Mutex::new(Remote { described: setup.described, early: Vec::new() }),
        send_lock: Mutex::new(()),
        bulk_lock: Mutex::new(()),
        bulk_high_water: setup.bulk_high_water,
        opened: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        stop: CancellationToken::new(),
        stop_reason: std::sync::Mutex::new(None),
        torn_down: CancellationToken::new(),
        route: std::sync::Mutex::new(None),
    });
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let task = Task::new(shared.clone(), events_tx, setup.signals, setup.max_message_bytes);
    // In the caller's span (the node's `link` span), so the task's timeline marks name the link.
    let run = task.run(pc_events, setup.connect_timeout, setup.gather_timeout);
    owner.spawn(tracing::Instrument::in_current_span(run));
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

    async fn send_bulk(&self, data: Bytes) -> Result<(), TransportError> {
        let _one_at_a_time = self.shared.bulk_lock.lock().await;
        // Leave the rest of the send buffer to mesh control: wait (polling, bounded by the
        // buffer draining) while the channel holds more than the bulk high-water mark.
        while self.shared.reliable.outstanding_bytes().await.unwrap_or(0) > self.shared.bulk_high_water {
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(TransportError::Closed);
            }
            tokio::time::sleep(BULK_NAP).await;
        }
        self.send(data).await
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

    fn route(&self) -> Option<String> {
        self.shared.route.lock().ok().and_then(|r| r.clone())
    }

    async fn close(&self) {
        self.shared.request_stop(CloseReason::Local);
        let _ = tokio::time::timeout(3 * CLOSE_STEP, self.shared.torn_down.cancelled()).await;
    }
}
