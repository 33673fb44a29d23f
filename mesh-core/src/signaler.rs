//! The [`Signaler`] trait: carries small signaling payloads between peers that are not linked yet.
//!
//! Contract for implementors:
//! - `start` is called once, before any `send`; the signaler delivers what it receives (signals,
//!   registration answers, joined/left notices) to the context's inbox, tagged with its name.
//! - `send` returns `Ok` once the signal is handed to a path that will deliver it.
//!   `Err(SignalError::Unreachable)` means "not by this path": the [`crate::SignalerChain`] tries
//!   the next one. Any other error is also a fallback, but is logged as a fault of the path.
//! - Signalers own their tasks and end them in `stop`.

use crate::id::{PeerId, RoomId};
use crate::room::{MemberInfo, WorkerRecord};
use crate::signal::Signal;
use crate::wire::RelayErrorReason;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Whether a peer is a worker (part of the mesh) or a client (links to the admin only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A mesh member.
    Worker,
    /// A non-worker peer; not counted toward the room limit, never dialed by workers.
    Client,
}

/// Who this node is, as told to every signaler.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The room joined.
    pub room: RoomId,
    /// This peer.
    pub peer: PeerId,
    /// Worker or client.
    pub role: Role,
    /// This worker's record (metadata, status, priority).
    pub record: WorkerRecord,
    /// This node's public key (hex), given at registration so the rendezvous binds it to the
    /// peer id; the node fills it in at start.
    pub key: Option<String>,
}

/// Something a signaler received and hands to the node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SignalingEvent {
    /// Registered with a rendezvous (signaling server): current members and admin.
    Registered {
        /// The room's other workers.
        members: Vec<MemberInfo>,
        /// The admin the rendezvous knows of, if any.
        admin: Option<PeerId>,
    },
    /// A worker joined the room.
    PeerJoined(MemberInfo),
    /// A peer left the room (its signaling connection closed or it said goodbye).
    PeerLeft(PeerId),
    /// A worker announced itself admin at the rendezvous.
    Admin(PeerId),
    /// A signal from another peer.
    Signal {
        /// Sender, as authenticated by the path.
        from: PeerId,
        /// What it carries.
        signal: Signal,
        /// The key the rendezvous bound to `from` at its registration, if it says (how a
        /// client's key reaches the workers it dials).
        key: Option<String>,
    },
    /// The rendezvous connection is gone; the signaler is reconnecting.
    Disconnected,
}

/// A [`SignalingEvent`] tagged with the path that delivered it.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Name of the signaler that delivered it.
    pub path: &'static str,
    /// What was received.
    pub event: SignalingEvent,
}

/// What a node tells its signalers about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// This node is the room's admin, and this is its proof (the server checks it).
    Admin(crate::wire::Proof),
    /// This node no longer holds the admin role (it lost to another admin).
    Withdraw,
    /// This node is leaving the room.
    Leaving,
}

/// What became of a relayed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutcome {
    /// The relay handed it to the target's link.
    Delivered,
    /// The relay refused it.
    Refused(RelayErrorReason),
    /// The link to the relay closed before an answer came.
    RelayGone,
}

/// What a relaying signaler may ask of the mesh node it runs in.
pub trait MeshAccess: Send + Sync {
    /// The admin as this node sees it.
    fn admin(&self) -> Option<PeerId>;
    /// Peers with an open link.
    fn linked_peers(&self) -> Vec<PeerId>;
    /// Sends `signal` for `to` over the open link to `via`; the receiver resolves with the outcome.
    /// `None` when there is no open link to `via`.
    fn relay(&self, via: &PeerId, to: &PeerId, signal: Signal) -> Option<oneshot::Receiver<RelayOutcome>>;
}

/// The [`MeshAccess`] of a signaler driven outside a node (a tool, a test): no admin, no links,
/// nothing to relay through.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLinks;

impl MeshAccess for NoLinks {
    fn admin(&self) -> Option<PeerId> {
        None
    }
    fn linked_peers(&self) -> Vec<PeerId> {
        Vec::new()
    }
    fn relay(&self, _via: &PeerId, _to: &PeerId, _signal: Signal) -> Option<oneshot::Receiver<RelayOutcome>> {
        None
    }
}

/// Everything a signaler gets when it starts.
#[derive(Clone)]
pub struct SignalerContext {
    /// Who this node is.
    pub identity: Identity,
    /// Where received events go.
    pub inbox: mpsc::Sender<Inbound>,
    /// The node's links, for signalers that relay over the mesh.
    pub mesh: Arc<dyn MeshAccess>,
}

/// Why a signal could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Not by this path; try the next one.
    #[error("{peer} is unreachable by this path: {why}")]
    Unreachable {
        /// The intended recipient.
        peer: PeerId,
        /// What was missing.
        why: String,
    },
    /// No confirmation within the path's timeout.
    #[error("no confirmation within {0:?}")]
    Timeout(std::time::Duration),
    /// The signaler is not started or already stopped.
    #[error("signaler is not running")]
    NotRunning,
    /// The chain cannot work as configured (says why and how to fix it).
    #[error("{0}")]
    Misconfigured(String),
    /// Anything else, from the plugin.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// A way of carrying signals between peers (WebSocket server, relay over the mesh, ...).
#[async_trait]
pub trait Signaler: Send + Sync {
    /// The plugin name, as used in configuration and in per-path counters.
    fn name(&self) -> &'static str;
    /// True for a path that only carries signals over links already open (a relay): a chain
    /// made of such paths alone can never open a first link, and is refused at start.
    fn needs_open_links(&self) -> bool {
        false
    }
    /// How long the chain waits for this path to confirm a signal; `None` (the default): the
    /// chain's own `timing.signal_timeout_ms`. A path with a timeout of its own declares it here,
    /// so that one knob is never silently capped by the other.
    fn confirm_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// Connects (registering where the path has a rendezvous) and starts delivering to the inbox.
    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError>;
    /// Hands `signal` to `to` by this path.
    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError>;
    /// Tells the rendezvous something about this node; paths without one ignore it.
    async fn announce(&self, _what: Announcement) -> Result<(), SignalError> {
        Ok(())
    }
    /// Ends every task of the signaler.
    async fn stop(&self) {}
}
