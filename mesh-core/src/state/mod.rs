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
//! The rules live in one submodule each: links (who dials whom, crossing offers, retries),
//! signals (a signal from any path), relay (envelopes out, through and in), admin (election,
//! verification, conflicts), proof (votes and proofs of the admin role), health (heartbeats,
//! loss, partition, the health record), authority (who may say what, keys, refusals), messages
//! (what each mesh message does), queries (registry queries), output (the four queues).

mod admin;
mod authority;
mod health;
mod links;
mod messages;
mod output;
mod proof;
mod queries;
mod relay;
mod signals;
#[cfg(test)]
mod tests;

pub use health::{HealthRecord, LinkStatus, NodeRole, PeerHealth};
pub use output::{Drive, LinkOp, Output, SignalingOp, Transmit};
pub use relay::RELAY_FORGET;

use crate::id::{PeerId, RoomId};
use crate::query::{RegistryFilter, RegistryPage};
use crate::room::{MemberInfo, RoomState, WorkerRecord};
use crate::signal::{SessionId, Signal};
use crate::signaler::{Announcement, Role};
use crate::wire::MeshMessage;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every timing of the mesh. Defaults are listed in docs/BEHAVIOUR.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How often a heartbeat goes out on every link.
    pub heartbeat_interval: Duration,
    /// Silence after which a linked peer is declared lost.
    pub heartbeat_timeout: Duration,
    /// How long an elected peer has to answer `admin_verify`.
    pub admin_verify_timeout: Duration,
    /// First retry delay after a link is lost.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// How long to wait for a known joiner's offer before dialing it ourselves.
    pub offer_wait: Duration,
    /// How long an offer sent by the rendezvous waits for its answer before the attempt is made
    /// again by relay (the rendezvous may not reach the peer: its connection can be cut).
    pub answer_wait: Duration,
    /// How often a health record is produced while nothing changes.
    pub health_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(1000),
            heartbeat_timeout: Duration::from_millis(3000),
            admin_verify_timeout: Duration::from_millis(2000),
            retry_initial: Duration::from_millis(1000),
            retry_max: Duration::from_millis(32000),
            offer_wait: Duration::from_millis(3000),
            answer_wait: Duration::from_millis(1000),
            health_interval: Duration::from_millis(5000),
        }
    }
}

/// What the state machine needs to know about its own node.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The room.
    pub room: RoomId,
    /// This peer.
    pub me: PeerId,
    /// Worker or client.
    pub role: Role,
    /// This worker's own record.
    pub record: WorkerRecord,
    /// Timings.
    pub timing: Timing,
    /// Seed of the retry jitter, so runs are reproducible.
    pub seed: u64,
    /// This node's key: it signs the node's own record (none: records go unsigned, as in tests).
    pub key: Option<std::sync::Arc<crate::identity::NodeKey>>,
    /// The sequence number of this node's first session. A restarted process must not reuse
    /// the session ids of the one before it (a late signal of the old one would hit the new
    /// one's attempt), so the node starts from the wall clock; tests start from 1.
    pub first_session: u64,
    /// The keys that may be members of the room (default: any).
    pub trust: crate::identity::Allowlist,
}

/// Something that happened, fed to [`MeshState::handle`].
#[derive(Debug, Clone)]
pub enum Event {
    /// Registered with the rendezvous: the room's other workers and its admin.
    Registered {
        /// Other workers.
        members: Vec<MemberInfo>,
        /// Admin as the rendezvous knows it.
        admin: Option<PeerId>,
    },
    /// The rendezvous says a worker joined.
    PeerJoined(MemberInfo),
    /// The rendezvous says a peer left.
    PeerLeft(PeerId),
    /// The rendezvous says this worker announced itself admin (a hint: clients follow it,
    /// workers keep their own election).
    AdminAnnounced(PeerId),
    /// A signaler delivered a signal (it is checked against the sender's key here).
    Signal {
        /// Sender, as the path authenticated it.
        from: PeerId,
        /// The signal.
        signal: Signal,
        /// The key the rendezvous bound to `from`, if it says (how a client's key arrives).
        key: Option<String>,
    },
    /// The relay signaler asks for `signal` to reach `to` by the open link to `via`; the
    /// outcome comes back as [`SignalingOp::RelayAnswered`] with `id`.
    Relay {
        /// The envelope's id, chosen by the asker.
        id: u64,
        /// The linked peer that relays.
        via: PeerId,
        /// The recipient.
        to: PeerId,
        /// The signal, signed.
        signal: Signal,
    },
    /// A link opened.
    LinkOpened {
        /// Peer.
        peer: PeerId,
        /// Session of the link.
        session: SessionId,
    },
    /// A link (or attempt) closed.
    LinkClosed {
        /// Peer.
        peer: PeerId,
        /// Session of the link.
        session: SessionId,
        /// Why, for logs.
        reason: String,
    },
    /// A mesh message arrived over the link `session` to `from` (ignored unless that is the
    /// open link to `from`).
    Message {
        /// The link's peer (authenticated by the link).
        from: PeerId,
        /// The link it came over.
        session: SessionId,
        /// The message.
        msg: MeshMessage,
    },
    /// Bytes that are not a mesh message (malformed, unknown type, over the size limit) came
    /// over the link `session` to `from`: counted as a refusal.
    Garbled {
        /// The link's peer.
        from: PeerId,
        /// The link it came over.
        session: SessionId,
    },
    /// The user changed this worker's record (status or metadata); the version is bumped here.
    RecordChanged(WorkerRecord),
    /// The user asks the admin for the registry (clients and workers alike). The query waits
    /// for a verified, linked admin and is forgotten at `deadline`.
    QueryRegistry {
        /// Echoed in the answer event.
        id: u64,
        /// Which workers.
        filter: RegistryFilter,
        /// When the asker stops waiting.
        deadline: Instant,
    },
    /// The user leaves the room gracefully.
    Leave,
    /// Time passed; fire whatever timers are due.
    Tick,
}

/// Events a user of the mesh observes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MeshEvent {
    /// A link to `peer` opened.
    LinkUp {
        /// Peer.
        peer: PeerId,
        /// True if this peer was linked before (a reconnect).
        reconnect: bool,
    },
    /// The link to `peer` is gone.
    LinkDown {
        /// Peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The admin changed.
    AdminChanged {
        /// New admin, if any.
        admin: Option<PeerId>,
        /// True once the admin is this node or answered `admin_verify`.
        verified: bool,
    },
    /// A retry of the link to `peer` is scheduled.
    RetryScheduled {
        /// Peer.
        peer: PeerId,
        /// 0 for the first retry.
        attempt: u32,
        /// Delay before dialing.
        delay: Duration,
    },
    /// This node is cut off from the admin and most of the room.
    PartitionDetected,
    /// Connectivity is back.
    PartitionHealed,
    /// A health record (periodic, and on every partition change).
    Health(HealthRecord),
    /// Application data from `from`.
    AppMessage {
        /// Sender.
        from: PeerId,
        /// Payload.
        body: serde_json::Value,
    },
    /// The answer to a registry query.
    Registry {
        /// Query id.
        id: u64,
        /// The matching workers and the counts.
        page: RegistryPage,
    },
}

/// Counters a user (and the demo) reads to prove what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Link attempts started as the offering side.
    pub dials: u64,
    /// Offers answered.
    pub accepts: u64,
    /// Links that opened.
    pub links_opened: u64,
    /// Links that opened to a peer this node had been linked to before.
    pub reconnects: u64,
    /// Messages refused because their sender may not say them (see `docs/BEHAVIOUR.md` 25).
    pub refused: u64,
}

impl Counters {
    /// Link attempts of either side (dials + accepts): what "no new attempts" is checked on.
    pub fn attempts(&self) -> u64 {
        self.dials + self.accepts
    }
}

/// Per-peer link state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// Known, nothing in flight; `dial_at` is when to dial if the peer has not dialed us.
    Waiting { dial_at: Instant },
    /// We offered.
    Dialing { session: SessionId },
    /// We answered its offer.
    Accepting { session: SessionId },
    /// Open.
    Up { session: SessionId, last_seen: Instant },
    /// Lost; dial again at `due`.
    Retrying { due: Instant },
}

#[derive(Debug, Clone)]
struct PeerEntry {
    link: LinkState,
    ever_linked: bool,
    /// The rendezvous named this peer (registration list or a join notice).
    introduced: bool,
    /// An offer sent by the rendezvous went unanswered: signal this peer by relay first.
    relay_first: bool,
    /// When the pending offer, sent by the rendezvous, must have been answered.
    answer_due: Option<Instant>,
    /// The rendezvous left this peer out when this node registered again, at this time.
    unlisted_since: Option<Instant>,
    retry_attempt: u32,
    peer_list_sent: bool,
    /// The peer's view of the admin from its latest heartbeat.
    view: Option<admin::PeerView>,
}

/// The whole decision state of one node.
pub struct MeshState {
    cfg: StateConfig,
    room: RoomState,
    peers: BTreeMap<PeerId, PeerEntry>,
    admin: Option<PeerId>,
    admin_verified: bool,
    /// The admin epoch: raised by every election a strict majority of the room makes, so on a
    /// healed partition the majority's admin wins.
    epoch: u64,
    verify: Option<admin::PendingVerify>,
    /// Candidates that answered `admin_verify` naming another admin, in this chase.
    verify_hops: Vec<PeerId>,
    /// The link to the admin was lost while it is still in the room: flap or death, to be told
    /// apart by what the other workers report.
    suspect: Option<admin::Suspect>,
    /// The last admin the rendezvous announced.
    announced_admin: Option<PeerId>,
    /// When this node last told the rendezvous it is admin.
    last_announce: Option<Instant>,
    partitioned: bool,
    /// A record change made while partitioned, sent when the partition heals.
    pending_record: Option<WorkerRecord>,
    /// Registry queries waiting for, or sent to, the admin.
    queries: BTreeMap<u64, queries::PendingQuery>,
    /// The id of the room-state request sent to the admin after a partition healed.
    sync_query: Option<u64>,
    registered: bool,
    leaving: bool,
    next_seq: u64,
    heartbeat_seq: u64,
    next_heartbeat: Option<Instant>,
    next_health: Option<Instant>,
    rng: u64,
    counters: Counters,
    /// Public keys of workers, as the rendezvous bound them (or the admin's peer list told).
    keys: BTreeMap<PeerId, crate::identity::PublicKey>,
    /// Public keys of clients, as the rendezvous bound them (it hands them out with each
    /// client's signals). A client is never a worker: its records and votes are refused.
    client_keys: BTreeMap<PeerId, crate::identity::PublicKey>,
    /// Votes for this node and proofs heard from claimers of the admin role.
    proofs: proof::Proofs,
    /// Peers that left (the rendezvous or the peer itself said so): a record of theirs in a
    /// snapshot sent before they left (a peer list, a sync answer) must not bring them back.
    /// Cleared when the rendezvous introduces the peer again.
    departed: std::collections::BTreeSet<PeerId>,
    /// Refusals already logged at WARN, by sender and reason.
    refusals_logged: std::collections::BTreeSet<(PeerId, &'static str)>,
    /// This node's relay envelopes waiting for an answer.
    relays: relay::Relays,
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
            peers: BTreeMap::new(),
            admin: None,
            admin_verified: false,
            epoch: 0,
            verify: None,
            verify_hops: Vec::new(),
            suspect: None,
            announced_admin: None,
            last_announce: None,
            partitioned: false,
            pending_record: None,
            queries: BTreeMap::new(),
            sync_query: None,
            registered: false,
            leaving: false,
            next_seq,
            heartbeat_seq: 0,
            next_heartbeat: None,
            next_health: None,
            rng,
            counters: Counters::default(),
            refusals_logged: Default::default(),
            departed: Default::default(),
            keys: BTreeMap::new(),
            client_keys: BTreeMap::new(),
            proofs: Default::default(),
            relays: Default::default(),
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
        let mut times: Vec<Instant> = self.next_heartbeat.into_iter().chain(self.next_health).collect();
        if let Some(v) = &self.verify {
            times.push(v.deadline);
            times.extend(v.resend_at);
        }
        if let Some(s) = &self.suspect {
            times.push(s.deadline);
        }
        times.extend(self.queries.values().map(|q| q.deadline));
        times.extend(self.relays.next_deadline());
        for entry in self.peers.values() {
            match &entry.link {
                LinkState::Waiting { dial_at } => times.push(*dial_at),
                LinkState::Retrying { due } => times.push(*due),
                LinkState::Up { last_seen, .. } => times.push(*last_seen + self.cfg.timing.heartbeat_timeout),
                LinkState::Dialing { .. } => times.extend(entry.answer_due),
                _ => {}
            }
        }
        times.into_iter().min()
    }

    /// This node's peer id.
    pub fn me(&self) -> &PeerId {
        &self.cfg.me
    }

    /// The admin as this node sees it, and whether it is verified.
    pub fn admin(&self) -> (Option<&PeerId>, bool) {
        (self.admin.as_ref(), self.admin_verified)
    }

    /// True when this node is the admin.
    pub fn is_admin(&self) -> bool {
        self.admin.as_ref() == Some(&self.cfg.me)
    }

    /// Peers with an open link.
    pub fn linked_peers(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, e)| matches!(e.link, LinkState::Up { .. })).map(|(p, _)| p.clone()).collect()
    }

    /// True if the link to `peer` is open.
    pub fn is_linked(&self, peer: &PeerId) -> bool {
        self.link_session(peer).is_some()
    }

    /// The session of the open link to `peer`: the only one that may carry messages.
    pub fn link_session(&self, peer: &PeerId) -> Option<&SessionId> {
        match self.peers.get(peer).map(|e| &e.link) {
            Some(LinkState::Up { session, .. }) => Some(session),
            _ => None,
        }
    }

    /// How the signals of a new attempt with `peer` should travel: the rendezvous first for a
    /// peer it introduced and this node never linked (no relay is known to reach it yet), the
    /// configured order (relay first) otherwise: a peer linked before, or one only the admin's
    /// peer list named (the admin, which is linked to it, relays).
    pub fn path_order(&self, peer: &PeerId) -> crate::PathOrder {
        match self.peers.get(peer) {
            Some(e) if e.introduced && !e.ever_linked && !e.relay_first => crate::PathOrder::RendezvousFirst,
            _ => crate::PathOrder::Configured,
        }
    }

    /// The partition flag.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
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
        let seq = self.next_seq;
        self.next_seq += 1;
        SessionId { offerer: self.cfg.me.clone(), seq }
    }

    /// Is `peer` a present worker in the room state (other than this node)?
    fn is_present_worker(&self, peer: &PeerId) -> bool {
        peer != &self.cfg.me && self.room.present().any(|(p, _)| p == peer)
    }

    fn on_record_changed(&mut self, record: WorkerRecord) {
        if self.partitioned {
            // Read-only while cut off: the change goes out when the partition heals.
            tracing::info!("record change queued until the partition heals");
            self.pending_record = Some(record);
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
        let key = |p: &PeerId| self.keys.get(p).map(|k| k.hex().to_string());
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
        let sessions: Vec<(PeerId, SessionId)> =
            self.peers.iter().filter_map(|(p, e)| links::session_of(&e.link).map(|s| (p.clone(), s.clone()))).collect();
        for (peer, session) in sessions {
            self.link_op(LinkOp::Close { peer, session, reason: "leaving".into() });
        }
        // The peer table stays as it is: the driver resolves each goodbye above to its link when
        // it carries the actions out, after this returns (clearing it here lost every goodbye).
        // Nothing is handled after leaving, so the stale entries are never acted upon.
        self.verify = None;
        self.suspect = None;
        self.queries.clear();
        self.leaving = true;
    }
}
