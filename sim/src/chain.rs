//! The node's signaler chain, as `MeshNode` runs it over `signaling = ["relay", "ws"]`: the
//! shared model of `mesh_core::testing::chain`, on this world's clock, server and links.

use crate::world::{Item, World};
use mesh_core::testing::chain::{Chain, ChainHost};
use mesh_core::{Event, MeshState, PeerId, Signal};
use std::time::Duration;

impl ChainHost for World {
    fn chain(&mut self) -> &mut Chain {
        &mut self.chain
    }

    fn incarnation(&self, peer: &PeerId) -> Option<u32> {
        self.inc_of(peer)
    }

    fn state(&self, peer: &PeerId) -> Option<&MeshState> {
        self.hosts.get(peer).map(|h| &h.state)
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

    fn to_state(&mut self, peer: &PeerId, event: Event) {
        self.handle(peer, event);
    }

    fn wake_after(&mut self, after: Duration, id: u64) {
        self.at(self.t + after.as_millis() as u64, Item::RelayTimeout(id));
    }

    fn lost(&mut self, from: &PeerId, to: &PeerId, why: &str) {
        self.log(|| format!("{from}: signal to {to} lost: {why}"));
    }
}
