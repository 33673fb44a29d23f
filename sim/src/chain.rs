//! The node's signaler chain, as `MeshNode` runs it over `signaling = ["relay", "ws"]`: a signal
//! goes by relay first (the real relay order of `signaling-relay`, envelopes carried over the
//! simulated links by the real state machines), and by the server when no relay delivers it
//! within the relay signaler's timeout; a peer the server introduced and this node never
//! linked is signaled by the server first (the state machine's [`PathOrder`]).

use crate::world::{Item, World};
use mesh_core::{Event, PathOrder, PeerId, RelayErrorReason, RelayOutcome, Signal};
use std::collections::VecDeque;

/// A signal waiting for its relays' answers.
pub(crate) struct Relaying {
    from: PeerId,
    inc: u32,
    to: PeerId,
    signal: Signal,
    /// Relays not tried yet, best first.
    next: VecDeque<PeerId>,
}

/// Relays tried per signal (the relay signaler's default).
fn max_relays() -> usize {
    signaling_relay::RelayConfig::default().max_relays
}

/// How long the relay signaler waits for a relay's answer, across all tries.
fn relay_timeout_ms() -> u64 {
    signaling_relay::RelayConfig::default().timeout.as_millis() as u64
}

impl World {
    /// Sends `signal` from `from` to `to` the way the node's chain would, in `order` (the one
    /// the state machine fixed for the attempt; aborts go in the configured order).
    pub(crate) fn send_signal(&mut self, from: &PeerId, to: &PeerId, order: PathOrder, signal: Signal) {
        if !self.hosts.contains_key(from) {
            return;
        }
        match order {
            PathOrder::RendezvousFirst => {
                if !self.by_server(from, to, signal.clone()) && !self.by_relay(from, to, signal) {
                    self.log(|| format!("{from}: signal to {to} lost: no path"));
                }
            }
            PathOrder::Configured => {
                if !self.by_relay(from, to, signal.clone()) {
                    self.fall_back(from, to, signal);
                }
            }
        }
    }

    /// The server carries the signal if both ends are registered with it.
    fn by_server(&mut self, from: &PeerId, to: &PeerId, signal: Signal) -> bool {
        let (Some(inc_from), Some(inc_to)) = (self.inc_of(from), self.inc_of(to)) else { return false };
        if !(self.server.up && self.server.has(from, inc_from) && self.server.has(to, inc_to)) {
            return false;
        }
        let delay = self.net.server_delay(&mut self.rng) * 2;
        let event = Event::Signal { from: from.clone(), signal, key: None };
        self.server_sends(to, inc_to, delay, event);
        true
    }

    /// The signal failed by relay: the server is the last path.
    fn fall_back(&mut self, from: &PeerId, to: &PeerId, signal: Signal) {
        if !self.by_server(from, to, signal) {
            self.log(|| format!("{from}: signal to {to} lost: no relay and no server delivered it"));
        }
    }

    /// Starts relaying: false when `from` has no linked relay to try.
    fn by_relay(&mut self, from: &PeerId, to: &PeerId, signal: Signal) -> bool {
        let Some(host) = self.hosts.get(from) else { return false };
        let (admin, linked) = (host.state.admin().0.cloned(), host.state.linked_peers());
        let next: VecDeque<PeerId> =
            signaling_relay::relay_order(from, to, admin.as_ref(), &linked, max_relays()).into();
        if next.is_empty() {
            return false;
        }
        self.next_relay += 1;
        let id = self.next_relay;
        let inc = host.inc;
        self.relaying.insert(id, Relaying { from: from.clone(), inc, to: to.clone(), signal, next });
        self.at(self.t + relay_timeout_ms(), Item::RelayTimeout(id));
        self.try_next_relay(id);
        true
    }

    /// Hands the envelope to the next relay's link, or falls back to the server.
    fn try_next_relay(&mut self, id: u64) {
        let Some(r) = self.relaying.get_mut(&id) else { return };
        let (from, inc, to, signal) = (r.from.clone(), r.inc, r.to.clone(), r.signal.clone());
        let Some(via) = r.next.pop_front() else {
            self.relaying.remove(&id);
            return self.fall_back(&from, &to, signal);
        };
        if self.inc_of(&from) == Some(inc) {
            self.handle(&from, Event::Relay { id, via, to, signal });
        }
    }

    /// `from`'s state machine says what became of envelope `id`.
    pub(crate) fn relay_answered(&mut self, from: &PeerId, id: u64, outcome: RelayOutcome) {
        if self.relaying.get(&id).is_none_or(|r| &r.from != from) {
            return; // given up already (timed out, or fell back)
        }
        match outcome {
            RelayOutcome::Delivered => {
                self.relaying.remove(&id);
            }
            RelayOutcome::Refused(RelayErrorReason::NotLinked) | RelayOutcome::RelayGone => self.try_next_relay(id),
            RelayOutcome::Refused(_) => {
                if let Some(r) = self.relaying.remove(&id) {
                    self.fall_back(&r.from, &r.to, r.signal);
                }
            }
        }
    }

    /// The relay signaler's timeout passed for envelope `id`: the chain tries the server.
    pub(crate) fn relay_timed_out(&mut self, id: u64) {
        if let Some(r) = self.relaying.remove(&id) {
            if self.inc_of(&r.from) == Some(r.inc) {
                self.fall_back(&r.from, &r.to, r.signal);
            }
        }
    }
}
