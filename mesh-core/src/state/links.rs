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

use super::{LinkOp, MeshEvent, MeshState};
use crate::id::PeerId;
use crate::signal::SessionId;
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::collections::BTreeMap;
use std::time::Instant;

/// Per-peer link state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LinkState {
    /// Known, nothing in flight; `dial_at` is when to dial if the peer has not dialed us.
    Waiting { dial_at: Instant },
    /// We offered.
    Dialing { session: SessionId },
    /// We answered its offer.
    Accepting { session: SessionId },
    /// Open.
    Up { session: SessionId, last_seen: Instant },
    /// Lost; dial again at `due`.
    Retrying { due: Instant },
}

#[derive(Debug, Clone)]
pub(super) struct PeerEntry {
    pub(super) link: LinkState,
    pub(super) ever_linked: bool,
    /// The rendezvous named this peer (registration list or a join notice).
    pub(super) introduced: bool,
    /// An offer sent by the rendezvous went unanswered: signal this peer by relay first.
    pub(super) relay_first: bool,
    /// When the pending offer, sent by the rendezvous, must have been answered.
    pub(super) answer_due: Option<Instant>,
    /// The rendezvous left this peer out when this node registered again, at this time.
    pub(super) unlisted_since: Option<Instant>,
    pub(super) retry_attempt: u32,
    pub(super) peer_list_sent: bool,
    /// The peer's view of the admin from its latest heartbeat.
    pub(super) view: Option<super::admin::PeerView>,
}

/// Every peer this node links to, or tries to.
#[derive(Debug)]
pub(super) struct Links {
    pub(super) peers: BTreeMap<PeerId, PeerEntry>,
    /// The sequence number of this node's next session.
    pub(super) next_seq: u64,
    /// State of the retry jitter's generator (seeded by configuration).
    pub(super) rng: u64,
    /// The highest session of each peer whose offer this node handled: a signal can arrive
    /// twice (by relay, and by the rendezvous after the relay's timeout), and an offer handled
    /// once is never handled again.
    pub(super) offers_seen: BTreeMap<PeerId, u64>,
    /// A client's chosen workers (clients.rs): linked besides the admin.
    pub(super) chosen: std::collections::BTreeSet<PeerId>,
}

/// Peers whose last offer is remembered (the oldest-named are forgotten first beyond this).
const MAX_OFFERS_SEEN: usize = 4096;

impl Links {
    /// Notes an offer of `session`; false if this one, or a later one, was handled before.
    pub(super) fn first_offer(&mut self, session: &SessionId) -> bool {
        if self.offers_seen.get(&session.offerer).is_some_and(|seen| *seen >= session.seq) {
            return false;
        }
        if self.offers_seen.len() >= MAX_OFFERS_SEEN && !self.offers_seen.contains_key(&session.offerer) {
            self.offers_seen.pop_first();
        }
        self.offers_seen.insert(session.offerer.clone(), session.seq);
        true
    }
}

impl Links {
    /// The first per-peer timer due: an offer wait, a retry, a link's silence limit (`silence`
    /// after it was last heard), or the wait for an answer the rendezvous carried.
    pub(super) fn next_deadline(&self, silence: std::time::Duration) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|entry| match &entry.link {
                LinkState::Waiting { dial_at } => Some(*dial_at),
                LinkState::Retrying { due } => Some(*due),
                LinkState::Up { last_seen, .. } => Some(*last_seen + silence),
                LinkState::Dialing { .. } => entry.answer_due,
                LinkState::Accepting { .. } => None,
            })
            .min()
    }
}

/// The session of a link state, if an attempt or link exists.
pub(super) fn session_of(link: &LinkState) -> Option<&SessionId> {
    match link {
        LinkState::Dialing { session } | LinkState::Accepting { session } | LinkState::Up { session, .. } => {
            Some(session)
        }
        _ => None,
    }
}

impl MeshState {
    /// Registers `peer` as a worker we should be linked to, without dialing yet.
    pub(super) fn expect(&mut self, now: Instant, peer: &PeerId) {
        if peer == &self.cfg.me {
            return;
        }
        let dial_at = now + self.cfg.timing.offer_wait;
        // A worker only the admin (or an offer) named is on probation, as one the restarted
        // rendezvous stopped listing is: never linked and never named by the rendezvous within
        // UNLISTED_GRACE, it is forgotten (the admin may have known of it from a snapshot
        // older than the peer's death, and nobody else will ever say it left).
        let unlisted_since = (self.cfg.role == Role::Worker).then_some(now);
        self.links.peers.entry(peer.clone()).or_insert(PeerEntry {
            link: LinkState::Waiting { dial_at },
            ever_linked: false,
            introduced: false,
            relay_first: false,
            answer_due: None,
            unlisted_since,
            retry_attempt: 0,
            peer_list_sent: false,
            view: None,
        });
    }

    /// Registers `peer` as a worker the rendezvous named (see [`MeshState::path_order`]).
    pub(super) fn introduce(&mut self, now: Instant, peer: &PeerId) {
        self.expect(now, peer);
        if let Some(entry) = self.links.peers.get_mut(peer) {
            entry.introduced = true;
            entry.unlisted_since = None;
        }
    }

    /// Dials `peer` unless a link or attempt to it exists; a pending retry keeps its backoff.
    pub(super) fn ensure_dial(&mut self, now: Instant, peer: &PeerId, why: &'static str) {
        self.expect(now, peer);
        let idle = matches!(self.links.peers.get(peer).map(|e| &e.link), Some(LinkState::Waiting { .. }));
        if idle {
            self.dial(now, peer, why);
        }
    }

    /// Starts an attempt to `peer`; `why` names the rule that dials (a timeline field).
    pub(super) fn dial(&mut self, now: Instant, peer: &PeerId, why: &'static str) {
        let session = self.new_session();
        crate::mark!("dial", %peer, %session, why);
        let by_rendezvous = self.path_order(peer) == crate::PathOrder::RendezvousFirst;
        let answer_due = by_rendezvous.then(|| now + self.cfg.timing.answer_wait);
        if let Some(entry) = self.links.peers.get_mut(peer) {
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
        if self.client_links_full(&from) {
            let reason = format!("this worker holds its {} client links already", self.cfg.max_client_links);
            self.link_op(LinkOp::Reject { peer: from, session, reason });
            return;
        }
        self.expect(now, &from);
        let Some(entry) = self.links.peers.get_mut(&from) else { return };
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
        let current = self.links.peers.get(from).and_then(|e| session_of(&e.link)).cloned();
        if current.as_ref() == Some(session) {
            // Close our end too: the transport session must not outlive the state's view of it.
            let reason = "peer aborted the session".to_string();
            self.close(from, session, reason.clone());
            self.on_link_closed(now, from, session, reason);
        }
    }

    pub(super) fn on_link_opened(&mut self, now: Instant, peer: PeerId, session: SessionId) {
        let matches = self.links.peers.get(&peer).and_then(|e| session_of(&e.link)) == Some(&session);
        if !matches {
            let reason = "stale session".to_string();
            self.close(&peer, &session, reason);
            return;
        }
        let Some(entry) = self.links.peers.get_mut(&peer) else { return };
        if matches!(entry.link, LinkState::Up { .. }) {
            return;
        }
        let reconnect = entry.ever_linked;
        entry.link = LinkState::Up { session, last_seen: now };
        entry.unlisted_since = None; // it is alive
        self.authority.departed.remove(&peer); // a link opened: it is alive, whatever was said before
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

    /// Closes the link or attempt `session` to `peer`; envelopes relayed on it get no answer.
    pub(super) fn close(&mut self, peer: &PeerId, session: &SessionId, reason: String) {
        self.fail_relays_on(session);
        self.link_op(LinkOp::Close { peer: peer.clone(), session: session.clone(), reason });
    }

    pub(super) fn on_link_closed(&mut self, now: Instant, peer: &PeerId, session: &SessionId, reason: String) {
        self.fail_relays_on(session);
        let Some(entry) = self.links.peers.get(peer) else { return };
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
            Role::Worker => self.is_present_worker(peer) || self.election.admin.as_ref() == Some(peer),
            Role::Client => self.client_wants(peer),
        };
        if wanted {
            self.schedule_retry(now, peer);
        } else {
            self.links.peers.remove(peer);
        }
        if was_up {
            self.on_peer_gone(now, peer, false);
        } else if self.cfg.role == Role::Client
            && self.election.admin.as_ref() == Some(peer)
            && !self.election.admin_verified
        {
            // The admin a client was pointed at cannot be reached: look for the room's admin.
            self.client_retarget(now, Some(peer));
        }
    }

    /// Closes the link to `peer` (heartbeat silence) and treats it as lost.
    pub(super) fn drop_link(&mut self, now: Instant, peer: &PeerId, reason: &str) {
        let Some(session) = self.links.peers.get(peer).and_then(|e| session_of(&e.link)).cloned() else { return };
        self.close(peer, &session, reason.into());
        self.on_link_closed(now, peer, &session, reason.into());
    }

    /// Dials the admin this node follows now: an idle entry at once, a pending retry too (the
    /// admin is known to be alive, so its backoff is not waited out).
    pub(super) fn dial_admin_now(&mut self, now: Instant, admin: &PeerId) {
        self.expect(now, admin);
        let idle = matches!(
            self.links.peers.get(admin).map(|e| &e.link),
            Some(LinkState::Waiting { .. } | LinkState::Retrying { .. })
        );
        if idle {
            self.dial(now, admin, "admin");
        }
    }
}
