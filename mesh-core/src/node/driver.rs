//! The driver loop: feeds events into the state machine and carries its actions out.
//!
//! One task, one `select!`: signaling inbox, link events, user commands, and the state machine's
//! next deadline. Everything slow (signal sends, closes, announcements) runs in tasks owned here,
//! so the loop never waits on the network.

use super::session::{Outgoing, Session};
use super::starting::{self, Started, Starting};
use super::{Command, Shared, Snapshot};
use crate::chain::SignalerChain;
use crate::id::PeerId;
use crate::query::RegistryPage;
use crate::signal::{SessionId, Signal, SignalBody};
use crate::signaler::{Inbound, RelayOutcome, Signaler, SignalingEvent};
use crate::state::{Action, Event, MeshEvent, MeshState};
use crate::transport::{LinkEvent, Transport};
use crate::wire::MeshMessage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Offers waiting for the state machine's decision; more are refused (flood guard).
const MAX_PENDING_OFFERS: usize = 64;

pub(super) struct Parts {
    pub(super) state: MeshState,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) chain: Arc<SignalerChain>,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) inbox_tx: mpsc::Sender<Inbound>,
    pub(super) inbox_rx: mpsc::Receiver<Inbound>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: broadcast::Sender<MeshEvent>,
    pub(super) snapshot: watch::Sender<Snapshot>,
    pub(super) max_message_bytes: usize,
}

pub(super) struct Driver {
    p: Parts,
    sessions: HashMap<SessionId, Session>,
    /// Attempts whose transport is still being set up.
    starting: Starting,
    offers: HashMap<SessionId, (PeerId, SignalBody)>,
    link_tx: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
    link_rx: mpsc::Receiver<(PeerId, SessionId, LinkEvent)>,
    background: JoinSet<()>,
    registry_waiters: HashMap<u64, oneshot::Sender<RegistryPage>>,
    next_query: u64,
    leave_done: Option<oneshot::Sender<()>>,
    left: bool,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(super) fn new(p: Parts) -> Self {
        let (link_tx, link_rx) = mpsc::channel(1024);
        Self {
            p,
            sessions: HashMap::new(),
            starting: Starting::default(),
            offers: HashMap::new(),
            link_tx,
            link_rx,
            background: JoinSet::new(),
            registry_waiters: HashMap::new(),
            next_query: 0,
            leave_done: None,
            left: false,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let deadline = self.p.state.next_deadline().map(tokio::time::Instant::from_std);
            let soonest = tokio::time::Instant::now() + Duration::from_millis(1); // never a busy loop
            let deadline =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1)).max(soonest);
            tokio::select! {
                Some(inbound) = self.p.inbox_rx.recv() => self.on_inbound(inbound),
                Some((peer, session, event)) = self.link_rx.recv() => self.on_link_event(peer, session, event),
                command = self.p.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => self.p.state.handle(now(), Event::Leave), // the handle was dropped
                },
                Some(_) = self.background.join_next(), if !self.background.is_empty() => {}
                Some(started) = self.starting.next(), if !self.starting.is_empty() => self.on_started(started),
                _ = tokio::time::sleep_until(deadline) => self.p.state.handle(now(), Event::Tick),
            }
            self.carry_out().await;
            self.publish();
            if self.left {
                break;
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(mut self) {
        let closing: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in closing {
            self.background.spawn(s.close());
        }
        let chain = self.p.chain.clone();
        self.background.spawn(async move { chain.stop().await });
        let drain = async { while self.background.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(3), drain).await.is_err() {
            tracing::warn!("shutdown: background work did not finish in 3 s; aborting it");
        }
        self.background.shutdown().await;
        tracing::info!("node stopped");
        if let Some(done) = self.leave_done.take() {
            let _ = done.send(());
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let now = now();
        match inbound.event {
            SignalingEvent::Registered { members, admin } => {
                crate::mark!("registered", path = inbound.path, members = members.len());
                self.p.state.handle(now, Event::Registered { members, admin })
            }
            SignalingEvent::PeerJoined(member) => self.p.state.handle(now, Event::PeerJoined(member)),
            SignalingEvent::PeerLeft(peer) => self.p.state.handle(now, Event::PeerLeft(peer)),
            SignalingEvent::Admin(peer) => self.p.state.handle(now, Event::AdminAnnounced(peer)),
            SignalingEvent::Disconnected => tracing::info!(path = inbound.path, "signaling path disconnected"),
            SignalingEvent::Signal { from, signal, key } => {
                self.p.chain.stats().received(inbound.path);
                // Relayed signals were checked by the state machine on the relay's link.
                if inbound.path != "relay" && !self.p.state.accepts_signal(&from, &signal, None, key.as_deref()) {
                    return;
                }
                let (kind, session) = (signal.body.kind(), &signal.session);
                crate::mark!("signal_in", peer = %from, %session, kind, path = inbound.path);
                self.on_signal(now, from, signal);
            }
        }
    }

    fn on_signal(&mut self, now: Instant, from: PeerId, signal: Signal) {
        let me = self.p.state.me().clone();
        let Signal { session, body, .. } = signal;
        if session.offerer != from && session.offerer != me {
            tracing::warn!(%from, %session, "signal for a session between other peers; dropped");
            return;
        }
        match body {
            SignalBody::Offer { .. } if session.offerer == from => {
                let known = self.sessions.contains_key(&session) || self.starting.contains(&session);
                if self.offers.len() >= MAX_PENDING_OFFERS || known {
                    tracing::warn!(%from, %session, "offer dropped (duplicate or too many pending)");
                    return;
                }
                self.offers.insert(session.clone(), (from.clone(), body));
                self.p.state.handle(now, Event::OfferReceived { from, session });
            }
            SignalBody::Abort { .. } => {
                self.offers.remove(&session);
                self.p.state.handle(now, Event::SessionAborted { from, session });
            }
            body => {
                if matches!(body, SignalBody::Answer { .. }) && session.offerer == me {
                    let event = Event::AnswerReceived { from: from.clone(), session: session.clone() };
                    self.p.state.handle(now, event);
                }
                self.hand_to_session(from, session, body)
            }
        }
    }

    /// Hands a signal to its attempt (running, or still starting).
    fn hand_to_session(&mut self, from: PeerId, session: SessionId, body: SignalBody) {
        match self.sessions.get(&session) {
            Some(s) if s.peer == from => {
                if s.signals_in.try_send(body).is_err() {
                    tracing::warn!(%from, %session, "signal queue full; signal dropped");
                }
            }
            None if self.starting.hold(&session, &from, body) => {}
            _ => tracing::debug!(%from, %session, "signal for an unknown session; dropped"),
        }
    }

    fn on_link_event(&mut self, peer: PeerId, session: SessionId, event: LinkEvent) {
        let now = now();
        match event {
            LinkEvent::Open => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    crate::mark!("link_open", %peer, %session);
                    s.opened = true;
                    self.p.state.handle(now, Event::LinkOpened { peer, session });
                }
            }
            LinkEvent::Message(bytes) => {
                if self.p.state.link_session(&peer) != Some(&session) {
                    tracing::debug!(%peer, %session, "message on an attempt that is not the link; dropped");
                    return; // an attempt that is not (or no longer) the link to this peer
                }
                match MeshMessage::decode(&bytes, self.p.max_message_bytes) {
                    Ok(msg) => self.p.state.handle(now, Event::Message { from: peer, msg }),
                    Err(err) => {
                        tracing::debug!(%peer, error = %err, "undecodable mesh message dropped");
                        self.p.state.refuse_undecodable(&peer);
                    }
                }
            }
            LinkEvent::Closed(reason) => {
                if self.sessions.remove(&session).is_some() {
                    crate::mark!("link_closed", %peer, %session, %reason);
                    self.fail_relays_via(&peer);
                    self.p.state.handle(now, Event::LinkClosed { peer, session, reason: reason.to_string() });
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Send { to, body, reply } => {
                // The caller queues the message itself, so a full queue slows the caller down
                // (back-pressure) instead of stalling this loop or dropping the message.
                let result = match self.live_session(&to) {
                    Some(session) => Ok((session.writer.clone(), MeshMessage::App { body }.encode().into())),
                    None => Err(super::NodeError::NotLinked(to)),
                };
                let _ = reply.send(result);
            }
            Command::SetRecord(record) => self.p.state.handle(now, Event::RecordChanged(record)),
            Command::QueryRegistry { filter, timeout, reply } => {
                self.registry_waiters.retain(|_, tx| !tx.is_closed()); // askers that gave up
                self.next_query += 1;
                self.registry_waiters.insert(self.next_query, reply);
                let event = Event::QueryRegistry { id: self.next_query, filter, deadline: now + timeout };
                self.p.state.handle(now, event);
            }
            Command::Leave { done } => {
                self.leave_done = Some(done);
                self.p.state.handle(now, Event::Leave);
            }
        }
    }

    fn send(&mut self, to: &PeerId, msg: MeshMessage, unordered: bool) -> Result<(), super::NodeError> {
        let session = self.live_session(to).ok_or_else(|| super::NodeError::NotLinked(to.clone()))?;
        let bytes = msg.encode().into();
        let out = if unordered { Outgoing::Unordered(bytes) } else { Outgoing::Reliable(bytes) };
        session.writer.try_send(out).map_err(|_| {
            tracing::warn!(%to, kind = msg.kind(), "writer queue full; message dropped");
            super::NodeError::NotLinked(to.clone())
        })
    }

    /// The open session the state machine considers the link to `peer`.
    fn live_session(&self, peer: &PeerId) -> Option<&Session> {
        self.p.state.link_session(peer).and_then(|session| self.sessions.get(session))
    }

    async fn carry_out(&mut self) {
        while let Some(action) = self.p.state.poll_action() {
            match action {
                Action::Dial { peer, session } => self.start_session(peer, session, None),
                Action::Accept { peer, session } => match self.offers.remove(&session) {
                    Some((_, offer)) => self.start_session(peer, session, Some(offer)),
                    None => {
                        self.p.state.handle(now(), Event::LinkClosed { peer, session, reason: "offer gone".into() })
                    }
                },
                Action::Reject { peer, session, reason } => {
                    crate::mark!("reject", %peer, %session, %reason);
                    self.offers.remove(&session);
                    self.send_abort(peer, session, reason);
                }
                Action::Close { peer, session, reason } => {
                    tracing::debug!(%peer, %session, %reason, "closing link");
                    if let Some(s) = self.sessions.remove(&session) {
                        if s.opened {
                            self.fail_relays_via(&peer); // relays waiting on this link
                        } else {
                            self.send_abort(peer.clone(), session, reason);
                        }
                        self.background.spawn(s.close());
                    } else if self.starting.cancel(&session) {
                        self.send_abort(peer, session, reason);
                    }
                }
                Action::Send { to, msg } => {
                    let unordered = matches!(msg, MeshMessage::Heartbeat { .. });
                    let kind = msg.kind();
                    if let Err(err) = self.send(&to, msg, unordered) {
                        tracing::debug!(%to, kind, error = %err, "mesh message not sent");
                    }
                }
                Action::Announce(what) => {
                    let chain = self.p.chain.clone();
                    self.background.spawn(async move {
                        let _ = chain.announce(what).await;
                    });
                }
                Action::DeliverSignal { from, signal } => {
                    let inbound = Inbound { path: "relay", event: SignalingEvent::Signal { from, signal, key: None } };
                    if self.p.inbox_tx.try_send(inbound).is_err() {
                        tracing::warn!("inbox full; relayed signal dropped");
                    }
                }
                Action::RelayAnswered { relay, id, outcome } => self.answer_relay(&relay, id, outcome),
                Action::Emit(event) => self.emit(event),
            }
        }
        if self.leave_done.is_some() || self.p.commands.is_closed() {
            self.left = true;
        }
    }

    /// Starts setting up an attempt (dialing, or answering `offer`) without waiting for it.
    fn start_session(&mut self, peer: PeerId, session: SessionId, offer: Option<SignalBody>) {
        let (sink, signals_out) = mpsc::channel(64);
        let transport = self.p.transport.clone();
        // The transport's own tasks inherit this span, so its marks name the peer and session.
        let span = crate::timeline::link_span(&peer, &session);
        let order = self.p.state.path_order(&peer);
        let to = peer.clone();
        let attempt = async move {
            match offer {
                None => transport.dial(&to, sink).await,
                Some(offer) => transport.accept(&to, offer, sink).await,
            }
        };
        self.starting.start(peer, session, (signals_out, order), span, attempt);
    }

    /// An attempt's transport is ready (or failed): run it, or close it if it was abandoned.
    fn on_started(&mut self, started: Started) {
        let Started { peer, session, signals_out: (signals_out, order), span, result } = started;
        match (result, self.starting.finish(&session)) {
            (Ok(handle), Some(early)) => {
                let (chain, events) = (self.p.chain.clone(), self.link_tx.clone());
                let s = Session::spawn(peer, session.clone(), handle, (signals_out, order), chain, events, span);
                for body in early {
                    if s.signals_in.try_send(body).is_err() {
                        tracing::warn!(%session, "signal queue full; signal dropped");
                    }
                }
                self.sessions.insert(session, s);
            }
            (Ok(handle), None) => {
                self.background.spawn(starting::discard(handle.link));
            }
            (Err(reason), Some(_)) => {
                tracing::warn!(%peer, %session, %reason, "could not start link attempt");
                self.p.state.handle(now(), Event::LinkClosed { peer, session, reason });
            }
            (Err(_), None) => {}
        }
    }

    fn send_abort(&mut self, peer: PeerId, session: SessionId, reason: String) {
        let chain = self.p.chain.clone();
        self.background.spawn(async move {
            let _ = chain.send(&peer, Signal::new(session, SignalBody::Abort { reason })).await;
        });
    }

    fn answer_relay(&mut self, relay: &PeerId, id: u64, outcome: RelayOutcome) {
        let waiter = match self.p.shared.lock() {
            Ok(mut shared) if shared.relay_waiters.get(&id).is_some_and(|(via, _)| via == relay) => {
                shared.relay_waiters.remove(&id)
            }
            _ => None,
        };
        match waiter {
            Some((_, tx)) => {
                let _ = tx.send(outcome);
            }
            // Nobody waits for it: an envelope this node never sent by that relay, or one whose
            // wait ran out.
            None => self.p.state.refuse_unasked_relay_answer(relay),
        }
    }

    fn fail_relays_via(&mut self, peer: &PeerId) {
        let Ok(mut shared) = self.p.shared.lock() else { return };
        let gone: Vec<u64> =
            shared.relay_waiters.iter().filter(|(_, (via, _))| via == peer).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some((_, tx)) = shared.relay_waiters.remove(&id) {
                let _ = tx.send(RelayOutcome::RelayGone);
            }
        }
    }

    fn emit(&mut self, event: MeshEvent) {
        match &event {
            MeshEvent::Health(h) => {
                // Signals per path as sent/failed/received, e.g. "relay 6/0/6 ws 2/0/2".
                let signals = self.p.chain.stats().snapshot().iter().fold(String::new(), |mut out, (path, c)| {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out += &format!("{path} {}/{}/{}", c.sent, c.failed, c.received);
                    out
                });
                tracing::info!(role = h.role, admin = ?h.admin.as_ref().map(|a| a.as_str()), links_up = h.links_up, links_expected = h.links_expected, status = h.status(), %signals, "health")
            }
            MeshEvent::Registry { id, page } => {
                if let Some(tx) = self.registry_waiters.remove(id) {
                    let _ = tx.send(page.clone());
                }
            }
            MeshEvent::LinkUp { peer, reconnect } => tracing::info!(%peer, reconnect, "link up"),
            _ => {}
        }
        let _ = self.p.events.send(event);
    }

    fn publish(&mut self) {
        let health = self.p.state.health_record();
        if let Ok(mut shared) = self.p.shared.lock() {
            shared.admin = health.admin.clone();
            shared.writers = self
                .p
                .state
                .linked_peers()
                .into_iter()
                .filter_map(|p| self.live_session(&p).map(|s| (p, s.writer.clone())))
                .collect();
        }
        let routes = self
            .p
            .state
            .linked_peers()
            .into_iter()
            .filter_map(|p| self.live_session(&p).and_then(|s| s.link.route()).map(|r| (p, r)))
            .collect();
        let snapshot =
            Snapshot { health, counters: self.p.state.counters(), signals: self.p.chain.stats().snapshot(), routes };
        self.p.snapshot.send_if_modified(|current| {
            let changed = *current != snapshot;
            *current = snapshot;
            changed
        });
    }
}
