//! The link task: owns the peer connection's event streams, trickles candidates, and moves bytes
//! between the reliable channel and the link's protocol ([`LinkProtocol`]: the open and closing
//! handshakes, framing), reporting `Open` and `Closed` exactly once.

use super::protocol::{Delivery, Goodbye, LinkProtocol};
use super::{Shared, CLOSE_STEP, FLUSH_LIMIT};
use crate::peer::{snap_negotiated, PcEvent};
use bytes::BytesMut;
use mesh_core::{CloseReason, LinkEvent, SignalBody, SignalSink};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// When the route is read after the link opens, each delay after the previous read.
const ROUTE_CHECKS: [Duration; 3] = [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(5)];
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannelEvent;
use webrtc::peer_connection::RTCPeerConnectionState;

/// The link task: owns the event queue towards the node.
pub(super) struct Task {
    shared: Arc<Shared>,
    events: mpsc::Sender<LinkEvent>,
    signals: SignalSink,
    outgoing: VecDeque<SignalBody>,
    protocol: LinkProtocol,
    max_message_bytes: usize,
}

impl Task {
    /// A task for the link behind `shared`, reporting on `events` and signalling on `signals`.
    pub(super) fn new(
        shared: Arc<Shared>,
        events: mpsc::Sender<LinkEvent>,
        signals: SignalSink,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            shared,
            events,
            signals,
            outgoing: VecDeque::new(),
            protocol: LinkProtocol::new(max_message_bytes),
            max_message_bytes,
        }
    }

    /// Drives the link until it closes, tears the connection down, then reports `Closed`.
    pub(super) async fn run(
        mut self,
        pc_events: mpsc::UnboundedReceiver<PcEvent>,
        connect_timeout: Duration,
        gather_timeout: Duration,
    ) {
        let reason = self.drive(pc_events, connect_timeout, gather_timeout).await;
        tracing::debug!(%reason, "webrtc link closing");
        self.shared.closed.store(true, Ordering::Release);
        if reason == CloseReason::Local && self.protocol.close() {
            self.say_goodbye().await;
        } else if self.protocol.peer_said_bye() {
            self.await_peer_close().await; // so our BYE_ACK leaves before the association goes
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.shared.pc.close()).await;
        self.shared.torn_down.cancel();
        let _ = tokio::time::timeout(CLOSE_STEP, self.events.send(LinkEvent::Closed(reason))).await;
    }

    /// Whether this link's descriptions negotiated SNAP (see [`snap_negotiated`]).
    async fn snap_negotiated(&self) -> bool {
        let (local, remote) = (self.shared.pc.local_description().await, self.shared.pc.remote_description().await);
        local.zip(remote).is_some_and(|(local, remote)| snap_negotiated(&local.sdp, &remote.sdp))
    }

    /// Closing handshake: BYE travels after everything sent before it on the ordered channel, so
    /// the peer's BYE_ACK proves all of it arrived (a goodbye message included). Only then does
    /// the association go. Bounded: a peer that does not answer is closed on anyway.
    async fn say_goodbye(&mut self) {
        if self.flush_controls().await.is_err() {
            return;
        }
        let read = async {
            while self.protocol.goodbye() == Some(Goodbye::Waiting) {
                match self.shared.reliable.poll().await {
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        self.protocol.on_chunk(&msg.data);
                        let _ = self.flush_controls().await; // a BYE_ACK if both close at once
                    }
                    Some(DataChannelEvent::OnClose) | None => return,
                    Some(_) => {}
                }
            }
        };
        if tokio::time::timeout(FLUSH_LIMIT, read).await.is_err() {
            tracing::debug!("peer did not acknowledge the close");
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.shared.reliable.close()).await;
    }

    /// After answering a BYE: the peer closes as soon as it reads the answer.
    async fn await_peer_close(&self) {
        self.read_until(|e| matches!(e, DataChannelEvent::OnClose)).await;
    }

    /// Reads the reliable channel, past everything else, until `wanted` accepts an event; `None`
    /// if the channel ends or [`FLUSH_LIMIT`] passes first.
    async fn read_until(&self, wanted: impl Fn(&DataChannelEvent) -> bool) -> Option<DataChannelEvent> {
        let read = async {
            while let Some(event) = self.shared.reliable.poll().await {
                if wanted(&event) {
                    return Some(event);
                }
            }
            None
        };
        tokio::time::timeout(FLUSH_LIMIT, read).await.ok().flatten()
    }

    /// Writes the control chunks the protocol asked for.
    async fn flush_controls(&mut self) -> Result<(), webrtc::error::Error> {
        while let Some(header) = self.protocol.poll_control() {
            self.shared.reliable.send(BytesMut::from(&[header][..])).await?;
        }
        Ok(())
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

    /// Runs the link until it must close. Open handshake (docs/LINK.md): a stack may drop data
    /// that arrives before it has attached its channel, so each side sends HELLO when its channel
    /// opens, resending with backoff until it hears the peer's, and answers the first HELLO it
    /// hears. `Open` is reported on hearing the peer's HELLO, or as soon as the channel opens when
    /// the descriptions negotiated SNAP: the peer then runs this stack, which keeps early data.
    async fn drive(
        &mut self,
        mut pc_events: mpsc::UnboundedReceiver<PcEvent>,
        connect_timeout: Duration,
        gather_timeout: Duration,
    ) -> CloseReason {
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let gather_deadline = tokio::time::Instant::now() + gather_timeout;
        let mut gathering = true;
        let (reliable, heartbeat) = (self.shared.reliable.clone(), self.shared.heartbeat.clone());
        let (shared, signals) = (self.shared.clone(), self.signals.clone());
        let mut heartbeat_open = true;
        let mut channel_open = false;
        // The route is read once the link opens, then again later: ICE may nominate a better pair.
        let mut route_checks = ROUTE_CHECKS.iter();
        let (mut next_route, mut route_started) = (None, false);
        loop {
            let opened = shared.opened.load(Ordering::Acquire);
            if opened && !route_started {
                route_started = true;
                next_route = route_checks.next().map(|after| tokio::time::Instant::now() + *after);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_route.unwrap_or_else(tokio::time::Instant::now)), if next_route.is_some() => {
                    if let Some(route) = super::route::selected(&shared.pc).await {
                        if let Ok(mut slot) = shared.route.lock() {
                            *slot = Some(route);
                        }
                    }
                    next_route = route_checks.next().map(|after| tokio::time::Instant::now() + *after);
                }
                _ = shared.stop.cancelled() => return self.stop_reason(),
                _ = tokio::time::sleep_until(deadline), if !opened => return CloseReason::ConnectTimeout,
                _ = tokio::time::sleep_until(gather_deadline), if gathering => {
                    gathering = false;
                    tracing::warn!(after = ?gather_timeout, "ICE gathering incomplete: a STUN/TURN server may be unreachable (the link goes on with the candidates found)");
                }
                _ = tokio::time::sleep_until(self.protocol.poll_timeout().unwrap_or(deadline)), if self.protocol.poll_timeout().is_some() => {
                    self.protocol.tick(tokio::time::Instant::now());
                    if let Err(err) = self.flush_controls().await {
                        tracing::debug!(error = %err, "hello not sent");
                    }
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
                    Some(PcEvent::IceConnected) => mesh_core::mark!("ice_connected"),
                    Some(PcEvent::State(RTCPeerConnectionState::Connected)) => {
                        mesh_core::mark!("dtls_connected");
                        shared.nudge().await
                    }
                    Some(PcEvent::State(RTCPeerConnectionState::Failed)) => {
                        return CloseReason::Failed("ICE/DTLS connection failed".into())
                    }
                    Some(PcEvent::State(RTCPeerConnectionState::Closed)) => return CloseReason::Remote,
                    Some(PcEvent::State(state)) => tracing::trace!(?state, "connection state"),
                    Some(PcEvent::GatheringComplete) => gathering = false,
                    None => return CloseReason::Failed("peer connection ended".into()),
                },
                event = reliable.poll() => match event {
                    Some(DataChannelEvent::OnOpen) if !channel_open => {
                        mesh_core::mark!("sctp_open");
                        channel_open = true;
                        let snap = self.snap_negotiated().await;
                        tracing::debug!(snap, "reliable channel open");
                        self.protocol.channel_open(tokio::time::Instant::now(), snap);
                        if let Err(reason) = self.pump().await {
                            return reason;
                        }
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

    /// One chunk off the reliable channel, through the protocol: what it asks is written and
    /// delivered. `Err` when the link must close (the peer said BYE, or the node stopped).
    async fn on_chunk(&mut self, data: &[u8]) -> Result<(), CloseReason> {
        self.protocol.on_chunk(data);
        self.pump().await
    }

    /// Carries out what the protocol asks: control chunks are written, events delivered. `Err`
    /// when the link must close (the peer said BYE, or the node stopped).
    async fn pump(&mut self) -> Result<(), CloseReason> {
        if let Err(err) = self.flush_controls().await {
            tracing::debug!(error = %err, "control chunk not sent");
        }
        while let Some(delivery) = self.protocol.poll_delivery() {
            match delivery {
                Delivery::Open => {
                    self.shared.opened.store(true, Ordering::Release);
                    self.deliver(LinkEvent::Open).await?;
                }
                Delivery::Message(message) => self.deliver(LinkEvent::Message(message)).await?,
                Delivery::PeerClosed => return Err(CloseReason::Remote),
            }
        }
        Ok(())
    }
}
