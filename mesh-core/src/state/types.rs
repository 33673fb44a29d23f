//! The state machine's public types: its configuration and timings, the events it takes, the
//! events it tells the application, and its counters.

use crate::id::{PeerId, RoomId};
use crate::query::{RegistryFilter, RegistryPage};
use crate::room::{MemberInfo, WorkerRecord};
use crate::signal::{SessionId, Signal};
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::time::{Duration, Instant};

use super::HealthRecord;

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
    /// Client links a worker takes at most (besides its worker links).
    pub max_client_links: usize,
    /// An instant on the wall clock's grid of whole heartbeat intervals (since the Unix epoch).
    /// Heartbeats go out on that grid, so every worker of a room sends them at the same moments
    /// and handles its peers' heartbeats and acknowledgements in a few wake-ups a second instead
    /// of one per peer (docs/BEHAVIOUR.md 19). None: one interval after the last, from joining.
    pub heartbeat_phase: Option<Instant>,
}

/// Something that happened, fed to [`super::MeshState::handle`].
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
    /// outcome comes back as [`super::SignalingOp::RelayAnswered`] with `id`.
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
    /// This worker's record shows `status` now (the rest of the record unchanged).
    StatusChanged(crate::room::WorkerStatus),
    /// This worker's record shows `value` under metadata `key` now (`null` removes it).
    MetadataChanged {
        /// The metadata key.
        key: String,
        /// Its new value.
        value: serde_json::Value,
    },
    /// A client links to worker `peer` besides its admin (until [`Event::Disconnect`]).
    Connect(PeerId),
    /// A client closes its link to `peer` (unless it is the admin).
    Disconnect(PeerId),
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
    /// A worker's record is new to this node (`joined`) or changed (status, load, metadata):
    /// what a scheduler watches.
    WorkerChanged {
        /// The worker.
        peer: PeerId,
        /// Its record now.
        record: WorkerRecord,
        /// True when this node did not hold a record of it before.
        joined: bool,
    },
    /// A worker left the room (or was given up as gone).
    WorkerLeft {
        /// The worker.
        peer: PeerId,
    },
    /// A health record (periodic, and on every partition change).
    Health(HealthRecord),
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
