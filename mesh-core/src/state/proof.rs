//! Proofs of the admin role (docs/BEHAVIOUR.md 17a): the role and its epoch are taken on votes,
//! never on a member's word.
//!
//! - A worker that elects or follows an admin signs a **vote** for it at an epoch: in
//!   `admin_verify` (the epoch its election gives: its own, plus one when a strict majority of the
//!   room's workers made it), and in `admin_vote` once it verified the admin at another epoch.
//! - The admin keeps the votes for it and sends them as its **proof**: in every
//!   `admin_verify_ack`, and in `admin_proof` to every linked peer when its epoch rises, to each
//!   peer whose link opens, and to a rival it beats. Its epoch rises to a higher one only when the votes
//!   for that epoch come from a strict majority of the present workers.
//! - A node **raises its epoch only on a proof**: votes that verify against the voters' keys,
//!   from a strict majority of the workers it knows to be present. A rival's claim to a higher
//!   epoch without one weighs as a claim at this node's own epoch, so it can win only by the
//!   election rule (priority, then the lowest id), as any worker can.
//! - A client counts an admin verified only with a proof; the rendezvous names an admin only on
//!   one (it checks the votes against the keys it bound).
//!
//! Nodes without a key of their own (tests of the state machine alone) take unsigned votes from
//! peers whose key they do not know; a real node always has a key and needs every voter's.

use super::MeshState;
use crate::id::PeerId;
use crate::signaler::Role;
use crate::wire::{MeshMessage, Proof, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

pub(super) use crate::wire::MAX_EPOCH;
/// Votes read from one proof: a room has at most a few hundred workers.
const MAX_VOTES: usize = 1024;
/// Epochs the admin collects votes for at once (its own and a few proposed above it).
const MAX_OPEN_EPOCHS: usize = 4;

/// What this node keeps of votes and proofs.
#[derive(Debug, Default)]
pub(super) struct Proofs {
    /// As admin: the votes for this node, by epoch (its own epoch and the ones proposed above).
    mine: BTreeMap<u64, BTreeMap<PeerId, Option<String>>>,
    /// The latest proof each claimer sent, reduced to the voters whose votes verified.
    heard: BTreeMap<PeerId, (u64, BTreeSet<PeerId>)>,
    /// The last (epoch, admin) this node voted for.
    pub(super) voted: Option<(u64, PeerId)>,
    /// As admin: an announcement was due while the proof did not hold (too few votes for the
    /// workers present): it goes out once the proof holds (a vote more, or a worker less).
    pub(super) unannounced: bool,
}

impl MeshState {
    /// This node's signed vote for `admin` at `epoch` (none on a client, or unsigned).
    pub(super) fn vote_for(&self, epoch: u64, admin: &PeerId) -> Option<String> {
        self.cfg.key.as_ref().map(|k| k.sign_vote(&self.cfg.room, epoch, admin))
    }

    /// True if `sig` is `voter`'s valid vote for `admin` at `epoch`, and `voter` is a worker.
    fn genuine_vote(&self, voter: &PeerId, epoch: u64, admin: &PeerId, sig: Option<&str>) -> bool {
        if voter == &self.cfg.me {
            return self.cfg.role == Role::Worker && sig.map(str::to_string) == self.vote_for(epoch, admin);
        }
        if !self.is_present_worker(voter) {
            return false;
        }
        match self.authority.keys.get(voter) {
            Some(key) => key.signed_vote(&self.cfg.room, epoch, admin, sig),
            None => self.cfg.key.is_none(),
        }
    }

    /// True if `voters` (each counted once) are a strict majority of the present workers as this
    /// node knows them.
    fn majority<'a>(&self, voters: impl Iterator<Item = &'a PeerId>) -> bool {
        let counted: BTreeSet<&PeerId> = voters
            .filter(|v| (**v == self.cfg.me && self.cfg.role == Role::Worker) || self.is_present_worker(v))
            .collect();
        counted.len() * 2 > self.room.present().count()
    }

    /// True if `proof`'s voters are a strict majority.
    pub(super) fn majority_of(&self, proof: &Proof) -> bool {
        self.majority(proof.votes.iter().map(|v| &v.voter))
    }

    /// Takes `claimer`'s proof (`votes` for it at `epoch`): keeps the voters whose votes verify,
    /// refusing the rest, and says whether it proves the role at `epoch` to this node.
    pub(super) fn take_proof(&mut self, claimer: &PeerId, epoch: u64, votes: &[Vote]) -> bool {
        if epoch > MAX_EPOCH {
            self.refuse(claimer, "admin_proof", "an epoch beyond the largest taken");
            return false;
        }
        // Votes already checked for this claimer and epoch are not checked again: a proof grows
        // one vote at a time, and each growth is sent to every peer.
        let known = match self.proofs.heard.remove(claimer) {
            Some((e, voters)) if e == epoch => voters,
            _ => BTreeSet::new(),
        };
        let mut voters = BTreeSet::new();
        let mut bad = false;
        for v in votes.iter().take(MAX_VOTES) {
            if known.contains(&v.voter) || self.genuine_vote(&v.voter, epoch, claimer, v.sig.as_deref()) {
                voters.insert(v.voter.clone());
            } else {
                bad |= self.is_present_worker(&v.voter) || v.voter == self.cfg.me;
            }
        }
        if bad {
            self.refuse(claimer, "admin_proof", "a vote that does not verify");
        }
        let proven = self.majority(voters.iter());
        self.proofs.heard.insert(claimer.clone(), (epoch, voters));
        proven
    }

    /// As admin: announces the proof now if an announcement waits for it to hold and it does.
    pub(super) fn announce_if_due(&mut self, now: Instant) {
        if !self.proofs.unannounced || !self.is_admin() {
            return;
        }
        let votes = self.proofs.mine.get(&self.election.epoch).into_iter().flat_map(|v| v.keys());
        if self.majority(votes.chain(std::iter::once(&self.cfg.me))) {
            self.announce_admin(now);
        }
    }

    /// True if `claimer`'s latest proof proves it admin at `epoch` to this node now.
    pub(super) fn proven(&self, claimer: &PeerId, epoch: u64) -> bool {
        self.proofs.heard.get(claimer).is_some_and(|(e, voters)| *e == epoch && self.majority(voters.iter()))
    }

    /// The epoch `claimer`'s claim weighs as: that of its latest proof if this node takes it (this
    /// node's own: if its votes are a majority's), else 0. Every node weighs two claims alike.
    pub(super) fn proven_epoch(&mut self, claimer: &PeerId) -> u64 {
        if claimer == &self.cfg.me {
            let proof = self.my_proof();
            return if self.majority_of(&proof) { proof.epoch } else { 0 };
        }
        match self.proofs.heard.get(claimer) {
            Some((e, _)) if self.proven(claimer, *e) => *e,
            _ => 0,
        }
    }

    /// Forgets what `peer` proved or voted (it left).
    pub(super) fn forget_proofs_of(&mut self, peer: &PeerId) {
        self.proofs.heard.remove(peer);
        for votes in self.proofs.mine.values_mut() {
            votes.remove(peer);
        }
    }

    /// As admin: takes `voter`'s vote for this node at `epoch`. The epoch rises when the votes
    /// for a higher one are a strict majority; the proof goes out when it changed.
    pub(super) fn add_vote(&mut self, now: Instant, voter: &PeerId, epoch: u64, sig: Option<&str>) {
        if !self.is_admin() || epoch < self.election.epoch {
            return; // not (or no longer) the admin, or a vote for an epoch already passed
        }
        let me = self.cfg.me.clone();
        // This node's own vote is its own signature: no need to check it.
        if epoch > MAX_EPOCH || (voter != &me && !self.genuine_vote(voter, epoch, &me, sig)) {
            self.refuse(voter, "admin_vote", "a vote that does not verify, or beyond the largest epoch");
            return;
        }
        if !self.proofs.mine.contains_key(&epoch) && self.proofs.mine.len() >= MAX_OPEN_EPOCHS {
            return;
        }
        let added = self.proofs.mine.entry(epoch).or_default().insert(voter.clone(), sig.map(str::to_string)).is_none();
        let raised = epoch > self.election.epoch && self.majority(self.proofs.mine[&epoch].keys());
        if raised {
            tracing::info!(epoch, "a strict majority voted for this admin: epoch raised");
            self.election.epoch = epoch;
            self.proofs.mine.retain(|e, _| *e >= epoch);
        }
        if raised {
            self.publish_proof(now);
        } else if added && epoch == self.election.epoch {
            // A vote more at the same epoch: the rendezvous hears the grown proof; peers get it
            // with their next ack, on a new link, or when a rival must weigh it.
            self.announce_admin(now);
        }
    }

    /// As admin: this node's votes at its own epoch (always its own vote among them).
    pub(super) fn my_proof(&mut self) -> Proof {
        let (epoch, me) = (self.election.epoch, self.cfg.me.clone());
        if !self.proofs.mine.get(&epoch).is_some_and(|v| v.contains_key(&me)) {
            let own = self.vote_for(epoch, &me); // signed once per epoch
            self.proofs.mine.entry(epoch).or_default().insert(me, own);
        }
        let votes = self.proofs.mine.entry(epoch).or_default();
        let votes = votes.iter().map(|(voter, sig)| Vote { voter: voter.clone(), sig: sig.clone() }).collect();
        Proof { epoch, votes }
    }

    /// As admin: sends the proof to every linked peer and, once it holds, to the rendezvous.
    pub(super) fn publish_proof(&mut self, now: Instant) {
        for peer in self.linked_peers() {
            self.send_proof(&peer);
        }
        self.announce_admin(now);
    }

    /// As admin: sends `to` this node's proof (`admin_proof`).
    pub(super) fn send_proof(&mut self, to: &PeerId) {
        let Proof { epoch, votes } = self.my_proof();
        self.send(to, MeshMessage::AdminProof { epoch, votes });
    }

    /// As a worker following `admin` at `epoch`: votes for it unless it already did.
    pub(super) fn vote_once(&mut self, admin: &PeerId, epoch: u64) {
        if self.cfg.role != Role::Worker || epoch > MAX_EPOCH || admin == &self.cfg.me {
            return;
        }
        let already = self.proofs.voted.as_ref().is_some_and(|(e, a)| *e == epoch && a == admin)
            || self.proofs.heard.get(admin).is_some_and(|(e, v)| *e == epoch && v.contains(&self.cfg.me));
        if already {
            return;
        }
        self.proofs.voted = Some((epoch, admin.clone()));
        let sig = self.vote_for(epoch, admin);
        self.send(admin, MeshMessage::AdminVote { epoch, sig });
    }

    /// A proof from `from` (`admin_proof`): raise the epoch when it proves the admin followed at
    /// a higher one, vote for that admin if not yet among its voters, or weigh a rival's claim.
    pub(super) fn on_admin_proof(&mut self, now: Instant, from: &PeerId, epoch: u64, votes: Vec<Vote>) {
        let proven = self.take_proof(from, epoch, &votes);
        if self.speaks_for_admin(from) {
            if proven && epoch > self.election.epoch {
                self.election.epoch = epoch;
            }
            if self.election.admin_verified && epoch >= self.election.epoch {
                self.vote_once(from, epoch);
            }
        } else if self.cfg.role == Role::Worker {
            self.weigh_claim_of(now, from);
        }
    }
}
