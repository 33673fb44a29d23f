//! Links between simulated nodes: the handshake that opens a link, messages on it, and its
//! close (signals travel as chain.rs says).

use crate::world::{Item, World};
use mesh_core::testing::chain::ChainHost;
use mesh_core::{Event, MeshMessage, PeerId, SessionId, Signal, SignalBody};

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
            let abort = Signal::new(session, SignalBody::Abort { reason: "closed".into() });
            self.send_signal(from, peer, mesh_core::PathOrder::Configured, abort);
        }
    }

    pub(crate) fn send(&mut self, from: &PeerId, to: &PeerId, session: SessionId, msg: MeshMessage) {
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
            self.log(|| format!("{a} and {b}: the handshake of {session} fails"));
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
