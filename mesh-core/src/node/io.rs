//! [`Io`]: carries the state machine's outputs out (the node's [`Drive`]). Transmits go to the
//! link's writer, link operations to the transport (set-ups in [`Starting`], running attempts in
//! [`Session`]s), signaling operations to the chain, events to the application. It owns every
//! task it starts and ends them in [`Io::shutdown`].

use super::session::{Outgoing, Plumbing, Session};
use super::starting::{self, Started, Starting};
use super::{Shared, Snapshot};
use crate::chain::SignalerChain;
use crate::data::DataPlane;
use crate::id::PeerId;
use crate::query::RegistryPage;
use crate::signal::{SessionId, Signal, SignalBody};
use crate::signaler::{RelayOutcome, Signaler};
use crate::state::{Drive, LinkOp, MeshEvent, MeshState, SignalingOp, Transmit};
use crate::transport::{LinkEvent, Transport};
use crate::wire::MeshMessage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// The relay signaler's request to send a signal by relay (see [`crate::MeshAccess::relay`]).
pub(super) struct RelayRequest {
    pub(super) id: u64,
    pub(super) via: PeerId,
    pub(super) to: PeerId,
    pub(super) signal: Signal,
    pub(super) reply: oneshot::Sender<RelayOutcome>,
}

/// What the driver does on the state machine's behalf.
pub(super) struct Io {
    transport: Arc<dyn Transport>,
    pub(super) chain: Arc<SignalerChain>,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<MeshEvent>,
    snapshot: watch::Sender<Snapshot>,
    sessions: HashMap<SessionId, Session>,
    /// Attempts whose transport is still being set up.
    pub(super) starting: Starting,
    link_tx: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
    /// Events of every running attempt, tagged with it.
    pub(super) link_events: mpsc::Receiver<(PeerId, SessionId, LinkEvent)>,
    /// Short sends, closes and announcements.
    pub(super) background: JoinSet<()>,
    registry_waiters: HashMap<u64, oneshot::Sender<RegistryPage>>,
    next_query: u64,
    relay_waiters: HashMap<u64, oneshot::Sender<RelayOutcome>>,
    /// Set by a leave command: answered once the node has stopped.
    pub(super) leave_done: Option<oneshot::Sender<()>>,
    /// The data plane, told which link the state machine uses for each peer.
    data: DataPlane,
}

impl Io {
    pub(super) fn new(
        transport: Arc<dyn Transport>,
        chain: Arc<SignalerChain>,
        shared: Arc<Mutex<Shared>>,
        events: broadcast::Sender<MeshEvent>,
        snapshot: watch::Sender<Snapshot>,
        data: DataPlane,
    ) -> Self {
        let (link_tx, link_events) = mpsc::channel(1024);
        Self {
            transport,
            chain,
            shared,
            events,
            snapshot,
            sessions: HashMap::new(),
            starting: Starting::default(),
            link_tx,
            link_events,
            background: JoinSet::new(),
            registry_waiters: HashMap::new(),
            next_query: 0,
            relay_waiters: HashMap::new(),
            leave_done: None,
            data,
        }
    }

    /// Ends every task: links closed (bounded in time), the chain stopped.
    pub(super) async fn shutdown(mut self) {
        let closing: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in closing {
            self.background.spawn(s.close());
        }
        let chain = self.chain.clone();
        self.background.spawn(async move { chain.stop().await });
        let drain = async { while self.background.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(3), drain).await.is_err() {
            tracing::warn!("shutdown: background work did not finish in 3 s; aborting it");
        }
        self.background.shutdown().await;
        self.starting.shutdown().await;
        self.transport.shutdown().await;
        self.data.stop();
        tracing::info!("node stopped");
        if let Some(done) = self.leave_done.take() {
            let _ = done.send(());
        }
    }

    /// A registry query's answer goes to `reply`; returns the query's id.
    pub(super) fn wait_registry(&mut self, reply: oneshot::Sender<RegistryPage>) -> u64 {
        self.registry_waiters.retain(|_, tx| !tx.is_closed()); // askers that gave up
        self.next_query += 1;
        self.registry_waiters.insert(self.next_query, reply);
        self.next_query
    }

    /// The outcome of relay envelope `id` goes to `reply`.
    pub(super) fn wait_relay(&mut self, id: u64, reply: oneshot::Sender<RelayOutcome>) {
        self.relay_waiters.retain(|_, tx| !tx.is_closed()); // signalers that gave up
        self.relay_waiters.insert(id, reply);
    }

    /// Marks `session` open; false if it is not a running attempt.
    pub(super) fn opened(&mut self, session: &SessionId) -> bool {
        self.sessions.get_mut(session).map(|s| s.opened = true).is_some()
    }

    /// Forgets the closed `session`; false if it was not a running attempt.
    pub(super) fn closed(&mut self, session: &SessionId) -> bool {
        self.sessions.remove(session).is_some()
    }

    /// Starts setting up an attempt (dialing, or answering `offer`) without waiting for it.
    fn start_session(&mut self, order: crate::PathOrder, peer: PeerId, session: SessionId, offer: Option<SignalBody>) {
        let transport = self.transport.clone();
        let (sink, signals_out) = mpsc::channel(64);
        // The transport's own tasks inherit this span, so its marks name the peer and session.
        let span = crate::timeline::link_span(&peer, &session);
        let to = peer.clone();
        let attempt = async move {
            match offer {
                None => transport.dial(&to, sink).await,
                Some(offer) => transport.accept(&to, offer, sink).await,
            }
        };
        self.starting.start(peer, session, (signals_out, order), span, attempt);
    }

    /// An attempt's set-up finished: run it, or close it if it was abandoned meanwhile. Returns
    /// the attempt and why when it failed (the state machine must hear that it closed).
    pub(super) fn on_started(&mut self, started: Started) -> Option<(PeerId, SessionId, String)> {
        let Started { peer, session, result } = started;
        match result {
            Ok((handle, signals_out, span, early)) => {
                let plumbing =
                    Plumbing { chain: self.chain.clone(), events: self.link_tx.clone(), data: self.data.clone() };
                let s = Session::spawn(peer, session.clone(), handle, signals_out, plumbing, span);
                for body in early {
                    if s.signals_in.try_send(body).is_err() {
                        tracing::warn!(%session, "signal queue full; signal dropped");
                    }
                }
                self.sessions.insert(session, s);
                None
            }
            Err(starting::Failed::Cancelled(Some(link))) => {
                self.background.spawn(starting::discard(link));
                None
            }
            Err(starting::Failed::Cancelled(None)) => None,
            Err(starting::Failed::Error(reason)) => Some((peer, session, reason)),
        }
    }

    fn send_abort(&mut self, peer: PeerId, session: SessionId, reason: String) {
        let chain = self.chain.clone();
        self.background.spawn(async move {
            let _ = chain.send(&peer, Signal::new(session, SignalBody::Abort { reason })).await;
        });
    }

    /// Publishes what handles and signalers read: the snapshot, the admin and the linked peers.
    pub(super) fn publish(&mut self, state: &MeshState) {
        let health = state.health_record();
        let linked = state.linked_peers();
        let routes = linked
            .iter()
            .filter_map(|p| state.link_session(p).and_then(|s| self.sessions.get(s)))
            .filter_map(|s| s.link.route().map(|r| (s.peer.clone(), r)))
            .collect();
        self.data.set_links(linked.iter().map(|p| (p, state.link_session(p))));
        let workers = state.room_state();
        if let Ok(mut shared) = self.shared.lock() {
            shared.admin = health.admin.clone();
            shared.linked_workers = linked.iter().filter(|p| workers.get(p).is_some()).cloned().collect();
            shared.linked = linked;
        }
        let snapshot = Snapshot { health, counters: state.counters(), signals: self.chain.stats().snapshot(), routes };
        self.snapshot.send_if_modified(|current| {
            let changed = *current != snapshot;
            *current = snapshot;
            changed
        });
    }
}

impl Drive for Io {
    fn transmit(&mut self, t: Transmit) {
        let Transmit { to, session, msg } = t;
        let Some(s) = self.sessions.get(&session) else {
            return tracing::debug!(%to, %session, kind = msg.kind(), "link gone; mesh message not sent");
        };
        let bytes = msg.encode().into();
        let out = match msg {
            MeshMessage::Heartbeat { .. } => Outgoing::Unordered(bytes),
            _ => Outgoing::Reliable(bytes),
        };
        if s.writer.try_send(out).is_err() {
            tracing::warn!(%to, kind = msg.kind(), "writer queue full or closed; mesh message dropped");
        }
    }

    fn link_op(&mut self, op: LinkOp) {
        match op {
            LinkOp::Dial { peer, session, order } => self.start_session(order, peer, session, None),
            LinkOp::Accept { peer, session, offer, order } => self.start_session(order, peer, session, Some(offer)),
            LinkOp::Reject { peer, session, reason } => {
                crate::mark!("reject", %peer, %session, %reason);
                self.send_abort(peer, session, reason);
            }
            LinkOp::Close { peer, session, reason } => {
                tracing::debug!(%peer, %session, %reason, "closing link");
                if let Some(s) = self.sessions.remove(&session) {
                    if !s.opened {
                        self.send_abort(peer, session, reason);
                    }
                    self.background.spawn(s.close());
                } else if self.starting.cancel(&session) {
                    self.send_abort(peer, session, reason);
                }
            }
            LinkOp::Signal { peer, session, body } => match self.sessions.get(&session) {
                Some(s) if s.peer == peer => {
                    if s.signals_in.try_send(body).is_err() {
                        tracing::warn!(%peer, %session, "signal queue full; signal dropped");
                    }
                }
                None if self.starting.hold(&session, &peer, body) => {}
                _ => tracing::debug!(%peer, %session, "signal for an attempt that is gone; dropped"),
            },
        }
    }

    fn signaling(&mut self, op: SignalingOp) {
        match op {
            SignalingOp::Announce(what) => {
                let chain = self.chain.clone();
                self.background.spawn(async move {
                    let _ = chain.announce(what).await;
                });
            }
            SignalingOp::RelayAnswered { id, outcome } => {
                if let Some(tx) = self.relay_waiters.remove(&id) {
                    let _ = tx.send(outcome);
                }
            }
        }
    }

    fn event(&mut self, event: MeshEvent) {
        match &event {
            MeshEvent::Health(h) => {
                // Signals per path as sent/failed/received, e.g. "relay 6/0/6 ws 2/0/2".
                let signals = self.chain.stats().snapshot().iter().fold(String::new(), |mut out, (path, c)| {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out += &format!("{path} {}/{}/{}", c.sent, c.failed, c.received);
                    out
                });
                tracing::info!(role = h.role.as_str(), admin = ?h.admin.as_ref().map(|a| a.as_str()), links_up = h.links_up, links_expected = h.links_expected, status = h.status(), %signals, "health")
            }
            MeshEvent::Registry { id, page } => {
                if let Some(tx) = self.registry_waiters.remove(id) {
                    let _ = tx.send(page.clone());
                }
            }
            MeshEvent::LinkUp { peer, reconnect } => tracing::info!(%peer, reconnect, "link up"),
            _ => {}
        }
        let _ = self.events.send(event);
    }
}
