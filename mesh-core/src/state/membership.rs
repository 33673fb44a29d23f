//! Who is in the room (docs/BEHAVIOUR.md 4-7, 26): registration with the rendezvous, join and
//! leave notices (from the rendezvous, or the admin over the mesh), the admin's peer list, and
//! peers the restarted rendezvous no longer lists.

use super::links::{session_of, LinkState};
use super::{MeshEvent, MeshState};
use crate::id::PeerId;
use crate::room::MemberInfo;
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::time::Instant;

impl MeshState {
    pub(super) fn on_registered(&mut self, now: Instant, members: Vec<MemberInfo>, admin: Option<PeerId>) {
        let first = !self.registered;
        self.registered = true;
        for m in &members {
            self.note_present(&m.peer);
            if self.learn_key(&m.peer, m.key.as_ref(), true) {
                self.merge_record(&m.peer, &m.peer, &m.record);
            }
        }
        if let Some(a) = &admin {
            self.election.announced_admin = Some(a.clone());
        }
        if !first {
            self.forget_unlisted(now, &members);
        }
        if !first && self.cfg.role == Role::Client {
            // A client links to no worker but its admin: the rendezvous is its only word on who
            // is present, and a worker it no longer lists (gone while it was down) is gone. (It
            // would count against every admin's proof for ever.)
            let gone: Vec<PeerId> =
                self.room.present().map(|(p, _)| p.clone()).filter(|p| !members.iter().any(|m| &m.peer == p)).collect();
            for peer in gone {
                self.on_peer_left(now, &peer);
            }
        }
        if self.health.next_heartbeat.is_none() {
            self.health.next_heartbeat = Some(self.next_beat(now));
            self.health.next_health = Some(now + self.cfg.timing.health_interval);
        }
        if self.cfg.role == Role::Client {
            if self.election.admin.is_none() || !self.admin_linked() {
                self.client_retarget(now, None);
            }
            if first {
                self.connect_chosen(now);
            }
            return;
        }
        // A member whose key or record was refused is not taken in (nor dialed).
        let others: Vec<PeerId> = members
            .iter()
            .map(|m| m.peer.clone())
            .filter(|p| p != &self.cfg.me && self.room.get(p).is_some())
            .collect();
        // Introduced before anything dials: the admin, dialed first below, is signaled by the
        // rendezvous that named it (its attempt's path order is fixed when it is dialed).
        for peer in &others {
            self.introduce(now, peer);
        }
        if others.is_empty() && self.election.admin.is_none() {
            self.become_admin(now);
        } else if first || self.election.admin.is_none() {
            // Follow the admin the rendezvous names (verified once linked), else the one the
            // room would elect.
            let admin = admin.filter(|a| a != &self.cfg.me || others.is_empty());
            let admin = admin.or_else(|| {
                crate::room::elect(
                    members.iter().filter(|m| m.peer != self.cfg.me).map(|m| (&m.peer, m.record.priority)),
                )
            });
            if let Some(admin) = admin {
                self.follow(now, admin);
            }
        } else if self.is_admin() {
            // Registered again (the server restarted): tell it who the admin is.
            self.announce_admin(now);
        }
        // A newcomer dials every worker the rendezvous named, at once: the rendezvous orders
        // registrations, so of any two workers exactly one registered after the other and that
        // one dials (no crossing offers). Registered again (the rendezvous restarted) the same
        // holds: a linked peer keeps its link, one being retried keeps its backoff, and one
        // never linked (a newcomer that reached the restarted server first) is dialed now —
        // it counts this node as the joiner and waits for its offer.
        let why = if first { "rendezvous" } else { "rendezvous_again" };
        for peer in others {
            self.ensure_dial(now, &peer, why);
        }
    }

    /// Registered again (the rendezvous restarted): a peer it no longer lists may have died
    /// while the server was down, and nobody would ever say it left; it would be followed, or
    /// dialed, for ever, and listed in the registry. One this node never reached is forgotten
    /// now. One it was linked to is marked: if its link is down and it has not registered again
    /// within [`UNLISTED_GRACE`], it is forgotten when its next retry is due. A live peer
    /// registers again and is introduced anew.
    pub(super) fn forget_unlisted(&mut self, now: Instant, members: &[MemberInfo]) {
        let unlisted: Vec<(PeerId, bool)> = self
            .links
            .peers
            .iter()
            .filter(|(p, _)| !members.iter().any(|m| &m.peer == *p))
            .map(|(p, e)| (p.clone(), e.ever_linked))
            .collect();
        for (peer, linked_before) in unlisted {
            if linked_before {
                if let Some(entry) = self.links.peers.get_mut(&peer) {
                    entry.unlisted_since.get_or_insert(now);
                }
            } else {
                tracing::info!(%peer, "the rendezvous no longer lists a peer never reached; forgetting it");
                self.on_peer_left(now, &peer);
            }
        }
    }

    /// A worker joined: the rendezvous says so (`by_rendezvous`), or the admin over the mesh.
    pub(super) fn on_peer_joined(&mut self, now: Instant, member: MemberInfo, by_rendezvous: bool) {
        if member.peer == self.cfg.me {
            return;
        }
        if by_rendezvous {
            self.note_present(&member.peer);
        } else if self.authority.departed.contains(&member.peer) {
            // The admin's notice may be older than the rendezvous' word that the peer left
            // (it waited in a cut link): only the rendezvous, or a link, brings a peer back.
            return;
        }
        if !self.learn_key(&member.peer, member.key.as_ref(), by_rendezvous) {
            return;
        }
        if !self.merge_record(&member.peer, &member.peer, &member.record) && self.room.get(&member.peer).is_none() {
            return; // a newcomer whose record does not verify is not taken in
        }
        if by_rendezvous && self.is_admin() {
            // Workers whose own server connection is gone learn of the newcomer (and its key, to
            // check the signals it will relay to them) from the admin.
            let others: Vec<PeerId> =
                self.linked_peers().into_iter().filter(|p| p != &member.peer && self.is_present_worker(p)).collect();
            for p in others {
                self.send(&p, MeshMessage::PeerJoined { member: member.clone() });
            }
        }
        if let Some(entry) = self.links.peers.get_mut(&member.peer).filter(|_| by_rendezvous) {
            entry.unlisted_since = None;
        }
        if self.cfg.role == Role::Worker {
            if by_rendezvous {
                self.introduce(now, &member.peer);
            } else {
                self.expect(now, &member.peer);
            }
            self.maybe_send_peer_list(&member.peer);
        }
    }

    pub(super) fn on_peer_left(&mut self, now: Instant, peer: &PeerId) {
        if peer == &self.cfg.me {
            return;
        }
        self.forget_worker(peer);
        self.authority.keys.remove(peer);
        self.authority.client_keys.remove(peer);
        self.forget_proofs_of(peer);
        self.note_departed(peer);
        if self.election.announced_admin.as_ref() == Some(peer) {
            // The rendezvous named the leaver admin and forgets it now: it names nobody. If
            // this node holds the role (it kept it while the other took it, frozen or cut off,
            // and won back), it must say so, or newcomers are pointed at no admin.
            self.election.announced_admin = None;
            if self.is_admin() {
                self.announce_admin(now);
            }
        }
        if let Some(entry) = self.links.peers.remove(peer) {
            if let Some(session) = session_of(&entry.link) {
                let reason = "peer left the room".to_string();
                self.close(peer, session, reason.clone());
                if matches!(entry.link, LinkState::Up { .. }) {
                    self.emit(MeshEvent::LinkDown { peer: peer.clone(), reason });
                }
            }
        }
        self.on_peer_gone(now, peer, true);
    }

    /// As admin, sends `peer` the list of every other linked worker, once it is linked and known.
    pub(super) fn maybe_send_peer_list(&mut self, peer: &PeerId) {
        if !self.is_admin() || !self.is_linked(peer) || !self.is_present_worker(peer) {
            return;
        }
        if self.links.peers.get(peer).is_some_and(|e| e.peer_list_sent) {
            return;
        }
        let peers: Vec<MemberInfo> = self
            .present_members()
            .into_iter()
            .filter(|m| &m.peer != peer && (m.peer == self.cfg.me || self.is_linked(&m.peer)))
            .collect();
        if let Some(entry) = self.links.peers.get_mut(peer) {
            entry.peer_list_sent = true;
        }
        self.send(peer, MeshMessage::PeerList { admin: self.cfg.me.clone(), peers });
    }

    /// The admin's peer list (its sender checked by the caller).
    pub(super) fn on_peer_list(&mut self, now: Instant, from: &PeerId, peers: Vec<MemberInfo>) {
        crate::mark!("peer_list", peer = %from, members = peers.len());
        for m in &peers {
            if self.learn_key(&m.peer, m.key.as_ref(), false) {
                self.merge_record(from, &m.peer, &m.record);
            }
        }
        for m in peers {
            if m.peer != self.cfg.me && self.room.get(&m.peer).is_some() {
                self.ensure_dial(now, &m.peer, "peer_list");
            }
        }
    }
}
