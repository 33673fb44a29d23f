//! Admin election, verification and conflicts (BEHAVIOUR 14–18).
//!
//! - Election is a pure function of the room state ([`crate::room::elect`]) over the candidates
//!   this node can reach: itself and every present worker with an open link. Survivors of an
//!   admin departure are fully linked, so they all compute the same winner without messages.
//! - A winner other than this node gets `admin_verify`; without `admin_verify_ack` within
//!   `admin_verify_timeout` it is removed from the room state and the election runs again. So if
//!   the elected peer vanished during the election, the last worker standing elects itself.
//! - Two admins (a healed partition, a race) meet in heartbeats, which carry each side's admin;
//!   both sides settle on the election winner of the two.

use super::{LinkState, MeshEvent, MeshState};
use crate::id::PeerId;
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::time::Instant;

/// A verification in flight.
#[derive(Debug, Clone)]
pub(super) struct PendingVerify {
    pub(super) candidate: PeerId,
    pub(super) id: u64,
    pub(super) deadline: Instant,
}

impl MeshState {
    pub(super) fn set_admin(&mut self, admin: Option<PeerId>, verified: bool) {
        if self.admin == admin && self.admin_verified == verified {
            return;
        }
        tracing::info!(admin = ?admin.as_ref().map(|a| a.as_str()), verified, "admin changed");
        self.admin = admin.clone();
        self.admin_verified = verified;
        self.emit(MeshEvent::AdminChanged { admin, verified });
    }

    /// `peer` left the room, or its link is lost: re-elect if it was the admin or the candidate.
    pub(super) fn on_peer_gone(&mut self, now: Instant, peer: &PeerId) {
        if self.verify.as_ref().is_some_and(|v| &v.candidate == peer) {
            self.verify = None;
            self.elect_admin(now);
        } else if self.admin.as_ref() == Some(peer) {
            self.elect_admin(now);
        }
    }

    /// Runs the election over reachable candidates and starts verification of the winner.
    pub(super) fn elect_admin(&mut self, now: Instant) {
        if self.cfg.role == Role::Client {
            self.set_admin(None, false);
            return;
        }
        let me = self.cfg.me.clone();
        let winner = crate::room::elect(
            self.room.present().filter(|(p, _)| **p == me || self.is_linked(p)).map(|(p, r)| (p, r.priority)),
        )
        .unwrap_or(me.clone());
        if winner == me {
            self.become_admin();
            return;
        }
        if self.verify.as_ref().is_some_and(|v| v.candidate == winner) {
            return;
        }
        let id = self.next_seq;
        self.next_seq += 1;
        self.set_admin(Some(winner.clone()), false);
        self.verify =
            Some(PendingVerify { candidate: winner.clone(), id, deadline: now + self.cfg.timing.admin_verify_timeout });
        tracing::info!(candidate = %winner, "verifying elected admin");
        self.send(&winner, MeshMessage::AdminVerify { id });
    }

    pub(super) fn on_admin_verify(&mut self, now: Instant, from: &PeerId, id: u64) {
        // The sender lost its admin and elected us. If we cannot reach our admin either, take over.
        let our_admin_reachable = match &self.admin {
            Some(a) if a == &self.cfg.me => true,
            Some(a) => self.is_linked(a),
            None => false,
        };
        if !our_admin_reachable {
            self.elect_admin(now);
        }
        let admin = self.admin.clone();
        self.send(from, MeshMessage::AdminVerifyAck { id, admin });
    }

    pub(super) fn on_admin_verify_ack(&mut self, from: &PeerId, id: u64) {
        let Some(v) = &self.verify else { return };
        if &v.candidate != from || v.id != id {
            return;
        }
        self.verify = None;
        self.set_admin(Some(from.clone()), true);
    }

    /// Fires the verification timeout.
    pub(super) fn fire_verify_timer(&mut self, now: Instant) {
        let Some(v) = &self.verify else { return };
        if v.deadline > now {
            return;
        }
        let candidate = v.candidate.clone();
        tracing::warn!(%candidate, "elected admin did not answer admin_verify; removing it and re-electing");
        self.verify = None;
        self.room.remove(&candidate);
        if let Some(session) = self.peers.get(&candidate).and_then(|e| super::links::session_of(&e.link)).cloned() {
            let reason = "did not answer admin_verify".to_string();
            self.push(super::Action::Close { peer: candidate.clone(), session, reason });
        }
        self.peers.remove(&candidate);
        self.elect_admin(now);
    }

    /// A heartbeat told us whom `from` takes for admin; settle any disagreement.
    pub(super) fn on_admin_claim(&mut self, from: &PeerId, claim: Option<PeerId>) {
        let (Some(theirs), Some(ours)) = (claim, self.admin.clone()) else { return };
        if theirs == ours || !self.admin_verified {
            return;
        }
        let reachable = |s: &Self, p: &PeerId| p == &s.cfg.me || s.is_linked(p);
        if !reachable(self, &theirs) || self.room.get(&theirs).is_none() {
            return;
        }
        let priority = |s: &Self, p: &PeerId| s.room.get(p).map(|r| r.priority).unwrap_or(0);
        let winner = crate::room::elect([(&theirs, priority(self, &theirs)), (&ours, priority(self, &ours))]);
        if winner.as_ref() == Some(&theirs) {
            tracing::info!(%from, admin = %theirs, "two admins: settling on the election winner");
            if theirs == self.cfg.me {
                self.become_admin();
            } else {
                self.verify = None;
                self.set_admin(Some(theirs), true);
            }
        }
    }

    /// Is the admin lost from this node's point of view?
    pub(super) fn admin_reachable(&self) -> bool {
        match &self.admin {
            Some(a) if a != &self.cfg.me => {
                matches!(self.peers.get(a).map(|e| &e.link), Some(LinkState::Up { .. }))
            }
            _ => false,
        }
    }
}
