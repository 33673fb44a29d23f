//! The invariants, each written from the documented rule rather than from the state machine's
//! code: checked after every event a node handles (continuous) and when the room has converged
//! (at rest). Every check is counted, so a campaign can say how many it made.

use crate::net::Sessions;
use crate::world::{Host, World};
use mesh_core::{LinkOp, LinkStatus, MeshEvent, Output, PeerId, Role, SessionId, Timing};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (one of [`INVARIANTS`]).
    pub invariant: &'static str,
    /// Virtual time, ms.
    pub at_ms: u64,
    /// What was seen.
    pub detail: String,
}

/// Every invariant the simulator checks, by the name a violation carries.
pub const INVARIANTS: &[&str] = &[
    "no panic",
    "no livelock",
    "partition flag follows the rule",
    "retries follow the backoff rule",
    "session ids unique",
    "one link per pair",
    "converges within the bound",
    "no link attempt among survivors of a departure",
    "registry query answered within the bound",
];

/// The continuous checks, with what they remember between events.
#[derive(Debug, Default)]
pub struct Checker {
    /// The first violation.
    pub violation: Option<Violation>,
    /// How many times each invariant was checked.
    pub counts: BTreeMap<&'static str, u64>,
    /// Peers each node has had a link to, as its own events said (the rule's "ever linked").
    ever_linked: BTreeMap<PeerId, BTreeSet<PeerId>>,
    /// Per (node, peer): the last retry attempt announced and when that retry is due (ms).
    retries: BTreeMap<(PeerId, PeerId), (u32, u64)>,
    /// Events one node handled at one instant, to catch a livelock.
    burst: (u64, u64),
}

impl Checker {
    /// Records a violation (the first one wins).
    pub fn fail(&mut self, at_ms: u64, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, at_ms, detail });
        }
    }

    /// Counts one check of `invariant`.
    pub(crate) fn count(&mut self, invariant: &'static str) {
        *self.counts.entry(invariant).or_insert(0) += 1;
    }

    /// A process started under `peer`: it remembers nothing.
    pub fn on_spawn(&mut self, peer: &PeerId) {
        self.ever_linked.remove(peer);
        self.retries.retain(|(p, _), _| p != peer);
    }

    /// Checks one node right after it handled an event that produced `actions`.
    pub fn after_event(&mut self, t: u64, host: &Host, actions: &[Output]) {
        let me = host.state.me().clone();
        self.count("no panic");
        self.count("no livelock");
        self.burst = if self.burst.0 == t { (t, self.burst.1 + 1) } else { (t, 1) };
        if self.burst.1 > 200_000 {
            self.fail(t, "no livelock", format!("200,000 events at one instant (last at {me})"));
        }
        let timing = Timing::default();
        for action in actions {
            match action {
                Output::Emit(MeshEvent::LinkUp { peer, .. }) => {
                    self.ever_linked.entry(me.clone()).or_default().insert(peer.clone());
                    self.retries.remove(&(me.clone(), peer.clone()));
                }
                Output::Emit(MeshEvent::RetryScheduled { peer, attempt, delay }) => {
                    self.count("retries follow the backoff rule");
                    let base = timing.retry_initial.saturating_mul(1 << (*attempt).min(20)).min(timing.retry_max);
                    let key = (me.clone(), peer.clone());
                    let expected = self.retries.get(&key).map_or(0, |(a, _)| a + 1);
                    if *delay > base || *delay + Duration::from_micros(1) < base.mul_f64(0.8) || *attempt != expected {
                        let detail = format!(
                            "{me} retries {peer}: attempt {attempt} (expected {expected}) after {delay:?}, rule: {:?} to {base:?}",
                            base.mul_f64(0.8)
                        );
                        self.fail(t, "retries follow the backoff rule", detail);
                    }
                    let due = t + delay.as_millis() as u64;
                    self.retries.insert(key, (*attempt, due));
                }
                Output::Link(LinkOp::Dial { peer, .. }) => {
                    let key = (me.clone(), peer.clone());
                    let admin = host.state.admin().0 == Some(peer);
                    if let Some((attempt, due)) = self.retries.get(&key).copied() {
                        self.count("retries follow the backoff rule");
                        if due > t && !admin {
                            let detail = format!("{me} dialed {peer} at {t} ms, retry {attempt} was due at {due} ms");
                            self.fail(t, "retries follow the backoff rule", detail);
                        }
                    }
                }
                _ => {}
            }
        }
        // Entries the node dropped (a peer that left) start over.
        let health = host.state.health_record();
        let known: BTreeSet<&PeerId> = health.peers.iter().map(|p| &p.peer).collect();
        if let Some(set) = self.ever_linked.get_mut(&me) {
            set.retain(|p| known.contains(p));
        }
        self.retries.retain(|(p, q), _| p != &me || known.contains(q));
        self.count("partition flag follows the rule");
        let rule = self.partition_rule(host, &health);
        if rule != host.state.is_partitioned() {
            let detail = format!("{me} is flagged {}, the rule says {rule}: {health:?}", host.state.is_partitioned());
            self.fail(t, "partition flag follows the rule", detail);
        }
    }

    /// docs/BEHAVIOUR.md 20, from what the node shows: its admin, links, room and health record.
    fn partition_rule(&self, host: &Host, health: &mesh_core::HealthRecord) -> bool {
        let s = &host.state;
        let me = s.me();
        if host.role == Role::Client || !host.registered_once() {
            return false;
        }
        if let Some(a) = s.admin().0 {
            if a == me || s.is_linked(a) {
                return false;
            }
        }
        let ever = self.ever_linked.get(me);
        let (mut reached, mut present) = (1usize, 1usize);
        for (p, _) in s.room_state().present() {
            if p == me {
                continue;
            }
            let entry = health.peers.iter().find(|e| &e.peer == p);
            let forming = entry.is_none_or(|e| {
                !ever.is_some_and(|set| set.contains(p))
                    && e.retry_attempt == 0
                    && matches!(e.state, LinkStatus::Waiting | LinkStatus::Dialing | LinkStatus::Accepting)
            });
            if !forming {
                present += 1;
                reached += s.is_linked(p) as usize;
            }
        }
        reached * 2 < present
    }

    /// A session just opened: no other live session may join the same pair.
    pub fn on_connect(&mut self, t: u64, session: &SessionId, sessions: &Sessions) {
        self.count("one link per pair");
        let Some(s) = sessions.get(session) else { return };
        let same_pair = |o: &crate::net::Session| {
            (o.offerer.0 == s.offerer.0 && o.answerer.0 == s.answerer.0)
                || (o.offerer.0 == s.answerer.0 && o.answerer.0 == s.offerer.0)
        };
        if let Some((other, _)) = sessions.iter().find(|(id, o)| *id != session && o.live() && same_pair(o)) {
            let detail = format!("{session} opened while {other} is still live between the same two nodes");
            self.fail(t, "one link per pair", detail);
        }
    }
}

/// Why the room is not at rest, or `Ok` when it is: one admin, verified, the same at every
/// node and at the server; one live link per pair of workers and from each client to the admin,
/// and nothing else; nobody partitioned; every worker's record, at every worker, equal to its
/// owner's latest, with the change its user last asked for.
pub fn at_rest(w: &World) -> Result<(), String> {
    let workers: Vec<&PeerId> = w.hosts.iter().filter(|(_, h)| h.role == Role::Worker).map(|(p, _)| p).collect();
    let Some(first) = workers.first() else { return Ok(()) };
    let admin = w.hosts[*first].state.admin().0.cloned().ok_or_else(|| format!("{first} has no admin"))?;
    if !w.hosts.get(&admin).is_some_and(|h| h.role == Role::Worker && h.state.is_admin()) {
        return Err(format!("{first} follows {admin}, which is not a live worker holding the role"));
    }
    for (p, h) in &w.hosts {
        let (a, verified) = h.state.admin();
        if a != Some(&admin) || !verified {
            return Err(format!("{p} follows {a:?} (verified: {verified}), {first} follows {admin}"));
        }
        if h.state.is_partitioned() {
            return Err(format!("{p} is flagged partitioned"));
        }
        let wanted: Vec<&PeerId> = if h.role == Role::Worker {
            let mut v: Vec<&PeerId> = w.hosts.keys().filter(|q| *q != p).collect();
            if p != &admin {
                v.retain(|q| w.hosts[*q].role == Role::Worker);
            }
            v
        } else {
            vec![&admin]
        };
        for q in &wanted {
            let (s1, s2) = (h.state.link_session(q), w.hosts[*q].state.link_session(p));
            if s1.is_none() || s1 != s2 || !w.carries(p, q) {
                return Err(format!("{p} and {q} are not linked by one live session ({s1:?} / {s2:?})"));
            }
        }
        for e in h.state.health_record().peers {
            if !wanted.contains(&&e.peer) {
                return Err(format!("{p} holds an entry for {} ({}) it should not", e.peer, e.state));
            }
        }
        if w.server.up && !w.server.has(p, h.inc) {
            return Err(format!("{p} is not registered at the server"));
        }
    }
    if w.server.up && w.server.admin.as_ref() != Some(&admin) {
        return Err(format!("the server names {:?} admin, the room {admin}", w.server.admin));
    }
    for o in &workers {
        let own = w.hosts[*o].state.room_state().get(o).ok_or_else(|| format!("{o} has no record of itself"))?;
        if let Some((status, load)) = w.hosts[*o].wanted {
            if own.status != status || own.metadata.get("load") != Some(&load.into()) {
                return Err(format!("{o}'s record lost its user's change to {status:?}, load {load}"));
            }
        }
        for v in &workers {
            let view = w.hosts[*v].state.room_state();
            if view.get(o) != Some(own) {
                return Err(format!("{v} holds {o}'s record {:?}, the owner {own:?}", view.get(o)));
            }
            if view.present().count() != workers.len() {
                let present: Vec<&PeerId> = view.present().map(|(p, _)| p).collect();
                return Err(format!("{v} sees {present:?} present, the room is {workers:?}"));
            }
        }
    }
    Ok(())
}
