//! The signaling server's side of the world: registrations, join and leave notices, admin
//! announcements, each delivered over the node's one WebSocket, first in first out.

use crate::server::Registration;
use crate::world::{Item, World};
use mesh_core::{Announcement, Event, PeerId, Role};

impl World {
    pub(crate) fn announce(&mut self, from: &PeerId, inc: u32, what: Announcement) {
        if !self.server.up || !self.server.has(from, inc) {
            return;
        }
        match what {
            Announcement::Admin(_) => {
                self.server.first = None;
                if self.server.admin.replace(from.clone()).as_ref() == Some(from) {
                    return; // told again: the server tells nobody
                }
                for (p, pinc) in self.server.others(from) {
                    let delay = self.net.server_delay(&mut self.rng) * 2;
                    self.server_sends(&p, pinc, delay, Event::AdminAnnounced(from.clone()));
                }
            }
            Announcement::Withdraw => {
                if self.server.admin.as_ref() == Some(from) {
                    self.server.admin = None;
                }
            }
            Announcement::Leaving => self.deregister(from, inc),
        }
    }

    /// The server drops `peer`'s registration and tells everyone else it left.
    pub(crate) fn deregister(&mut self, peer: &PeerId, inc: u32) {
        if !self.server.up || !self.server.remove(peer, inc) {
            return;
        }
        self.log(|| format!("server: {peer} left"));
        for (p, pinc) in self.server.others(peer) {
            let delay = self.net.server_delay(&mut self.rng);
            self.server_sends(&p, pinc, delay, Event::PeerLeft(peer.clone()));
        }
    }

    pub(crate) fn register(&mut self, peer: &PeerId, inc: u32) {
        let Some(host) = self.hosts.get_mut(peer).filter(|h| h.inc == inc) else { return };
        if !self.server.up || host.frozen {
            host.needs_register = true;
            return;
        }
        let (role, rejoin) = (host.role, host.registered_once());
        let record = host.state.room_state().get(peer).cloned().filter(|_| role == Role::Worker);
        let full = role == Role::Worker && self.server.workers() >= 10;
        if self.server.holds_name(peer) || full {
            // duplicate_peer (the old connection is not gone yet) or room_full: try again later.
            self.at(self.t + 1000, Item::Register { to: peer.clone(), inc });
            return;
        }
        host.needs_register = false;
        self.log(|| format!("server: {peer} registered"));
        let members = self.server.members_for(peer);
        let admin = self.server.admin.clone().or_else(|| self.server.first.clone());
        if role == Role::Worker && !rejoin && self.server.workers() == 0 && self.server.admin.is_none() {
            self.server.first = Some(peer.clone()); // not a rejoin: the room's first worker
        }
        self.server.registered.push(Registration { peer: peer.clone(), inc, role, record: record.clone() });
        let delay = self.net.server_delay(&mut self.rng);
        self.server_sends(peer, inc, delay, Event::Registered { members, admin });
        if let Some(record) = record {
            let member = mesh_core::MemberInfo::new(peer.clone(), record);
            for (p, pinc) in self.server.others(peer) {
                let delay = self.net.server_delay(&mut self.rng);
                self.server_sends(&p, pinc, delay, Event::PeerJoined(member.clone()));
            }
        }
    }

    /// Schedules a registration of `peer` after `after` ms plus the trip to the server.
    pub(crate) fn register_later(&mut self, peer: &PeerId, after: u64) {
        let Some(inc) = self.inc_of(peer) else { return };
        let at = self.t + after + self.net.server_delay(&mut self.rng);
        self.at(at, Item::Register { to: peer.clone(), inc });
    }

    /// Delivers `event` from the server to `to`, `delay` ms from now but never before what the
    /// server sent it earlier (one WebSocket: first in, first out). Returns the arrival time.
    pub(crate) fn server_sends(&mut self, to: &PeerId, inc: u32, delay: u64, event: Event) -> u64 {
        let last = self.server_fifo.entry(to.clone()).or_insert(0);
        let at = (self.t + delay).max(*last);
        *last = at;
        self.at(at, Item::Input { to: to.clone(), inc, event });
        at
    }
}
