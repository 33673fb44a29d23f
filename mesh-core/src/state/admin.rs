//! Admin election, verification, stickiness and conflicts (docs/BEHAVIOUR.md 14–18).
//!
//! - **Verified** means one thing everywhere: this node is the admin, or the admin answered
//!   `admin_verify` with an ack naming itself. Joiners, clients, and nodes that adopt another
//!   admin from a heartbeat all verify before they say so.
//! - **Election** is a pure function of the room state ([`crate::room::elect`]) over the candidates
//!   this node reaches: itself and every present worker with an open link. A partitioned node
//!   does not elect. A winner other than this node gets `admin_verify`; without an answer within
//!   `admin_verify_timeout` it is removed from the room state and the election runs again.
//! - **Sticky**: losing only the link to the admin (the admin still in the room) does not move
//!   the role. The node keeps the admin and asks the room: if a linked worker's heartbeat since
//!   the loss says it still reaches the admin when a heartbeat interval and a half has passed,
//!   the loss was a flap and the link is retried; as soon as every linked worker's latest
//!   heartbeat says it does not (or none says it does by then), the admin is lost and the
//!   election runs.
//! - **Epochs**: an election made by a strict majority of the present workers raises the admin
//!   epoch by one, once the winner holds their votes (see [`super::proof`]). Two admins (a healed
//!   partition, a race) settle on the higher proven epoch, then on the election rule, so a
//!   majority's admin keeps the role and an even split settles by priority.
//! - **Only a claimer's own word, with proof**: a rival admin is weighed only on its own
//!   heartbeat naming itself; a third party's view of the admin moves nothing (only the admin
//!   followed, naming the one it stepped down for, sends this node to verify that one). Clients'
//!   heartbeats carry no authority at all.

use super::{MeshEvent, MeshState};
use crate::id::PeerId;
use crate::signaler::{Announcement, Role};
use crate::wire::MeshMessage;
use std::time::Instant;

/// The link to the admin was lost while the admin is still in the room.
#[derive(Debug, Clone)]
pub(super) struct Suspect {
    admin: PeerId,
    since: Instant,
    pub(super) deadline: Instant,
}

/// What a peer's latest heartbeat said about the admin.
#[derive(Debug, Clone)]
pub(super) struct PeerView {
    admin: Option<PeerId>,
    admin_linked: bool,
    /// The epoch it claimed.
    epoch: u64,
    at: Instant,
    /// Its open links to workers, as it said.
    pub(super) links: Option<u32>,
}

/// Who the admin is, as this node sees it, and how sure it is.
#[derive(Debug, Default)]
pub(super) struct Election {
    pub(super) admin: Option<PeerId>,
    pub(super) admin_verified: bool,
    /// The admin epoch: raised by every election a strict majority of the room makes, so on a
    /// healed partition the majority's admin wins.
    pub(super) epoch: u64,
    pub(super) verify: Option<super::verify::PendingVerify>,
    /// Candidates that answered `admin_verify` naming another admin, in this chase.
    pub(super) verify_hops: Vec<PeerId>,
    /// The link to the admin was lost while it is still in the room: flap or death, to be told
    /// apart by what the other workers report.
    pub(super) suspect: Option<Suspect>,
    /// The last admin the rendezvous announced.
    pub(super) announced_admin: Option<PeerId>,
    /// When this node last told the rendezvous it is admin.
    pub(super) last_announce: Option<Instant>,
}

impl Election {
    /// The verification's resend or deadline, or the suspicion's deadline, whichever is first.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let verify = self.verify.iter().flat_map(|v| std::iter::once(v.deadline).chain(v.resend_at));
        verify.chain(self.suspect.as_ref().map(|s| s.deadline)).min()
    }
}

impl MeshState {
    pub(super) fn set_admin(&mut self, admin: Option<PeerId>, verified: bool) {
        if self.election.admin == admin && self.election.admin_verified == verified {
            return;
        }
        tracing::info!(admin = ?admin.as_ref().map(|a| a.as_str()), verified, epoch = self.election.epoch, "admin changed");
        self.election.admin = admin.clone();
        self.election.admin_verified = verified;
        self.emit(MeshEvent::AdminChanged { admin, verified });
    }

    /// True when this node is the admin or holds an open link to it.
    pub(super) fn admin_linked(&self) -> bool {
        match &self.election.admin {
            Some(a) => a == &self.cfg.me || self.is_linked(a),
            None => false,
        }
    }

    /// Takes `admin` for this node's admin, unverified: verified as soon as it is linked.
    pub(super) fn follow(&mut self, now: Instant, admin: PeerId) {
        if admin == self.cfg.me && self.cfg.role == Role::Worker {
            self.become_admin(now);
            return;
        }
        self.election.suspect = None;
        if self.election.admin.as_ref() == Some(&admin)
            && (self.election.admin_verified || self.election.verify.as_ref().is_some_and(|v| v.candidate == admin))
        {
            return;
        }
        if self.is_admin() {
            tracing::info!(admin = %admin, "stepping down: another admin holds the role");
            self.announce(Announcement::Withdraw);
        }
        self.election.verify = None;
        self.set_admin(Some(admin.clone()), false);
        if self.cfg.role == Role::Client {
            self.client_keep_only(&admin);
        }
        if self.is_linked(&admin) {
            self.start_verify(now, admin, self.election.epoch);
        } else {
            self.dial_admin_now(now, &admin);
        }
    }

    /// The link to `peer` opened: verify it if it is the admin this node waits to verify.
    pub(super) fn on_admin_link_opened(&mut self, now: Instant, peer: &PeerId) {
        if self.election.admin.as_ref() == Some(peer) && !self.election.admin_verified && self.election.verify.is_none()
        {
            self.start_verify(now, peer.clone(), self.election.epoch);
        }
    }

    /// `peer` left the room (`left`), or its open link is lost.
    pub(super) fn on_peer_gone(&mut self, now: Instant, peer: &PeerId, left: bool) {
        let was_candidate = self.election.verify.as_ref().is_some_and(|v| &v.candidate == peer);
        if self.election.admin.as_ref() != Some(peer) && !was_candidate {
            return;
        }
        if self.cfg.role == Role::Client {
            self.election.verify = None;
            self.client_retarget(now, Some(peer));
        } else if !left && !was_candidate && self.election.admin_verified && self.is_present_worker(peer) {
            self.suspect_admin(now, peer.clone());
        } else {
            self.election.verify = None;
            self.elect_admin(now);
        }
    }

    pub(super) fn suspect_admin(&mut self, now: Instant, admin: PeerId) {
        tracing::info!(%admin, "lost the link to the admin; asking the room whether it still reaches it");
        let deadline = now + self.cfg.timing.heartbeat_interval.mul_f64(1.5);
        self.election.suspect = Some(Suspect { admin, since: now, deadline });
        self.broadcast_view(); // so the others can tell at once that this node lost it too
    }

    /// Decides a suspicion: a flap (someone still reaches the admin) or a lost admin.
    pub(super) fn review_suspect(&mut self, now: Instant) {
        let Some(s) = self.election.suspect.clone() else { return };
        if self.election.admin.as_ref() != Some(&s.admin)
            || self.is_linked(&s.admin)
            || !self.is_present_worker(&s.admin)
        {
            self.election.suspect = None;
            if self.election.admin.as_ref() == Some(&s.admin) && !self.is_present_worker(&s.admin) {
                self.elect_admin(now);
            }
            return;
        }
        let (mut reached, mut unanswered) = (false, false);
        for peer in self.linked_peers() {
            if peer == s.admin || !self.is_present_worker(&peer) {
                continue;
            }
            match self.links.peers.get(&peer).and_then(|e| e.view.as_ref()) {
                Some(v) if v.at >= s.since => reached |= v.admin.as_ref() == Some(&s.admin) && v.admin_linked,
                _ => unanswered = true,
            }
        }
        // A "still linked" report may have left before its sender noticed the same silence, so a
        // flap is only concluded at the deadline; "lost" as soon as every linked worker said so.
        if now >= s.deadline && reached {
            tracing::info!(admin = %s.admin, "the room still reaches the admin: a link flap; keeping it and retrying");
            self.election.suspect = None;
        } else if (!unanswered && !reached) || now >= s.deadline {
            tracing::info!(admin = %s.admin, "no linked worker reaches the admin; it is lost");
            self.election.suspect = None;
            self.elect_admin(now);
        }
    }

    /// Runs the election over reachable candidates and starts verification of the winner.
    pub(super) fn elect_admin(&mut self, now: Instant) {
        if self.cfg.role == Role::Client {
            self.client_retarget(now, None);
            return;
        }
        if self.partition_now() {
            if self.election.admin.as_ref().is_some_and(|a| !self.is_present_worker(a)) {
                self.set_admin(None, false);
            }
            tracing::info!("partitioned: no election until the partition heals");
            return;
        }
        let me = self.cfg.me.clone();
        let (reached, present) = self.reach();
        let epoch = (self.election.epoch + u64::from(reached * 2 > present)).min(super::proof::MAX_EPOCH);
        let winner = crate::room::elect(
            self.room.present().filter(|(p, _)| **p == me || self.is_linked(p)).map(|(p, r)| (p, r.priority)),
        )
        .unwrap_or(me.clone());
        if self.election.verify.as_ref().is_some_and(|v| v.candidate == winner) {
            return;
        }
        if winner == me {
            self.become_admin(now);
            let vote = self.vote_for(epoch, &me);
            self.add_vote(now, &me, epoch, vote.as_deref());
            return;
        }
        self.election.suspect = None;
        self.set_admin(Some(winner.clone()), false);
        self.start_verify(now, winner, epoch);
    }

    /// A heartbeat from `from`: note its view of the admin, and settle any disagreement.
    pub(super) fn on_heartbeat(
        &mut self,
        now: Instant,
        from: &PeerId,
        claim: Option<PeerId>,
        epoch: u64,
        (admin_linked, links): (bool, Option<u32>),
    ) {
        if let Some(entry) = self.links.peers.get_mut(from) {
            entry.view = Some(PeerView { admin: claim.clone(), admin_linked, epoch, at: now, links });
        }
        let Some(theirs) = claim else { return };
        // The candidate that answered "not yet" now says it holds the role: ask again at once
        // rather than wait for the resend timer.
        if &theirs == from && self.election.verify.as_ref().is_some_and(|v| &v.candidate == from && v.answered) {
            if let Some(v) = &mut self.election.verify {
                v.resend_at = Some(now);
            }
            self.fire_verify_timer(now);
        }
        if self.cfg.role == Role::Client {
            // The admin itself says another peer holds the role: follow it (and verify its proof).
            if self.election.admin.as_ref() == Some(from) && &theirs != from && admin_linked {
                self.follow(now, theirs);
            }
            return;
        }
        if !self.is_present_worker(from) {
            return; // a client's heartbeat (or a departed peer's) says nothing about the admin
        }
        if &theirs != from {
            // A third party's view moves nothing. Only the admin this node follows (or the
            // candidate it verifies), naming the admin it follows itself, sends this node to
            // verify that one.
            let stepped_down = self.speaks_for_admin(from) && admin_linked;
            if stepped_down && theirs != self.cfg.me && self.is_present_worker(&theirs) {
                tracing::info!(admin = %from, to = %theirs, "the admin stepped down for another; verifying that one");
                self.follow(now, theirs);
            }
            return;
        }
        self.weigh_claim_of(now, from);
    }

    /// `from`'s latest heartbeat names itself admin: follow it if its claim outweighs this node's
    /// admin. Both claims weigh by their proven epochs (an unproven claim weighs as epoch 0), then
    /// by the election rule, so two admins judge each other alike and one steps down.
    pub(super) fn weigh_claim_of(&mut self, now: Instant, from: &PeerId) {
        let Some(view) = self.links.peers.get(from).and_then(|e| e.view.as_ref()) else { return };
        if view.admin.as_ref() != Some(from) {
            return;
        }
        let claimed = view.epoch;
        let Some(ours) = self.election.admin.clone() else { return };
        if &ours == from {
            if self.proven(from, claimed) && claimed > self.election.epoch {
                self.election.epoch = claimed;
            }
            if self.election.admin_verified {
                // Our vote must be among those of the admin's epoch (we may have voted for
                // another, one the admin never reached): its proof holds only with most votes.
                self.vote_once(from, claimed);
            }
            return;
        }
        let (theirs_epoch, ours_epoch) = (self.proven_epoch(from), self.proven_epoch(&ours));
        let priority = |s: &Self, p: &PeerId| s.room.get(p).map(|r| r.priority).unwrap_or(0);
        let key = |s: &Self, p: &PeerId, e: u64| (e, priority(s, p), std::cmp::Reverse(p.clone()));
        if key(self, from, theirs_epoch) > key(self, &ours, ours_epoch) {
            tracing::info!(admin = %from, epoch = claimed, "two admins: following the later or stronger one");
            self.follow(now, from.clone());
        } else if self.is_admin()
            && self.election.last_announce.is_none_or(|t| now >= t + self.cfg.timing.heartbeat_interval)
        {
            // We keep the role: make sure the rendezvous points newcomers at us, and that the
            // rival can weigh our proof.
            self.announce_admin(now);
            self.send_proof(from);
        }
    }

    pub(super) fn become_admin(&mut self, now: Instant) {
        if self.is_admin() && self.election.admin_verified {
            return;
        }
        self.election.verify = None;
        self.election.suspect = None;
        self.set_admin(Some(self.cfg.me.clone()), true);
        self.announce_admin(now);
        // Linked workers are already in the mesh; only newcomers get a peer list.
        for (_, entry) in self.links.peers.iter_mut() {
            if matches!(entry.link, super::LinkState::Up { .. }) {
                entry.peer_list_sent = true;
            }
        }
        self.broadcast_view();
    }

    /// Tells the rendezvous this node is admin, with its proof, once it is one (the rendezvous
    /// names an admin only on a proof).
    pub(super) fn announce_admin(&mut self, now: Instant) {
        self.election.last_announce = Some(now);
        let proof = self.my_proof();
        self.proofs.unannounced = !self.majority_of(&proof);
        if !self.proofs.unannounced {
            self.announce(Announcement::Admin(proof));
        }
    }

    /// Sends this node's view of the admin to every linked peer now, off the heartbeat schedule.
    pub(super) fn broadcast_view(&mut self) {
        self.health.heartbeat_seq += 1;
        for peer in self.linked_peers() {
            let msg = self.heartbeat();
            self.send(&peer, msg);
        }
    }

    /// The heartbeat this node sends now.
    pub(super) fn heartbeat(&self) -> MeshMessage {
        MeshMessage::Heartbeat {
            seq: self.health.heartbeat_seq,
            admin: self.election.admin.clone(),
            epoch: self.election.epoch,
            admin_linked: self.admin_linked(),
            links: Some(self.worker_links()),
        }
    }

    /// Open links this node holds to present workers.
    pub(super) fn worker_links(&self) -> u32 {
        self.linked_peers().iter().filter(|p| self.is_present_worker(p)).count() as u32
    }

    /// The rendezvous announced an admin: clients follow it; workers keep their own election.
    pub(super) fn on_admin_announced(&mut self, now: Instant, admin: PeerId) {
        self.election.announced_admin = Some(admin.clone());
        if self.cfg.role == Role::Client && self.election.admin.as_ref() != Some(&admin) {
            tracing::info!(%admin, "the rendezvous announced a new admin; following it");
            self.follow(now, admin);
        }
    }

    /// A client lost (or never verified) its admin: dial the one the rendezvous announced, or
    /// the one the room will elect, other than `exclude`; `exclude` itself if it is the only
    /// worker present (its link is retried: giving it up would leave the client with no admin
    /// even once that link opens).
    pub(super) fn client_retarget(&mut self, now: Instant, exclude: Option<&PeerId>) {
        let present = |s: &Self, p: &PeerId| s.room.present().any(|(q, _)| q == p);
        let announced = self.election.announced_admin.clone().filter(|a| Some(a) != exclude && present(self, a));
        let target = announced
            .or_else(|| {
                let others = self.room.present().filter(|(p, _)| Some(*p) != exclude);
                crate::room::elect(others.map(|(p, r)| (p, r.priority)))
            })
            .or_else(|| exclude.filter(|p| present(self, p)).cloned());
        match target {
            Some(target) if self.election.admin.as_ref() != Some(&target) => self.follow(now, target),
            Some(target) => {
                if self.is_linked(&target) {
                    self.start_verify(now, target, self.election.epoch);
                }
            }
            None => self.set_admin(None, false),
        }
    }
}
