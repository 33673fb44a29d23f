//! Client links beyond the admin (docs/BEHAVIOUR.md 23b): a client links to its admin and to
//! the workers it chose to `connect` to; a worker takes at most `max_client_links` clients,
//! except the admin, which takes every client (each one links to it).

use super::links::{session_of, LinkState};
use super::{MeshEvent, MeshState};
use crate::id::PeerId;
use crate::signaler::Role;
use std::time::Instant;

/// Client links a worker takes unless configured otherwise.
pub const DEFAULT_MAX_CLIENT_LINKS: usize = 16;

impl MeshState {
    /// A client chose worker `peer`: it links to it (besides the admin) until it disconnects.
    pub(super) fn on_connect(&mut self, now: Instant, peer: PeerId) {
        if self.cfg.role != Role::Client || peer == self.cfg.me {
            return tracing::warn!(%peer, "connect: only a client connects to a chosen worker");
        }
        if !self.is_present_worker(&peer) && !self.registered {
            // The room is not known yet (a command-line client connects as it starts): the
            // choice waits for the registration's member list ([`MeshState::connect_chosen`]).
            self.links.chosen.insert(peer);
            return;
        }
        if !self.is_present_worker(&peer) {
            return tracing::warn!(%peer, "connect: not a worker of this room");
        }
        self.links.chosen.insert(peer.clone());
        self.expect(now, &peer);
        let idle = matches!(
            self.links.peers.get(&peer).map(|e| &e.link),
            Some(LinkState::Waiting { .. } | LinkState::Retrying { .. })
        );
        if idle {
            self.dial(now, &peer, "chosen by the client");
        }
    }

    /// The client registered: the workers it chose before are linked now, or refused if the
    /// room has no such worker.
    pub(super) fn connect_chosen(&mut self, now: Instant) {
        for peer in std::mem::take(&mut self.links.chosen) {
            self.on_connect(now, peer);
        }
    }

    /// The client no longer wants its link to `peer` (the admin's link stays).
    pub(super) fn on_disconnect(&mut self, peer: &PeerId) {
        if !self.links.chosen.remove(peer) || self.election.admin.as_ref() == Some(peer) {
            return;
        }
        self.drop_entry(peer, "the client disconnected");
    }

    /// True when a client keeps a link to `peer`: its admin, or a worker it chose.
    pub(super) fn client_wants(&self, peer: &PeerId) -> bool {
        (self.election.admin.as_ref() == Some(peer) || self.links.chosen.contains(peer)) && self.is_present_worker(peer)
    }

    /// True when `from` is a client and this worker holds its most client links already. The
    /// admin takes every client: each client links to it, whatever it chose besides.
    pub(super) fn client_links_full(&self, from: &PeerId) -> bool {
        let is_client = |p: &PeerId| !self.is_present_worker(p) && !self.authority.keys.contains_key(p);
        let admin = self.election.admin.as_ref() == Some(&self.cfg.me);
        if self.cfg.role != Role::Worker || admin || !is_client(from) {
            return false;
        }
        let held = self
            .links
            .peers
            .iter()
            .filter(|(p, e)| {
                *p != from && is_client(p) && matches!(e.link, LinkState::Up { .. } | LinkState::Accepting { .. })
            })
            .count();
        held >= self.cfg.max_client_links
    }

    /// A client keeps its admin's link and its chosen workers' links: every other one is closed.
    pub(super) fn client_keep_only(&mut self, admin: &PeerId) {
        let others: Vec<PeerId> =
            self.links.peers.keys().filter(|p| *p != admin && !self.links.chosen.contains(*p)).cloned().collect();
        for peer in others {
            self.drop_entry(&peer, "a client links to its admin and its chosen workers only");
        }
    }

    /// Forgets `peer`'s entry, closing its link or attempt.
    fn drop_entry(&mut self, peer: &PeerId, reason: &str) {
        let Some(entry) = self.links.peers.remove(peer) else { return };
        if let Some(session) = session_of(&entry.link) {
            self.close(peer, session, reason.to_string());
            if matches!(entry.link, LinkState::Up { .. }) {
                self.emit(MeshEvent::LinkDown { peer: peer.clone(), reason: reason.to_string() });
            }
        }
    }
}
