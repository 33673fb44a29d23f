//! Links between simulated nodes: signals by the server or a relay, the handshake that opens
//! a link, messages on it, and its close.

use crate::world::{Item, World};
use mesh_core::{Event, MeshMessage, PathOrder, PeerId, Role, SessionId};

impl World {
    pub(crate) fn close(&mut self, from: &PeerId, peer: &PeerId, session: SessionId, reason: String) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.closed_at(from) {
            return;
        }
        let was_live = s.live();
        s.close(from);
        if was_live {
            // The transport flushes what was sent, then tells the other end (once the packets
            // get through: a cut holds it, and the other end may give up on silence first).
            let inc = if &s.offerer.0 == peer { Some(s.offerer.1) } else { s.answerer.1 };
            if let Some(inc) = inc {
                let event = Event::LinkClosed { peer: from.clone(), session: session.clone(), reason };
                self.push_ordered(from, peer, session, Item::Input { to: peer.clone(), inc, event });
            }
        } else if !s.open {
            self.signal(from, peer, Event::SessionAborted { from: from.clone(), session });
        }
    }

    pub(crate) fn send(&mut self, from: &PeerId, to: &PeerId, msg: MeshMessage) {
        let Some(session) = self.hosts[from].state.link_session(to).cloned() else { return };
        let Some(s) = self.sessions.get(&session) else { return };
        if !s.live() {
            return;
        }
        let inc = if &s.offerer.0 == to { Some(s.offerer.1) } else { s.answerer.1 };
        let Some(inc) = inc else { return };
        let opened_there = if &s.answerer.0 == to { s.answerer_open_at } else { 0 };
        let item = Item::LinkMsg { to: to.clone(), inc, from: from.clone(), session: session.clone(), msg };
        if !matches!(&item, Item::LinkMsg { msg: MeshMessage::Heartbeat { .. }, .. }) {
            self.push_ordered(from, to, session, item);
            return;
        }
        // Heartbeats: unordered, partly reliable, and never before the link opened there.
        if self.net.is_cut(from, to) {
            return;
        }
        let Some(sent) = self.net.unordered_sent(&mut self.rng, self.t) else { return };
        let at = (sent + self.net.delay(&mut self.rng, from, to)).max(opened_there);
        self.at(at, item);
    }

    /// Sends a signal the way the node's chain would; returns when it arrives, if a path exists.
    pub(crate) fn signal(&mut self, from: &PeerId, to: &PeerId, event: Event) -> Option<u64> {
        let inc_to = self.inc_of(to)?;
        let inc_from = self.inc_of(from)?;
        let by_server = (self.server.up && self.server.has(from, inc_from) && self.server.has(to, inc_to))
            .then(|| self.net.server_delay(&mut self.rng) * 2);
        let by_relay = self.relay_delay(from, to);
        let delay = match self.hosts[from].state.path_order(to) {
            PathOrder::RendezvousFirst => by_server.or(by_relay),
            PathOrder::Configured => by_relay.or(by_server),
        };
        let Some(delay) = delay else {
            self.log(|| format!("{from}: signal to {to} lost: no path"));
            return None;
        };
        let at = if by_server == Some(delay) {
            self.server_sends(to, inc_to, delay, event)
        } else {
            let at = self.t + delay;
            self.at(at, Item::Input { to: to.clone(), inc: inc_to, event });
            at
        };
        Some(at)
    }

    /// The delay through the sender's admin, if it is a live worker linked to both ends.
    pub(crate) fn relay_delay(&mut self, from: &PeerId, to: &PeerId) -> Option<u64> {
        let relay = self.hosts[from].state.admin().0.cloned()?;
        let h = self.hosts.get(&relay)?;
        if &relay == from || &relay == to || h.frozen || h.role != Role::Worker {
            return None;
        }
        if !self.carries(from, &relay) || !self.carries(&relay, to) {
            return None;
        }
        Some(self.net.delay(&mut self.rng, from, &relay) + self.net.delay(&mut self.rng, &relay, to))
    }

    /// True when `a`'s link to `b` is live and its packets get through.
    pub fn carries(&self, a: &PeerId, b: &PeerId) -> bool {
        let Some(session) = self.hosts.get(a).and_then(|h| h.state.link_session(b)) else { return false };
        self.sessions.get(session).is_some_and(|s| s.live()) && !self.net.is_cut(a, b)
    }

    pub(crate) fn connect(&mut self, session: &SessionId) {
        let Some(s) = self.sessions.get(session) else { return };
        let ((a, inc_a), (b, Some(inc_b))) = (s.offerer.clone(), s.answerer.clone()) else { return };
        let up = |w: &Self, p: &PeerId, inc: u32| w.hosts.get(p).is_some_and(|h| h.inc == inc && !h.frozen);
        if s.closed_offerer
            || s.closed_answerer
            || !up(self, &a, inc_a)
            || !up(self, &b, inc_b)
            || self.net.is_cut(&a, &b)
        {
            return; // the handshake fails: both ends give up at their set-up timeout
        }
        if let Some(s) = self.sessions.get_mut(session) {
            s.open = true;
        }
        self.checker.on_connect(self.t, session, &self.sessions);
        // The answerer sees the link open before anything the offerer sends on it.
        let (t, session) = (self.t, session.clone());
        self.at(
            t,
            Item::Input {
                to: a.clone(),
                inc: inc_a,
                event: Event::LinkOpened { peer: b.clone(), session: session.clone() },
            },
        );
        let opened = Item::Input {
            to: b.clone(),
            inc: inc_b,
            event: Event::LinkOpened { peer: a.clone(), session: session.clone() },
        };
        let at_b = self.push_ordered(&a, &b, session.clone(), opened);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.answerer_open_at = at_b;
        }
    }
}
