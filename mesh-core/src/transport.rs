//! The [`Transport`] trait: turns a signaling conversation into a [`Link`] to one peer.
//!
//! Contract for implementors:
//! - `dial` starts the offering side and pushes its offer into `signals`; `accept` answers an
//!   offer. Both may take a while (building a connection, gathering addresses): the node runs
//!   them off its loop, side by side, within [`crate::node::SETUP_TIMEOUT`]. Each returns a
//!   [`LinkHandle`] once the attempt is set up; the link opens later.
//! - The handle's `events` yield [`LinkEvent::Open`] at most once, then messages in order, then
//!   [`LinkEvent::Closed`] exactly once (also when the link never opened: a failed or timed-out
//!   attempt). After `Closed` the channel ends and no task or socket of the link remains.
//! - `send` waits while the link's buffer is full (back-pressure) and never drops a message on the
//!   reliable path; it errs once the link is closed.

use crate::id::PeerId;
use crate::signal::SignalBody;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a transport writes the signals it wants carried to the other side of one attempt.
pub type SignalSink = mpsc::Sender<SignalBody>;

/// Why a link closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed on this side (by the node or the user).
    Local,
    /// The peer closed it.
    Remote,
    /// The attempt did not open within the transport's connect timeout.
    ConnectTimeout,
    /// The connection failed (ICE, DTLS or SCTP failure, or the peer process died).
    Failed(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("closed locally"),
            Self::Remote => f.write_str("closed by peer"),
            Self::ConnectTimeout => f.write_str("connect timeout"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// What happens on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The link is open; messages may flow.
    Open,
    /// One whole message from the peer.
    Message(Bytes),
    /// The link is closed; the last event.
    Closed(CloseReason),
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The link is closed (or never opened).
    #[error("link closed")]
    Closed,
    /// The signal could not be applied (malformed, wrong session, wrong state).
    #[error("bad signal: {0}")]
    BadSignal(String),
    /// The transport could not start the attempt.
    #[error("could not start link: {0}")]
    Setup(String),
    /// Anything else, from the plugin.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// One link to one peer: a reliable, ordered, message-oriented channel.
#[async_trait]
pub trait Link: Send + Sync {
    /// Applies a signal from the other side of this attempt (answer, candidate, abort).
    async fn apply_signal(&self, body: SignalBody) -> Result<(), TransportError>;
    /// Sends one message reliably and in order; waits while the buffer is full.
    async fn send(&self, data: Bytes) -> Result<(), TransportError>;
    /// Sends one bulk message (application data) reliably and in order with the other bulk
    /// messages; mesh control sent with [`Link::send`] meanwhile goes first where the transport
    /// can arrange it. By default the same path as `send`.
    async fn send_bulk(&self, data: Bytes) -> Result<(), TransportError> {
        self.send(data).await
    }
    /// Sends a small, loss-tolerant message (heartbeats) on a path that a large transfer cannot
    /// delay, where the transport has one; by default the reliable path.
    async fn send_unordered(&self, data: Bytes) -> Result<(), TransportError> {
        self.send(data).await
    }
    /// The network path the link took, as the transport names it (WebRTC: the selected
    /// candidate pair's types, `local/remote`, such as `host/host` or `relay/prflx`), once known.
    fn route(&self) -> Option<String> {
        None
    }
    /// Closes the link; the peer sees it closed. Idempotent.
    async fn close(&self);
}

/// A link and its event stream, as returned by [`Transport::dial`] and [`Transport::accept`].
pub struct LinkHandle {
    /// The link, shared by whoever sends on it.
    pub link: Arc<dyn Link>,
    /// Its events: `Open`, messages, then exactly one `Closed`.
    pub events: mpsc::Receiver<LinkEvent>,
}

/// A way of building links to peers (WebRTC data channels, in-memory pipes, ...).
#[async_trait]
pub trait Transport: Send + Sync {
    /// The plugin name, as used in configuration.
    fn name(&self) -> &'static str;
    /// Starts a link as the offering side; the offer goes into `signals`.
    async fn dial(&self, peer: &PeerId, signals: SignalSink) -> Result<LinkHandle, TransportError>;
    /// Answers `offer` from `peer`; the answer and candidates go into `signals`.
    async fn accept(&self, peer: &PeerId, offer: SignalBody, signals: SignalSink)
        -> Result<LinkHandle, TransportError>;
    /// Ends whatever the transport still runs for this node (its links' tasks), bounded in
    /// time; the node calls it once as it stops, after closing its links.
    async fn shutdown(&self) {}
}
