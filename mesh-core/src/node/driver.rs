//! The driver loop: every input goes into the state machine through `handle`, and every output
//! it queues is carried out by [`Io`] (see `io.rs`). The loop never feeds itself.
//!
//! One task, one `select!`: signaling inbox, relay requests of the relay signaler, link events,
//! user commands, finished set-ups and the state machine's next deadline. Everything slow
//! (signal sends, closes, announcements) runs in tasks owned by [`Io`], so the loop never waits
//! on the network.

use super::io::{Io, RelayRequest};
use super::starting::Started;
use super::{Command, Snapshot};
use crate::chain::SignalerChain;
use crate::id::PeerId;
use crate::signal::SessionId;
use crate::signaler::{Inbound, SignalingEvent};
use crate::state::{Event, MeshEvent, MeshState};
use crate::transport::{LinkEvent, Transport};
use crate::wire::MeshMessage;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// Everything the driver is built from.
pub(super) struct Parts {
    pub(super) state: MeshState,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) chain: Arc<SignalerChain>,
    pub(super) shared: Arc<Mutex<super::Shared>>,
    pub(super) data: crate::data::DataPlane,
    pub(super) inbox: mpsc::Receiver<Inbound>,
    pub(super) relays: mpsc::Receiver<RelayRequest>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: broadcast::Sender<MeshEvent>,
    pub(super) snapshot: watch::Sender<Snapshot>,
    pub(super) max_message_bytes: usize,
}

/// The driver task's state: the state machine and what carries its outputs out.
pub(super) struct Driver {
    state: MeshState,
    io: Io,
    inbox: mpsc::Receiver<Inbound>,
    relays: mpsc::Receiver<RelayRequest>,
    commands: mpsc::Receiver<Command>,
    max_message_bytes: usize,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(super) fn new(p: Parts) -> Self {
        let io = Io::new(p.transport, p.chain, p.shared, p.events, p.snapshot, p.data);
        Self {
            state: p.state,
            io,
            inbox: p.inbox,
            relays: p.relays,
            commands: p.commands,
            max_message_bytes: p.max_message_bytes,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let deadline = self.state.next_deadline().map(tokio::time::Instant::from_std);
            let soonest = tokio::time::Instant::now() + Duration::from_millis(1); // never a busy loop
            let deadline =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1)).max(soonest);
            tokio::select! {
                Some(inbound) = self.inbox.recv() => self.on_inbound(inbound),
                Some(request) = self.relays.recv() => self.on_relay_request(request),
                Some((peer, session, event)) = self.io.link_events.recv() => self.on_link_event(peer, session, event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => self.state.handle(now(), Event::Leave), // the handle was dropped
                },
                Some(_) = self.io.background.join_next(), if !self.io.background.is_empty() => {}
                Some(started) = self.io.starting.next(), if !self.io.starting.is_empty() => self.on_started(started),
                _ = tokio::time::sleep_until(deadline) => self.state.handle(now(), Event::Tick),
            }
            self.state.drain(&mut self.io);
            self.io.publish(&self.state);
            if self.io.leave_done.is_some() || self.commands.is_closed() {
                break;
            }
        }
        self.io.shutdown().await;
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let now = now();
        let event = match inbound.event {
            SignalingEvent::Registered { members, admin } => {
                crate::mark!("registered", path = inbound.path, members = members.len());
                Event::Registered { members, admin }
            }
            SignalingEvent::PeerJoined(member) => Event::PeerJoined(member),
            SignalingEvent::PeerLeft(peer) => Event::PeerLeft(peer),
            SignalingEvent::Admin(peer) => Event::AdminAnnounced(peer),
            SignalingEvent::Disconnected => {
                tracing::info!(path = inbound.path, "signaling path disconnected");
                return;
            }
            SignalingEvent::Signal { from, signal, key } => {
                self.io.chain.stats().received(inbound.path);
                let (kind, session) = (signal.body.kind(), &signal.session);
                crate::mark!("signal_in", peer = %from, %session, kind, path = inbound.path);
                Event::Signal { from, signal, key }
            }
        };
        self.state.handle(now, event);
    }

    fn on_relay_request(&mut self, request: RelayRequest) {
        let RelayRequest { id, via, to, signal, reply } = request;
        self.io.wait_relay(id, reply);
        self.state.handle(now(), Event::Relay { id, via, to, signal });
    }

    fn on_link_event(&mut self, peer: PeerId, session: SessionId, event: LinkEvent) {
        let now = now();
        match event {
            LinkEvent::Open => {
                if self.io.opened(&session) {
                    crate::mark!("link_open", %peer, %session);
                    self.state.handle(now, Event::LinkOpened { peer, session });
                }
            }
            LinkEvent::Message(bytes) => match MeshMessage::decode(&bytes, self.max_message_bytes) {
                Ok(msg) => self.state.handle(now, Event::Message { from: peer, session, msg }),
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "undecodable mesh message dropped");
                    self.state.handle(now, Event::Garbled { from: peer, session });
                }
            },
            LinkEvent::Closed(reason) => {
                if self.io.closed(&session) {
                    crate::mark!("link_closed", %peer, %session, %reason);
                    self.state.handle(now, Event::LinkClosed { peer, session, reason: reason.to_string() });
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::SetRecord(record) => self.state.handle(now, Event::RecordChanged(record)),
            Command::Connect(peer) => self.state.handle(now, Event::Connect(peer)),
            Command::SetStatus(status) => self.state.handle(now, Event::StatusChanged(status)),
            Command::SetMetadata(key, value) => self.state.handle(now, Event::MetadataChanged { key, value }),
            Command::Disconnect(peer) => self.state.handle(now, Event::Disconnect(peer)),
            Command::QueryRegistry { filter, timeout, reply } => {
                let id = self.io.wait_registry(reply);
                self.state.handle(now, Event::QueryRegistry { id, filter, deadline: now + timeout });
            }
            Command::Leave { done } => {
                self.io.leave_done = Some(done);
                self.state.handle(now, Event::Leave);
            }
        }
    }

    /// An attempt's transport is ready (or failed, or its set-up task panicked).
    fn on_started(&mut self, started: Started) {
        if let Some((peer, session, reason)) = self.io.on_started(started) {
            tracing::warn!(%peer, %session, %reason, "could not start link attempt");
            self.state.handle(now(), Event::LinkClosed { peer, session, reason });
        }
    }
}
