//! The node's signaler chain over `signaling = ["relay", "ws"]`, as a model both simulators
//! share: a signal goes by relay first (the real [`relay_order`], the envelope handed to the
//! sender's own state machine, which carries it over its links), and by the server when no relay
//! delivers it within the relay signaler's timeout or every relay refuses; a signal whose attempt
//! the state machine marked [`PathOrder::RendezvousFirst`] goes by the server first.
//!
//! A simulator implements the required methods of [`ChainHost`] (its clock, its server, how an
//! event reaches a state machine) and calls the provided ones where the node's driver would hand a
//! signal to its chain, pass on `RelayAnswered`, or wake the relay signaler's timer.

use crate::chain::PathOrder;
use crate::id::PeerId;
use crate::relay_route::{relay_order, DEFAULT_MAX_RELAYS, DEFAULT_RELAY_TIMEOUT};
use crate::signal::Signal;
use crate::signaler::RelayOutcome;
use crate::state::{Event, MeshState};
use crate::wire::RelayErrorReason;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A signal waiting for its relays' answers.
struct Relaying {
    from: PeerId,
    incarnation: u32,
    to: PeerId,
    signal: Signal,
    /// Relays not tried yet, best first.
    next: VecDeque<PeerId>,
}

/// The chain's bookkeeping: signals on their way by relay, by envelope id.
#[derive(Default)]
pub struct Chain {
    relaying: BTreeMap<u64, Relaying>,
    next_id: u64,
}

/// A simulated world that carries signals the way a node's chain does.
pub trait ChainHost {
    /// The world's chain bookkeeping.
    fn chain(&mut self) -> &mut Chain;
    /// Which start of `peer` runs now (`None`: no process): a relay of an earlier start is dropped.
    fn incarnation(&self, peer: &PeerId) -> Option<u32>;
    /// `peer`'s state machine, for its admin and its linked peers.
    fn state(&self, peer: &PeerId) -> Option<&MeshState>;
    /// Carries `signal` by the server; false when it cannot (down, or an end not registered).
    fn by_server(&mut self, from: &PeerId, to: &PeerId, signal: Signal) -> bool;
    /// Hands `event` to `peer`'s state machine and carries out what it says.
    fn to_state(&mut self, peer: &PeerId, event: Event);
    /// Calls [`ChainHost::relay_timed_out`] for envelope `id` after `after`.
    fn wake_after(&mut self, after: Duration, id: u64);
    /// A signal was lost: no path carried it (for a trace).
    fn lost(&mut self, _from: &PeerId, _to: &PeerId, _why: &str) {}

    /// Sends `signal` from `from` to `to` in `order`, as the node's chain would.
    fn send_signal(&mut self, from: &PeerId, to: &PeerId, order: PathOrder, signal: Signal) {
        if self.incarnation(from).is_none() {
            return;
        }
        match order {
            PathOrder::RendezvousFirst => {
                if !self.by_server(from, to, signal.clone()) && !start_relay(self, from, to, signal) {
                    self.lost(from, to, "no path");
                }
            }
            PathOrder::Configured => {
                if !start_relay(self, from, to, signal.clone()) {
                    fall_back(self, from, to, signal);
                }
            }
        }
    }

    /// `from`'s state machine says what became of envelope `id` (its `RelayAnswered`).
    fn relay_answered(&mut self, from: &PeerId, id: u64, outcome: RelayOutcome) {
        if self.chain().relaying.get(&id).is_none_or(|r| &r.from != from) {
            return; // given up already (timed out, or fell back)
        }
        match outcome {
            RelayOutcome::Delivered => {
                self.chain().relaying.remove(&id);
            }
            RelayOutcome::Refused(RelayErrorReason::NotLinked) | RelayOutcome::RelayGone => try_next(self, id),
            RelayOutcome::Refused(_) => {
                if let Some(r) = self.chain().relaying.remove(&id) {
                    fall_back(self, &r.from, &r.to, r.signal);
                }
            }
        }
    }

    /// The relay signaler's timeout passed for envelope `id`: the chain tries the server.
    fn relay_timed_out(&mut self, id: u64) {
        if let Some(r) = self.chain().relaying.remove(&id) {
            if self.incarnation(&r.from) == Some(r.incarnation) {
                fall_back(self, &r.from, &r.to, r.signal);
            }
        }
    }
}

/// The server is the last path.
fn fall_back<H: ChainHost + ?Sized>(host: &mut H, from: &PeerId, to: &PeerId, signal: Signal) {
    if !host.by_server(from, to, signal) {
        host.lost(from, to, "no relay and no server delivered it");
    }
}

/// Starts relaying: false when `from` has no linked relay to try.
fn start_relay<H: ChainHost + ?Sized>(host: &mut H, from: &PeerId, to: &PeerId, signal: Signal) -> bool {
    let (Some(state), Some(incarnation)) = (host.state(from), host.incarnation(from)) else { return false };
    let (admin, linked) = (state.admin().0.cloned(), state.linked_peers());
    let next: VecDeque<PeerId> = relay_order(from, to, admin.as_ref(), &linked, DEFAULT_MAX_RELAYS).into();
    if next.is_empty() {
        return false;
    }
    let chain = host.chain();
    chain.next_id += 1;
    let id = chain.next_id;
    chain.relaying.insert(id, Relaying { from: from.clone(), incarnation, to: to.clone(), signal, next });
    host.wake_after(DEFAULT_RELAY_TIMEOUT, id);
    try_next(host, id);
    true
}

/// Hands the envelope to the next relay's link, or falls back to the server.
fn try_next<H: ChainHost + ?Sized>(host: &mut H, id: u64) {
    let Some(r) = host.chain().relaying.get_mut(&id) else { return };
    let (from, incarnation, to, signal) = (r.from.clone(), r.incarnation, r.to.clone(), r.signal.clone());
    let Some(via) = r.next.pop_front() else {
        host.chain().relaying.remove(&id);
        return fall_back(host, &from, &to, signal);
    };
    if host.incarnation(&from) == Some(incarnation) {
        host.to_state(&from, Event::Relay { id, via, to, signal });
    }
}
