//! Behaviour tests of the state machine on virtual time.
//!
//! [`Sim`] wires several [`MeshState`]s together the way a driver would: a rendezvous that answers
//! registrations and sends joined/left notices, links that open when an offer is accepted, and
//! fault injection (cut a pair, crash a node). Time only moves when a test advances it.

mod authority;
mod behaviour;
mod clients;
mod events;
mod failover;
mod sim;
mod trust;

use crate::id::PeerId;
use crate::signal::{SessionId, Signal, SignalBody};
pub(super) use crate::state::Output as Out;
use crate::state::{Event, MeshState};
use crate::wire::MeshMessage;

/// The configuration of `me`, unsigned, in room `r`: priority 0, default timings, seed 1.
pub(super) fn config(me: &str, role: crate::signaler::Role) -> crate::state::StateConfig {
    crate::state::StateConfig {
        room: crate::RoomId::new("r").expect("valid"),
        me: PeerId::new(me).expect("valid"),
        role,
        record: sim::Sim::record(0),
        timing: crate::state::Timing::default(),
        seed: 1,
        key: None,
        first_session: 1,
        trust: Default::default(),
        max_client_links: crate::state::DEFAULT_MAX_CLIENT_LINKS,
        heartbeat_phase: None,
    }
}

/// Takes every queued output of `s`.
pub(super) fn drain(s: &mut MeshState) -> Vec<Out> {
    s.drain_all()
}

/// The messages among `outs`, with their recipients.
pub(super) fn sent(outs: &[Out]) -> Vec<(PeerId, MeshMessage)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send(t) => Some((t.to.clone(), t.msg.clone())),
            _ => None,
        })
        .collect()
}

/// `msg` arriving from `from` over its open link with `s` (or over no link, if none is open).
pub(super) fn on_link(s: &MeshState, from: PeerId, msg: MeshMessage) -> Event {
    let session = s.link_session(&from).cloned().unwrap_or(SessionId { offerer: from.clone(), seq: u64::MAX });
    Event::Message { from, session, msg }
}

/// An unsigned signal from `from`, as a signaler delivers it.
pub(super) fn signal(from: PeerId, session: SessionId, body: SignalBody) -> Event {
    Event::Signal { from, signal: Signal::new(session, body), key: None }
}

/// An unsigned offer from `from`.
pub(super) fn offer(from: PeerId, session: SessionId) -> Event {
    signal(from, session, SignalBody::Offer { sdp: "v=0".into() })
}
