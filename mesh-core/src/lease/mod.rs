//! Reservations: a client asks a worker for a lease (`MeshNode::reserve`); the worker grants at
//! most one at a time, shows `reserved` in its record while it is held, and frees it when the
//! lease expires, is released, or its holder's link closes. Two clients never hold the same
//! worker: one task per worker serves every ask, in order.
//!
//! The asks are requests on protocol [`PROTOCOL`] of the data plane, JSON (docs/LINK.md 5).

mod book;

pub use book::{Grant, LeaseBook, Refusal, MAX_LEASE};

use crate::data::Incoming;
use crate::id::PeerId;
use crate::state::MeshEvent;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The protocol of reservation asks.
pub const PROTOCOL: &str = "mesh/lease/1";

/// A client's ask.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum LeaseAsk {
    /// Hold the worker for `ms` milliseconds (renews the asker's own lease).
    Reserve {
        /// The lease's length.
        ms: u64,
    },
    /// Give lease `lease` back.
    Release {
        /// Its id.
        lease: u64,
    },
}

/// A worker's answer to a `reserve` it granted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGranted {
    /// The lease's id.
    pub lease: u64,
    /// Milliseconds until it ends unless renewed.
    pub ms: u64,
}

/// A lease a client holds on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The worker held.
    pub worker: PeerId,
    /// The lease's id.
    pub id: u64,
    /// When it ends unless renewed (reserve again) or released.
    pub until: tokio::time::Instant,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Serves a worker's reservations until the node stops: `show` is told each change of holder
/// (the node shows `reserved` while there is one); it returns false once the node stopped.
pub(crate) async fn serve(
    mut inbox: crate::data::Inbox,
    mut events: broadcast::Receiver<MeshEvent>,
    show: impl Fn(Option<PeerId>) -> bool + Send,
) {
    let mut book = LeaseBook::default();
    loop {
        let held = book.holder().cloned();
        let deadline = book.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            incoming = inbox.recv() => match incoming {
                None => return,
                Some(Incoming::Request(req)) => {
                    let answer = match serde_json::from_slice::<LeaseAsk>(&req.body) {
                        Err(err) => Err(format!("not a lease ask: {err}")),
                        Ok(LeaseAsk::Reserve { ms }) => match book.reserve(now(), &req.from, Duration::from_millis(ms)) {
                            Ok(g) => {
                                let ms = g.until.saturating_duration_since(now()).as_millis() as u64;
                                Ok(serde_json::to_vec(&LeaseGranted { lease: g.id, ms }).unwrap_or_default())
                            }
                            Err(Refusal::Held) => Err("reserved by another peer".to_string()),
                            Err(Refusal::Empty) => Err("a lease of 0 ms".to_string()),
                        },
                        Ok(LeaseAsk::Release { lease }) if book.release(&req.from, lease) => Ok(b"{}".to_vec()),
                        Ok(LeaseAsk::Release { .. }) => Err("no such lease of yours".to_string()),
                    };
                    match answer {
                        Ok(body) => req.respond(body).await,
                        Err(why) => req.fail(&why).await,
                    }
                }
                Some(_) => {} // a message, not an ask: nothing to answer
            },
            event = events.recv() => match event {
                Ok(MeshEvent::LinkDown { peer, .. }) => {
                    book.gone(&peer);
                }
                Err(broadcast::error::RecvError::Closed) => return,
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                book.expire(now());
            }
        }
        let now_held = book.holder().cloned();
        if now_held != held && !show(now_held) {
            return;
        }
    }
}
