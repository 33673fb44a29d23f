//! Who dials whom, crossing offers, link loss and retries (docs/BEHAVIOUR.md 5–9, 21).
//!
//! - A newcomer dials every worker the rendezvous names when it registers (the admin first),
//!   then any worker on the admin's peer list the rendezvous did not name.
//! - Existing workers wait for the newcomer's offer; if none comes within `offer_wait` they dial
//!   it themselves, so no pair is left unlinked whatever the timing.
//! - Crossing offers: when both sides of a pair offer, the offer of the lower peer id wins; the
//!   other side drops its own attempt and answers. Both apply the same rule, so one link forms.
//! - A lost link is retried with exponential backoff (`retry_initial` doubling up to `retry_max`,
//!   minus up to 20% jitter); the retry is cancelled when the link comes back or the peer leaves.

use super::{LinkOp, LinkState, MeshEvent, MeshState, PeerEntry};
use crate::id::PeerId;
use crate::room::MemberInfo;
use crate::signal::SessionId;
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::time::{Duration, Instant};

/// The session of a link state, if an attempt or link exists.
pub(super) fn session_of(link: &LinkState) -> Option<&SessionId> {
    match link {
        LinkState::Dialing { session } | LinkState::Accepting { session } | LinkState::Up { session, .. } => {
            Some(session)
        }
        _ => None,
    }
}

/// How long a peer the restarted rendezvous left out has to register again (its reconnect
/// backoff is at most 10 s) before this node, unable to reach it, forgets it.
pub(super) const UNLISTED_GRACE: Duration = Duration::from_secs(15);

/// Base delay of retry `attempt` (0-based): initial · 2^attempt, capped.
pub(super) fn retry_base(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial.saturating_mul(1u32 << attempt.min(20)).min(max)
}

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
            self.announced_admin = Some(a.clone());
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
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(now + self.cfg.timing.heartbeat_interval);
            self.next_health = Some(now + self.cfg.timing.health_interval);
        }
        if self.cfg.role == Role::Client {
            if self.admin.is_none() || !self.admin_linked() {
                self.client_retarget(now, None);
            }
            return;
        }
        // A member whose key or record was refused is not taken in (nor dialed).
        let others: Vec<PeerId> = members
            .iter()
            .map(|m| m.peer.clone())
            .filter(|p| p != &self.cfg.me && self.room.get(p).is_some())
            .collect();
        if others.is_empty() && self.admin.is_none() {
            self.become_admin(now);
        } else if first || self.admin.is_none() {
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
        // one dials (no crossing offers). Registered again (the rendezvous restarted): the links
        // are there; anyone missing is dialed after `offer_wait`.
        for peer in others {
            self.introduce(now, &peer);
            if first {
                self.ensure_dial(now, &peer, "rendezvous");
            } else {
                self.expect(now, &peer);
            }
        }
    }

    /// Registered again (the rendezvous restarted): a peer it no longer lists may have died
    /// while the server was down, and nobody would ever say it left; it would be followed, or
    /// dialed, for ever, and listed in the registry. One this node never reached is forgotten
    /// now. One it was linked to is marked: if its link is down and it has not registered again
    /// within [`UNLISTED_GRACE`], it is forgotten when its next retry is due. A live peer
    /// registers again and is introduced anew.
    fn forget_unlisted(&mut self, now: Instant, members: &[MemberInfo]) {
        let unlisted: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(p, _)| !members.iter().any(|m| &m.peer == *p))
            .map(|(p, e)| (p.clone(), e.ever_linked))
            .collect();
        for (peer, linked_before) in unlisted {
            if linked_before {
                if let Some(entry) = self.peers.get_mut(&peer) {
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
        } else if self.departed.contains(&member.peer) {
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
        if let Some(entry) = self.peers.get_mut(&member.peer).filter(|_| by_rendezvous) {
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
        self.room.remove(peer);
        self.keys.remove(peer);
        self.client_keys.remove(peer);
        self.forget_proofs_of(peer);
        self.note_departed(peer);
        if self.announced_admin.as_ref() == Some(peer) {
            // The rendezvous named the leaver admin and forgets it now: it names nobody. If
            // this node holds the role (it kept it while the other took it, frozen or cut off,
            // and won back), it must say so, or newcomers are pointed at no admin.
            self.announced_admin = None;
            if self.is_admin() {
                self.announce_admin(now);
            }
        }
        if let Some(entry) = self.peers.remove(peer) {
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

    /// Registers `peer` as a worker we should be linked to, without dialing yet.
    fn expect(&mut self, now: Instant, peer: &PeerId) {
        if peer == &self.cfg.me {
            return;
        }
        let dial_at = now + self.cfg.timing.offer_wait;
        self.peers.entry(peer.clone()).or_insert(PeerEntry {
            link: LinkState::Waiting { dial_at },
            ever_linked: false,
            introduced: false,
            relay_first: false,
            answer_due: None,
            unlisted_since: None,
            retry_attempt: 0,
            peer_list_sent: false,
            view: None,
        });
    }

    /// Registers `peer` as a worker the rendezvous named (see [`MeshState::path_order`]).
    fn introduce(&mut self, now: Instant, peer: &PeerId) {
        self.expect(now, peer);
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.introduced = true;
        }
    }

    /// Dials `peer` unless a link or attempt to it exists; a pending retry keeps its backoff.
    pub(super) fn ensure_dial(&mut self, now: Instant, peer: &PeerId, why: &'static str) {
        self.expect(now, peer);
        let idle = matches!(self.peers.get(peer).map(|e| &e.link), Some(LinkState::Waiting { .. }));
        if idle {
            self.dial(now, peer, why);
        }
    }

    /// Starts an attempt to `peer`; `why` names the rule that dials (a timeline field).
    fn dial(&mut self, now: Instant, peer: &PeerId, why: &'static str) {
        let session = self.new_session();
        crate::mark!("dial", %peer, %session, why);
        let by_rendezvous = self.path_order(peer) == crate::PathOrder::RendezvousFirst;
        let answer_due = by_rendezvous.then(|| now + self.cfg.timing.answer_wait);
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.link = LinkState::Dialing { session: session.clone() };
            entry.answer_due = answer_due;
        }
        self.counters.dials += 1;
        let order = self.path_order(peer);
        self.link_op(LinkOp::Dial { peer: peer.clone(), session, order });
    }

    pub(super) fn on_offer(
        &mut self,
        now: Instant,
        from: PeerId,
        session: SessionId,
        offer: crate::signal::SignalBody,
    ) {
        if from == self.cfg.me || session.offerer != from || self.cfg.role == Role::Client {
            let reason = "offer refused: not a valid offer for this node".to_string();
            self.link_op(LinkOp::Reject { peer: from, session, reason });
            return;
        }
        self.expect(now, &from);
        let Some(entry) = self.peers.get_mut(&from) else { return };
        let replace = match &entry.link {
            LinkState::Dialing { session: mine } => {
                if self.cfg.me < from {
                    // Crossing offers: the lower peer id's offer wins, and that is ours.
                    let reason = "crossing offers: the lower peer id's offer wins".to_string();
                    self.link_op(LinkOp::Reject { peer: from, session, reason });
                    return;
                }
                Some(mine.clone())
            }
            LinkState::Accepting { session: current } | LinkState::Up { session: current, .. } => {
                if current.offerer == from && current.seq >= session.seq {
                    let reason = "stale offer".to_string();
                    self.link_op(LinkOp::Reject { peer: from, session, reason });
                    return;
                }
                Some(current.clone())
            }
            LinkState::Waiting { .. } | LinkState::Retrying { .. } => None,
        };
        let was_up = matches!(entry.link, LinkState::Up { .. });
        entry.link = LinkState::Accepting { session: session.clone() };
        if let Some(old) = replace {
            let reason = "superseded by a newer offer".to_string();
            self.close(&from, &old, reason.clone());
            if was_up {
                self.emit(MeshEvent::LinkDown { peer: from.clone(), reason });
            }
        }
        self.counters.accepts += 1;
        let order = self.path_order(&from);
        self.link_op(LinkOp::Accept { peer: from, session, offer, order });
    }

    pub(super) fn on_aborted(&mut self, now: Instant, from: &PeerId, session: &SessionId) {
        let current = self.peers.get(from).and_then(|e| session_of(&e.link)).cloned();
        if current.as_ref() == Some(session) {
            // Close our end too: the transport session must not outlive the state's view of it.
            let reason = "peer aborted the session".to_string();
            self.close(from, session, reason.clone());
            self.on_link_closed(now, from, session, reason);
        }
    }

    pub(super) fn on_link_opened(&mut self, now: Instant, peer: PeerId, session: SessionId) {
        let matches = self.peers.get(&peer).and_then(|e| session_of(&e.link)) == Some(&session);
        if !matches {
            let reason = "stale session".to_string();
            self.close(&peer, &session, reason);
            return;
        }
        let Some(entry) = self.peers.get_mut(&peer) else { return };
        if matches!(entry.link, LinkState::Up { .. }) {
            return;
        }
        let reconnect = entry.ever_linked;
        entry.link = LinkState::Up { session, last_seen: now };
        self.departed.remove(&peer); // a link opened: it is alive, whatever was said before
        entry.ever_linked = true;
        entry.retry_attempt = 0;
        self.counters.links_opened += 1;
        if reconnect {
            self.counters.reconnects += 1;
        }
        self.emit(MeshEvent::LinkUp { peer: peer.clone(), reconnect });
        if self.cfg.role == Role::Worker {
            let record = self.cfg.record.clone();
            self.send(&peer, MeshMessage::Record { peer: self.cfg.me.clone(), record });
        }
        self.maybe_send_peer_list(&peer);
        if self.is_admin() {
            // A rival admin weighs this node's claim by its proof: send it before any heartbeat.
            self.send_proof(&peer);
        }
        self.on_admin_link_opened(now, &peer);
    }

    /// As admin, sends `peer` the list of every other linked worker, once it is linked and known.
    pub(super) fn maybe_send_peer_list(&mut self, peer: &PeerId) {
        if !self.is_admin() || !self.is_linked(peer) || !self.is_present_worker(peer) {
            return;
        }
        if self.peers.get(peer).is_some_and(|e| e.peer_list_sent) {
            return;
        }
        let peers: Vec<MemberInfo> = self
            .present_members()
            .into_iter()
            .filter(|m| &m.peer != peer && (m.peer == self.cfg.me || self.is_linked(&m.peer)))
            .collect();
        if let Some(entry) = self.peers.get_mut(peer) {
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

    /// Closes the link or attempt `session` to `peer`; envelopes relayed on it get no answer.
    pub(super) fn close(&mut self, peer: &PeerId, session: &SessionId, reason: String) {
        self.fail_relays_on(session);
        self.link_op(LinkOp::Close { peer: peer.clone(), session: session.clone(), reason });
    }

    pub(super) fn on_link_closed(&mut self, now: Instant, peer: &PeerId, session: &SessionId, reason: String) {
        self.fail_relays_on(session);
        let Some(entry) = self.peers.get(peer) else { return };
        if session_of(&entry.link) != Some(session) {
            return; // an abandoned attempt; nothing depended on it
        }
        let was_up = matches!(entry.link, LinkState::Up { .. });
        if was_up {
            tracing::info!(%peer, %reason, "link lost");
            self.emit(MeshEvent::LinkDown { peer: peer.clone(), reason });
            self.requeue_queries_sent_to(peer);
        } else {
            tracing::debug!(%peer, %reason, "link attempt failed");
        }
        let wanted = match self.cfg.role {
            Role::Worker => self.is_present_worker(peer) || self.admin.as_ref() == Some(peer),
            Role::Client => self.admin.as_ref() == Some(peer) && self.is_present_worker(peer),
        };
        if wanted {
            self.schedule_retry(now, peer);
        } else {
            self.peers.remove(peer);
        }
        if was_up {
            self.on_peer_gone(now, peer, false);
        } else if self.cfg.role == Role::Client && self.admin.as_ref() == Some(peer) && !self.admin_verified {
            // The admin a client was pointed at cannot be reached: look for the room's admin.
            self.client_retarget(now, Some(peer));
        }
    }

    /// Closes the link to `peer` (heartbeat silence) and treats it as lost.
    pub(super) fn drop_link(&mut self, now: Instant, peer: &PeerId, reason: &str) {
        let Some(session) = self.peers.get(peer).and_then(|e| session_of(&e.link)).cloned() else { return };
        self.close(peer, &session, reason.into());
        self.on_link_closed(now, peer, &session, reason.into());
    }

    fn schedule_retry(&mut self, now: Instant, peer: &PeerId) {
        let (initial, max) = (self.cfg.timing.retry_initial, self.cfg.timing.retry_max);
        let jitter = self.next_random();
        let Some(entry) = self.peers.get_mut(peer) else { return };
        let attempt = entry.retry_attempt;
        let base = retry_base(initial, max, attempt);
        let delay = base - base.mul_f64(0.2 * jitter);
        entry.retry_attempt = attempt.saturating_add(1);
        entry.link = LinkState::Retrying { due: now + delay };
        self.emit(MeshEvent::RetryScheduled { peer: peer.clone(), attempt, delay });
    }

    /// The answer to our offer for `session` arrived: the rendezvous reached the peer.
    pub(super) fn on_answer(&mut self, from: &PeerId, session: &SessionId) {
        if let Some(entry) = self.peers.get_mut(from) {
            if matches!(&entry.link, LinkState::Dialing { session: s } if s == session) {
                entry.answer_due = None;
            }
        }
    }

    /// Offers sent by the rendezvous and still unanswered at their due time: the peer may be
    /// cut off from the rendezvous, so the attempt is made again at once, by relay first.
    fn fire_answer_waits(&mut self, now: Instant) {
        let unanswered: Vec<(PeerId, SessionId)> = self
            .peers
            .iter()
            .filter_map(|(p, e)| match &e.link {
                LinkState::Dialing { session } if e.answer_due.is_some_and(|t| t <= now) => {
                    Some((p.clone(), session.clone()))
                }
                _ => None,
            })
            .collect();
        for (peer, session) in unanswered {
            tracing::info!(%peer, after = ?self.cfg.timing.answer_wait, "no answer by the rendezvous; asking again by relay");
            let reason = "no answer by the rendezvous; dialing again by relay".to_string();
            self.close(&peer, &session, reason);
            if let Some(entry) = self.peers.get_mut(&peer) {
                entry.relay_first = true;
                entry.answer_due = None;
            }
            self.dial(now, &peer, "answer_wait");
        }
    }

    /// Dials every peer whose retry or offer wait is due.
    pub(super) fn fire_link_timers(&mut self, now: Instant) {
        self.fire_answer_waits(now);
        let due: Vec<(PeerId, &'static str)> = self
            .peers
            .iter()
            .filter_map(|(p, e)| match e.link {
                LinkState::Waiting { dial_at } if dial_at <= now => Some((p.clone(), "offer_wait")),
                LinkState::Retrying { due } if due <= now => Some((p.clone(), "retry")),
                _ => None,
            })
            .collect();
        for (peer, why) in due {
            let grace = UNLISTED_GRACE;
            if self.peers.get(&peer).and_then(|e| e.unlisted_since).is_some_and(|t| now >= t + grace) {
                tracing::info!(%peer, "the rendezvous has not listed this unreachable peer since it restarted; forgetting it");
                self.on_peer_left(now, &peer);
                continue;
            }
            self.dial(now, &peer, why);
        }
    }

    /// xorshift64, seeded by configuration: jitter in [0, 1).
    fn next_random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Dials the admin this node follows now: an idle entry at once, a pending retry too (the
    /// admin is known to be alive, so its backoff is not waited out).
    pub(super) fn dial_admin_now(&mut self, now: Instant, admin: &PeerId) {
        self.expect(now, admin);
        let idle = matches!(
            self.peers.get(admin).map(|e| &e.link),
            Some(LinkState::Waiting { .. } | LinkState::Retrying { .. })
        );
        if idle {
            self.dial(now, admin, "admin");
        }
    }

    /// A client keeps one link, to its admin: every other link and attempt is closed.
    pub(super) fn client_keep_only(&mut self, admin: &PeerId) {
        let others: Vec<PeerId> = self.peers.keys().filter(|p| *p != admin).cloned().collect();
        for peer in others {
            if let Some(entry) = self.peers.remove(&peer) {
                if let Some(session) = session_of(&entry.link) {
                    let reason = "a client links to its admin only".to_string();
                    self.close(&peer, session, reason.clone());
                    if matches!(entry.link, LinkState::Up { .. }) {
                        self.emit(MeshEvent::LinkDown { peer, reason });
                    }
                }
            }
        }
    }
}
