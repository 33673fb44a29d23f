//! The sans-IO mesh state machine: every decision of the mesh, and nothing else.
//!
//! One door in, separate doors out (docs/ARCHITECTURE.md): [`MeshState::handle`] takes every
//! [`Event`] with the current time, and the outputs wait in four queues by consumer:
//! [`MeshState::poll_transmit`] (messages for links), [`MeshState::poll_link_op`] (transport
//! operations), [`MeshState::poll_signaling`] (what to tell the signalers) and
//! [`MeshState::poll_event`] (what to tell the application); [`MeshState::drain`] hands them
//! out in order. It does no I/O and reads no clock: time only comes in as `now`, so every rule
//! runs on virtual time in tests.
//!
//! Each concern owns its part of the state (a struct of its module) and its timers (its
//! `next_deadline`): links (who dials whom, crossing offers), membership (registration, join
//! and leave notices, peer lists), timers (retries, offer and answer waits), signals (a signal
//! from any path), relay (envelopes out, through and in), admin (election, conflicts), verify
//! (`admin_verify` and its chase), proof (votes and proofs of the admin role), health
//! (heartbeats, loss, partition, the health record), authority (who may say what, keys,
//! refusals), clients (a client's chosen workers, a worker's client limit), messages (what each
//! mesh message does), queries (registry queries), output (the
//! four queues), types (the public types).

mod admin;
mod authority;
mod clients;
mod health;
mod links;
mod membership;
mod messages;
mod output;
mod proof;
mod queries;
mod relay;
mod signals;
#[cfg(test)]
mod tests;
mod timers;
mod types;
mod verify;

pub use clients::DEFAULT_MAX_CLIENT_LINKS;
pub use health::{HealthRecord, LinkStatus, NodeRole, PeerHealth};
pub use output::{Drive, LinkOp, Output, SignalingOp, Transmit};
pub use relay::RELAY_FORGET;
pub use types::{Counters, Event, MeshEvent, StateConfig, Timing};

use crate::id::PeerId;
use crate::room::{MemberInfo, RoomState, WorkerRecord};
use crate::signal::SessionId;
use crate::signaler::{Announcement, Role};
use crate::wire::MeshMessage;
use links::LinkState;
use std::collections::BTreeMap;
use std::time::Instant;

/// The whole decision state of one node.
pub struct MeshState {
    cfg: StateConfig,
    /// The replicated room state: every worker's record.
    room: RoomState,
    /// Links and attempts, per peer (links.rs).
    links: links::Links,
    /// Who the admin is and how sure this node is of it (admin.rs).
    election: admin::Election,
    /// Votes for this node and proofs heard from claimers of the admin role (proof.rs).
    proofs: proof::Proofs,
    /// Heartbeats, the health record's pace and the partition flag (health.rs).
    health: health::Health,
    /// Registry queries (queries.rs).
    queries: queries::Queries,
    /// Keys, departures and refusals (authority.rs).
    authority: authority::Authority,
    /// This node's relay envelopes waiting for an answer (relay.rs).
    relays: relay::Relays,
    registered: bool,
    leaving: bool,
    counters: Counters,
    out: output::Outputs,
}

impl MeshState {
    /// A node that has not registered yet.
    pub fn new(cfg: StateConfig) -> Self {
        let mut cfg = cfg;
        if let Some(key) = &cfg.key {
            cfg.record.sig = Some(key.sign_record(&cfg.room, &cfg.me, &cfg.record));
        }
        let mut room = RoomState::default();
        if cfg.role == Role::Worker {
            room.merge(&cfg.me, &cfg.record);
        }
        let rng = cfg.seed | 1;
        let next_seq = cfg.first_session.max(1);
        Self {
            cfg,
            room,
            links: links::Links {
                peers: BTreeMap::new(),
                next_seq,
                rng,
                offers_seen: BTreeMap::new(),
                chosen: Default::default(),
            },
            election: Default::default(),
            proofs: Default::default(),
            health: Default::default(),
            queries: Default::default(),
            authority: Default::default(),
            relays: Default::default(),
            registered: false,
            leaving: false,
            counters: Counters::default(),
            out: Default::default(),
        }
    }

    /// Feeds one event at time `now`.
    pub fn handle(&mut self, now: Instant, event: Event) {
        if self.leaving {
            return;
        }
        match event {
            Event::Registered { members, admin } => self.on_registered(now, members, admin),
            Event::PeerJoined(member) => self.on_peer_joined(now, member, true),
            Event::PeerLeft(peer) => self.on_peer_left(now, &peer),
            Event::AdminAnnounced(peer) => self.on_admin_announced(now, peer),
            Event::Signal { from, signal, key } => self.on_signal(now, from, signal, key),
            Event::Relay { id, via, to, signal } => self.on_relay_request(now, id, via, to, signal),
            Event::LinkOpened { peer, session } => self.on_link_opened(now, peer, session),
            Event::LinkClosed { peer, session, reason } => self.on_link_closed(now, &peer, &session, reason),
            Event::Message { from, session, msg } => self.on_message(now, from, &session, msg),
            Event::Garbled { from, session } if self.link_session(&from) == Some(&session) => {
                self.refuse(&from, "message", "bytes that are not a mesh message, or over the size limit")
            }
            Event::Garbled { .. } => {}
            Event::RecordChanged(record) => self.on_record_changed(record),
            Event::QueryRegistry { id, filter, deadline } => self.on_query_registry(now, id, filter, deadline),
            Event::StatusChanged(status) => {
                let mut record = self.health.pending_record.clone().unwrap_or_else(|| self.cfg.record.clone());
                record.status = status;
                self.on_record_changed(record);
            }
            Event::MetadataChanged { key, value } => {
                let mut record = self.health.pending_record.clone().unwrap_or_else(|| self.cfg.record.clone());
                match value {
                    serde_json::Value::Null => record.metadata.remove(&key),
                    value => record.metadata.insert(key, value),
                };
                self.on_record_changed(record);
            }
            Event::Connect(peer) => self.on_connect(now, peer),
            Event::Disconnect(peer) => self.on_disconnect(&peer),
            Event::Leave => self.on_leave(),
            Event::Tick => self.on_tick(now),
        }
        if self.leaving {
            return;
        }
        self.review_suspect(now);
        self.update_partition(now);
        self.flush_queries(now);
        self.announce_if_due(now);
    }

    /// The earliest time at which [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let silence = self.cfg.timing.heartbeat_timeout;
        [
            self.health.next_deadline(),
            self.election.next_deadline(),
            self.queries.next_deadline(),
            self.relays.next_deadline(),
            self.links.next_deadline(silence),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// This node's peer id.
    pub fn me(&self) -> &PeerId {
        &self.cfg.me
    }

    /// The admin as this node sees it, and whether it is verified.
    pub fn admin(&self) -> (Option<&PeerId>, bool) {
        (self.election.admin.as_ref(), self.election.admin_verified)
    }

    /// True when this node is the admin.
    pub fn is_admin(&self) -> bool {
        self.election.admin.as_ref() == Some(&self.cfg.me)
    }

    /// Peers with an open link.
    pub fn linked_peers(&self) -> Vec<PeerId> {
        self.links
            .peers
            .iter()
            .filter(|(_, e)| matches!(e.link, LinkState::Up { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// True if the link to `peer` is open.
    pub fn is_linked(&self, peer: &PeerId) -> bool {
        self.link_session(peer).is_some()
    }

    /// The session of the open link to `peer`: the only one that may carry messages.
    pub fn link_session(&self, peer: &PeerId) -> Option<&SessionId> {
        match self.links.peers.get(peer).map(|e| &e.link) {
            Some(LinkState::Up { session, .. }) => Some(session),
            _ => None,
        }
    }

    /// How the signals of a new attempt with `peer` should travel: the rendezvous first for a
    /// peer it introduced and this node never linked (no relay is known to reach it yet), the
    /// configured order (relay first) otherwise: a peer linked before, or one only the admin's
    /// peer list named (the admin, which is linked to it, relays). A client signals a worker it
    /// chose (not its admin) through the rendezvous always: that worker never heard of the client,
    /// so it refuses a relayed signal that no key it knows signs, and only the rendezvous vouches
    /// for the client's key.
    pub fn path_order(&self, peer: &PeerId) -> crate::PathOrder {
        if self.cfg.role == Role::Client && self.election.admin.as_ref() != Some(peer) {
            return crate::PathOrder::RendezvousFirst;
        }
        match self.links.peers.get(peer) {
            Some(e) if e.introduced && !e.ever_linked && !e.relay_first => crate::PathOrder::RendezvousFirst,
            _ => crate::PathOrder::Configured,
        }
    }

    /// The partition flag.
    pub fn is_partitioned(&self) -> bool {
        self.health.partitioned
    }

    /// The replicated room state.
    pub fn room_state(&self) -> &RoomState {
        &self.room
    }

    /// The node's counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn new_session(&mut self) -> SessionId {
        let seq = self.links.next_seq;
        self.links.next_seq += 1;
        SessionId { offerer: self.cfg.me.clone(), seq }
    }

    /// Is `peer` a present worker in the room state (other than this node)?
    fn is_present_worker(&self, peer: &PeerId) -> bool {
        peer != &self.cfg.me && self.room.present().any(|(p, _)| p == peer)
    }

    fn on_record_changed(&mut self, record: WorkerRecord) {
        if self.health.partitioned {
            // Read-only while cut off: the change goes out when the partition heals.
            tracing::info!("record change queued until the partition heals");
            self.health.pending_record = Some(record);
            return;
        }
        self.publish_record(record);
    }

    /// Bumps the version of this worker's record and tells every linked peer.
    fn publish_record(&mut self, mut record: WorkerRecord) {
        let current = self.room.get(&self.cfg.me).map(|r| r.version).unwrap_or(0);
        record.version = current.max(self.cfg.record.version) + 1;
        record.sig = self.cfg.key.as_ref().map(|k| k.sign_record(&self.cfg.room, &self.cfg.me, &record));
        self.cfg.record = record.clone();
        self.room.merge(&self.cfg.me, &record);
        for peer in self.linked_peers() {
            self.send(&peer, MeshMessage::Record { peer: self.cfg.me.clone(), record: record.clone() });
        }
    }

    fn present_members(&self) -> Vec<MemberInfo> {
        let key = |p: &PeerId| self.authority.keys.get(p).map(|k| k.hex().to_string());
        self.room
            .present()
            .map(|(peer, record)| MemberInfo { key: key(peer), ..MemberInfo::new(peer.clone(), record.clone()) })
            .collect()
    }

    fn on_leave(&mut self) {
        for peer in self.linked_peers() {
            self.send(&peer, MeshMessage::PeerLeft { peer: self.cfg.me.clone() });
        }
        self.announce(Announcement::Leaving);
        let sessions: Vec<(PeerId, SessionId)> = self
            .links
            .peers
            .iter()
            .filter_map(|(p, e)| links::session_of(&e.link).map(|s| (p.clone(), s.clone())))
            .collect();
        for (peer, session) in sessions {
            self.link_op(LinkOp::Close { peer, session, reason: "leaving".into() });
        }
        // The peer table stays as it is: the driver resolves each goodbye above to its link when
        // it carries the actions out, after this returns (clearing it here lost every goodbye).
        // Nothing is handled after leaving, so the stale entries are never acted upon.
        self.election.verify = None;
        self.election.suspect = None;
        self.queries.pending.clear();
        self.leaving = true;
    }
}
