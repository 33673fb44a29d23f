//! The data plane: application messages, requests and inboxes addressed by protocol name, over
//! the mesh's links and apart from mesh control (docs/LINK.md, "Application frames").
//!
//! Application bytes never pass through the driver or the state machine: a link's session task
//! hands each application frame straight to the [`DataPlane`], whose logic is the sans-IO
//! [`DataCore`]. The state machine only tells the data plane which link it uses for each peer.
//!
//! Two workers on the in-memory plugins; `w1` serves protocol `echo/1`:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! use mesh_core::memory::{MemoryNetwork, MemorySignaler, MemoryTransport};
//! use mesh_core::{testing, Incoming, MeshNode, Role};
//! use std::{sync::Arc, time::Duration};
//!
//! let net = MemoryNetwork::new();
//! let mut nodes = Vec::new();
//! for name in ["w0", "w1"] {
//!     let options = testing::options("lab", name, Role::Worker, 8000);
//!     let transport = MemoryTransport::new(net.clone(), options.identity.peer.clone(), Duration::from_secs(5));
//!     let signalers: Vec<Arc<dyn mesh_core::Signaler>> = vec![Arc::new(MemorySignaler::new(net.clone()))];
//!     nodes.push(MeshNode::start(options, Arc::new(transport), signalers).await?);
//! }
//! testing::wait_full_mesh(&nodes, Duration::from_secs(30)).await?;
//!
//! // w1 answers every request on echo/1 with the bytes it got, and reads messages.
//! let mut inbox = nodes[1].listen("echo/1")?;
//! tokio::spawn(async move {
//!     while let Some(incoming) = inbox.recv().await {
//!         match incoming {
//!             Incoming::Request(req) => {
//!                 let body = req.body.clone();
//!                 req.respond(body).await;
//!             }
//!             Incoming::Message { from, body } => println!("{from} sent {} bytes", body.len()),
//!             _ => {}
//!         }
//!     }
//! });
//! let w1 = nodes[1].peer_id().clone();
//! nodes[0].send(&w1, "echo/1", vec![0u8; 1 << 20]).await?; // returns once w1 holds it
//! let answer = nodes[0].request(&w1, "echo/1", "hello", Duration::from_secs(5)).await?;
//! assert_eq!(&answer[..], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

mod core;
pub mod frame;
mod inbox;
mod plane;
mod stream;
pub mod streams;
#[cfg(test)]
mod tests;

pub use self::core::{Arrival, DataConfig, DataCore, DataOutput, Sent};
pub use inbox::{Inbox, Incoming, Request};
pub use plane::DataPlane;
pub(crate) use plane::Queues;
pub use stream::Stream;

use crate::id::PeerId;

/// Why a message, a request or its answer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// No open link to the peer.
    #[error("no open link to {0}")]
    NotLinked(PeerId),
    /// The peer closed the link (it left) before answering.
    #[error("{0} left before answering")]
    PeerLeft(PeerId),
    /// The link failed before the answer came.
    #[error("the link to {0} was lost before the answer came")]
    LinkLost(PeerId),
    /// No answer in time.
    #[error("no answer in time")]
    TimedOut,
    /// Larger than allowed.
    #[error("{size} bytes is over the limit of {max}")]
    TooLarge {
        /// The size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The receiver refused it, and says why.
    #[error("refused: {0}")]
    Refused(String),
    /// Not a protocol name (1 to 64 ASCII letters, digits and `/ _ - .`).
    #[error("bad protocol name {0:?}")]
    BadProtocol(String),
    /// An inbox for that protocol is open already.
    #[error("protocol {0} has an inbox already")]
    InUse(String),
    /// The node has stopped.
    #[error("node stopped")]
    Stopped,
}
