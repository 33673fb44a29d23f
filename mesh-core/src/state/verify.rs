//! Verifying an admin (docs/BEHAVIOUR.md 16-17a): `admin_verify` to the elected or announced
//! candidate, resent until its deadline; its ack names the admin it follows (a chase of at most
//! `MAX_VERIFY_HOPS`) and carries the proof the epoch is raised on; a candidate that never
//! answers is removed and the room elects again.

use super::MeshState;
use crate::id::PeerId;
use crate::signaler::Role;
use crate::wire::MeshMessage;
use std::time::Instant;

/// Candidates chased through acks naming another admin before this node stops and asks again
/// later (admins naming each other in a cycle would otherwise be chased forever).
const MAX_VERIFY_HOPS: usize = 8;

/// A verification in flight.
#[derive(Debug, Clone)]
pub(super) struct PendingVerify {
    pub(super) candidate: PeerId,
    pub(super) id: u64,
    pub(super) deadline: Instant,
    /// Ask again at this time: the candidate answered without holding the role (yet).
    pub(super) resend_at: Option<Instant>,
    pub(super) answered: bool,
    /// The epoch this node voted for the candidate at, in the `admin_verify`.
    pub(super) epoch: u64,
}

impl MeshState {
    /// Asks `candidate` whether it takes the role, with this worker's vote for it at `epoch`.
    pub(super) fn start_verify(&mut self, now: Instant, candidate: PeerId, epoch: u64) {
        let id = self.links.next_seq;
        self.links.next_seq += 1;
        let deadline = now + self.cfg.timing.admin_verify_timeout;
        let pending =
            PendingVerify { candidate: candidate.clone(), id, deadline, resend_at: None, answered: false, epoch };
        self.election.verify = Some(pending);
        tracing::info!(%candidate, "verifying the admin");
        let msg = self.verify_message(id, epoch, &candidate);
        self.send(&candidate, msg);
    }

    pub(super) fn verify_message(&mut self, id: u64, epoch: u64, candidate: &PeerId) -> MeshMessage {
        let vote = match self.cfg.role {
            Role::Worker => {
                self.proofs.voted = Some((epoch, candidate.clone()));
                self.vote_for(epoch, candidate)
            }
            Role::Client => None,
        };
        MeshMessage::AdminVerify { id, epoch, vote }
    }

    pub(super) fn on_admin_verify(&mut self, now: Instant, from: &PeerId, id: u64, vote: (u64, Option<String>)) {
        // A worker that asks has lost its admin and elected us: if we lost ours too, decide now
        // instead of waiting for our own suspicion to run out. An admin we merely have not linked
        // yet (a joiner's) is not lost: we answer with it.
        let lost = match &self.election.admin {
            None => true,
            Some(a) => self.election.suspect.is_some() || (a != &self.cfg.me && !self.is_present_worker(a)),
        };
        if self.cfg.role == Role::Worker && !self.is_admin() && lost {
            self.election.suspect = None;
            self.elect_admin(now);
        }
        // The ack goes first, then the asker's vote is checked (a failover waits on the ack; a
        // vote that raises the epoch sends the new proof to everyone).
        let votes = if self.is_admin() { self.my_proof().votes } else { Vec::new() };
        let (admin, epoch) = (self.election.admin.clone(), self.election.epoch);
        self.send(from, MeshMessage::AdminVerifyAck { id, admin, epoch, votes });
        if self.is_admin() && self.is_present_worker(from) {
            self.add_vote(now, from, vote.0, vote.1.as_deref());
            // A worker takes us for admin now, perhaps a rival stepping down, whose withdrawal
            // may reach the rendezvous after our last announcement and leave it naming nobody:
            // announce again, so it names the admin the room settled on.
            self.announce_admin(now);
        }
    }

    pub(super) fn on_admin_verify_ack(
        &mut self,
        now: Instant,
        from: &PeerId,
        id: u64,
        admin: Option<PeerId>,
        (epoch, votes): (u64, Vec<crate::wire::Vote>),
    ) {
        if self.election.verify.as_ref().is_none_or(|v| &v.candidate != from || v.id != id) {
            return self.refuse(from, "admin_verify_ack", "an ack this node did not ask for");
        }
        // A client needs the proof to verify; a worker only to raise its epoch.
        let check = self.cfg.role == Role::Client || epoch > self.election.epoch;
        let proven = check && admin.as_ref() == Some(from) && self.take_proof(from, epoch, &votes);
        match admin {
            // A client takes an admin only on its proof: the votes of most of the room's workers.
            Some(a) if &a == from && (proven || self.cfg.role == Role::Worker) => {
                // The epoch this node voted for in the verify: a vote for a later epoch than
                // the ack's (an election by a majority) counts once the admin reaches it.
                let voted = self.election.verify.as_ref().map_or(0, |v| v.epoch);
                self.election.verify = None;
                self.election.verify_hops.clear();
                if proven && epoch > self.election.epoch {
                    self.election.epoch = epoch;
                }
                self.set_admin(Some(a.clone()), true);
                if epoch >= self.election.epoch && epoch > voted {
                    self.vote_once(&a, epoch);
                }
            }
            Some(a)
                if a != self.cfg.me
                    && (self.is_present_worker(&a) || self.cfg.role == Role::Client)
                    && !self.election.verify_hops.contains(&a)
                    && self.election.verify_hops.len() < MAX_VERIFY_HOPS =>
            {
                tracing::info!(candidate = %from, admin = %a, "the candidate follows another admin; following it too");
                self.election.verify_hops.push(from.clone());
                self.election.verify = None;
                self.follow(now, a);
            }
            _ => {
                // Alive, but not (yet) holding the role, or the admins named form a cycle (each
                // names the next): ask again shortly, within the deadline, rather than chase.
                let resend_at = now + self.cfg.timing.admin_verify_timeout / 40;
                if let Some(v) = &mut self.election.verify {
                    v.answered = true;
                    v.resend_at = Some(resend_at);
                }
            }
        }
    }

    /// Fires the verification timers: resend, or give up on a silent candidate.
    pub(super) fn fire_verify_timer(&mut self, now: Instant) {
        let Some(v) = &mut self.election.verify else { return };
        if v.resend_at.is_some_and(|t| t <= now) && v.deadline > now {
            v.resend_at = None;
            let (to, id, epoch) = (v.candidate.clone(), v.id, v.epoch);
            let msg = self.verify_message(id, epoch, &to);
            self.send(&to, msg);
            return;
        }
        if v.deadline > now {
            return;
        }
        let (candidate, answered) = (v.candidate.clone(), v.answered);
        self.election.verify = None;
        if answered || self.cfg.role == Role::Client {
            // Alive but not the admin: look again rather than throw a live peer out.
            tracing::warn!(%candidate, "the candidate did not take the admin role in time; electing again");
            if self.cfg.role == Role::Client {
                self.client_retarget(now, Some(&candidate));
            } else {
                self.elect_admin(now);
            }
            return;
        }
        tracing::warn!(%candidate, "elected admin did not answer admin_verify; removing it and re-electing");
        self.forget_worker(&candidate);
        if let Some(session) = self.links.peers.get(&candidate).and_then(|e| super::links::session_of(&e.link)).cloned()
        {
            let reason = "did not answer admin_verify".to_string();
            self.close(&candidate, &session, reason);
        }
        self.links.peers.remove(&candidate);
        self.elect_admin(now);
    }
}
