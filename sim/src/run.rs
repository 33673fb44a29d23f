//! Runs one schedule on a fresh world: applies each step, and at each settle waits for the room
//! to converge and checks it at rest, stays at rest, and answers registry queries.

use crate::check::{at_rest, Violation};
use crate::schedule::{Fault, Schedule, Target};
use crate::world::World;
use mesh_core::{Event, MeshState, Metadata, PeerId, RegistryFilter, Role, RoomId, StateConfig, Timing, WorkerRecord};
use std::collections::BTreeMap;
use std::time::Duration;

/// After a settle, the room must be back at rest within this long (virtual time).
pub const CONVERGE_BOUND_MS: u64 = 60_000;
/// How long the room must stay at rest, with no link attempt, to count as converged: longer
/// than the heartbeat timeout, so silence from before the settle has shown.
pub const QUIET_MS: u64 = 4_000;
/// Heartbeat packet loss (percent) up to which a departure must cause no link attempt.
pub const MAX_LOSS_FOR_DEPARTURE_CHECK: u64 = 5;
/// How long a registry query waits for its answer before it is forgotten.
pub const QUERY_DEADLINE_MS: u64 = 5_000;
/// A registry query in a room at rest must be answered within this long.
pub const QUERY_BOUND_MS: u64 = 2_000;

/// What one run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed of the schedule.
    pub seed: u64,
    /// The first invariant broken, if any.
    pub violation: Option<Violation>,
    /// Time from each settle to a room at rest, ms.
    pub recoveries: Vec<u64>,
    /// How many times each invariant was checked.
    pub checks: BTreeMap<&'static str, u64>,
    /// Virtual time the run covered, ms.
    pub virtual_ms: u64,
    /// The readable log, when asked for.
    pub trace: Vec<String>,
}

/// Runs `schedule`; with `trace`, keeps a readable log of it.
pub fn run(schedule: &Schedule, trace: bool) -> Outcome {
    let mut w = World::new(schedule.net.clone(), schedule.seed, trace);
    let mut recoveries = Vec::new();
    let mut round: Vec<&Fault> = Vec::new();
    let mut dials_before_round = 0;
    let settle = Fault::Settle;
    let last = schedule.steps.last().map(|s| &s.fault);
    let tail = (last != Some(&Fault::Settle)).then_some(&settle);
    let steps = schedule.steps.iter().map(|s| (s.after_ms, &s.fault)).chain(tail.map(|f| (0, f)));
    for (after_ms, fault) in steps {
        w.run_until(w.t + after_ms);
        if w.violation().is_some() {
            break;
        }
        w.log(|| format!("== {fault}"));
        if fault == &Fault::Settle {
            // One departure and nothing else. Under heavy loss a link may also die of silence on
            // its own (the heartbeat rule), which is not the departure's doing: not checked there.
            let departure = matches!(round.as_slice(), [Fault::Leave(_) | Fault::Crash(_)])
                && schedule.net.loss_pct <= MAX_LOSS_FOR_DEPARTURE_CHECK;
            settle_and_check(&mut w, &mut recoveries, departure.then_some(dials_before_round));
            round.clear();
            dials_before_round = w.worker_dials;
        } else {
            round.push(fault);
            apply(&mut w, schedule.seed, fault);
        }
        if w.violation().is_some() {
            break;
        }
    }
    Outcome {
        seed: schedule.seed,
        violation: w.violation().cloned(),
        recoveries,
        checks: w.checker.counts.clone(),
        virtual_ms: w.t,
        trace: w.trace.take().unwrap_or_default(),
    }
}

/// The admin most live nodes follow.
fn current_admin(w: &World) -> Option<PeerId> {
    let mut votes: BTreeMap<PeerId, usize> = BTreeMap::new();
    for h in w.hosts.values() {
        if let Some(a) = h.state.admin().0.filter(|a| w.hosts.get(*a).is_some_and(|h| h.role == Role::Worker)) {
            *votes.entry(a.clone()).or_insert(0) += 1;
        }
    }
    votes.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(p, _)| p)
}

fn resolve(w: &World, t: &Target) -> Option<PeerId> {
    let p = match t {
        Target::Named(n) => PeerId::new(n.as_str()).ok()?,
        Target::Admin => current_admin(w)?,
    };
    w.hosts.contains_key(&p).then_some(p)
}

fn record(priority: u64) -> WorkerRecord {
    let mut metadata = Metadata::new();
    metadata.insert("gpu_memory_mb".into(), priority.into());
    WorkerRecord::new(priority, metadata)
}

/// Applies one fault to the world now (a settle does nothing here: [`run`] heals, waits, checks).
pub fn apply(w: &mut World, seed: u64, fault: &Fault) {
    match fault {
        Fault::Join { name, client, priority } => {
            let Ok(me) = PeerId::new(name.as_str()) else { return };
            if w.hosts.contains_key(&me) {
                return;
            }
            let role = if *client { Role::Client } else { Role::Worker };
            let cfg = StateConfig {
                room: RoomId::new("room").expect("a valid room id"),
                me: me.clone(),
                role,
                // The node's clock-based first version: a restart replaces the old record.
                record: WorkerRecord { version: w.t * 1000 + w.next_inc() as u64, ..record(*priority) },
                timing: Timing::default(),
                seed: seed ^ (w.t << 8) ^ name.len() as u64,
                key: None,
                // The node's clock-based start: later processes start higher.
                first_session: w.t * 1_000_000 + w.next_inc() as u64 * 1000,
                trust: Default::default(),
                max_client_links: mesh_core::state::DEFAULT_MAX_CLIENT_LINKS,
                // Clocks in step, as the nodes' wall clocks are: one grid for the whole room.
                heartbeat_phase: Some(w.t0),
            };
            w.spawn(me, role, MeshState::new(cfg));
        }
        Fault::Leave(t) => {
            if let Some(p) = resolve(w, t).filter(|p| !w.hosts[p].frozen) {
                w.handle(&p, Event::Leave);
            }
        }
        Fault::Crash(t) => {
            if let Some(p) = resolve(w, t) {
                w.remove_host(&p);
            }
        }
        Fault::Freeze(t) => {
            if let Some(p) = resolve(w, t) {
                w.freeze(&p);
            }
        }
        Fault::Thaw(n) => {
            if let Ok(p) = PeerId::new(n.as_str()) {
                w.thaw(&p);
            }
        }
        Fault::Flap { a, b, ms } => {
            if let (Ok(a), Ok(b)) = (PeerId::new(a.as_str()), PeerId::new(b.as_str())) {
                w.net.flap(&a, &b, true);
                let t = w.t + ms;
                w.at(t, crate::world::Item::Unflap(a, b));
            }
        }
        Fault::Partition(groups) => w.net.partition(groups),
        Fault::Heal => w.net.heal(),
        Fault::ServerDown => server_down(w),
        Fault::ServerUp => server_up(w),
        Fault::Record { name, status, load } => {
            let Ok(p) = PeerId::new(name.as_str()) else { return };
            let Some(h) = w.hosts.get_mut(&p).filter(|h| h.role == Role::Worker && !h.frozen) else { return };
            let Some(mut rec) = h.state.room_state().get(&p).cloned() else { return };
            rec.status = *status;
            rec.metadata.insert("load".into(), (*load).into());
            h.wanted = Some((*status, *load));
            w.handle(&p, Event::RecordChanged(rec));
        }
        Fault::Query(n) => {
            let Ok(p) = PeerId::new(n.as_str()) else { return };
            if w.hosts.get(&p).is_some_and(|h| !h.frozen) {
                query(w, &p);
            }
        }
        Fault::Settle => {}
    }
}

fn query(w: &mut World, p: &PeerId) -> u64 {
    let id = w.query_id();
    let deadline = w.now() + Duration::from_millis(QUERY_DEADLINE_MS);
    w.handle(p, Event::QueryRegistry { id, filter: RegistryFilter::default(), deadline });
    id
}

fn server_down(w: &mut World) {
    if !w.server.up {
        return;
    }
    w.server = crate::server::Server { up: false, down_since: w.t, ..Default::default() };
    for h in w.hosts.values_mut() {
        h.needs_register = true;
    }
}

fn server_up(w: &mut World) {
    if w.server.up {
        return;
    }
    let outage = Duration::from_millis(w.t - w.server.down_since);
    let backoff = signaling_ws::backoff::longest_wait_after(outage).as_millis() as u64;
    w.server.up = true;
    let waiting: Vec<PeerId> =
        w.hosts.iter().filter(|(_, h)| h.needs_register && !h.frozen).map(|(p, _)| p.clone()).collect();
    for p in waiting {
        let after = w.rng.below(backoff);
        w.register_later(&p, after);
    }
}

/// Heals everything, waits for the room to come to rest, and checks it there.
fn settle_and_check(w: &mut World, recoveries: &mut Vec<u64>, departure_dials: Option<u64>) {
    w.net.heal_all();
    server_up(w);
    let frozen: Vec<PeerId> = w.hosts.iter().filter(|(_, h)| h.frozen).map(|(p, _)| p.clone()).collect();
    for p in frozen {
        w.thaw(&p);
    }
    let start = w.t;
    w.checker.count("converges within the bound");
    // At rest since when, and the link attempts made by then.
    let mut rest: Option<(u64, u64)> = None;
    loop {
        match (at_rest(w), rest) {
            (Ok(()), Some((since, dials))) if w.dials == dials && w.t - since >= QUIET_MS => break,
            (Ok(()), Some((_, dials))) if w.dials == dials => {}
            (Ok(()), _) => rest = Some((w.t, w.dials)),
            (Err(why), _) if w.t - start >= CONVERGE_BOUND_MS => {
                let detail = format!("not at rest {} s after the settle: {why}", CONVERGE_BOUND_MS / 1000);
                return w.checker.fail(w.t, "converges within the bound", detail);
            }
            (Err(_), _) => rest = None,
        }
        w.run_until(w.t + 50);
        if w.violation().is_some() {
            return;
        }
    }
    let took = rest.map_or(0, |(since, _)| since - start);
    recoveries.push(took);
    w.log(|| format!("== at rest {took} ms after the settle, and quiet since"));
    if let Some(before) = departure_dials {
        w.checker.count("no link attempt among survivors of a departure");
        if w.worker_dials != before {
            let detail = format!("{} link attempts between workers after one departure", w.worker_dials - before);
            return w.checker.fail(w.t, "no link attempt among survivors of a departure", detail);
        }
    }
    check_queries(w);
}

/// Every client, and one worker that is not the admin, asks for the registry: each gets the
/// whole room, as its owners last wrote it, within the bound.
fn check_queries(w: &mut World) {
    let Some(admin) = current_admin(w) else { return }; // no worker: nobody can answer
    let admin = Some(admin);
    let mut askers: Vec<PeerId> =
        w.hosts.iter().filter(|(_, h)| h.role == Role::Client).map(|(p, _)| p.clone()).collect();
    askers.extend(
        w.hosts.iter().find(|(p, h)| h.role == Role::Worker && Some(*p) != admin.as_ref()).map(|(p, _)| p.clone()),
    );
    let asked: Vec<(PeerId, u64)> = askers.into_iter().map(|p| (p.clone(), query(w, &p))).collect();
    let (start, dials) = (w.t, w.dials);
    // In a room that stays at rest the bound holds; if a link dies meanwhile (heavy loss), the
    // query must still be answered before it expires (it is sent again).
    let bound = |w: &World| if w.dials == dials { QUERY_BOUND_MS } else { QUERY_DEADLINE_MS };
    while w.t - start < bound(w) && !asked.iter().all(|k| w.answers.contains_key(k)) {
        w.run_until(w.t + 10);
    }
    let workers: Vec<PeerId> = w.hosts.iter().filter(|(_, h)| h.role == Role::Worker).map(|(p, _)| p.clone()).collect();
    for key in &asked {
        w.checker.count("registry query answered within the bound");
        let Some(page) = w.answers.get(key) else {
            let detail = format!("{} got no answer within {} ms in a room at rest", key.0, bound(w));
            return w.checker.fail(w.t, "registry query answered within the bound", detail);
        };
        let fresh = page
            .workers
            .iter()
            .all(|m| w.hosts.get(&m.peer).and_then(|h| h.state.room_state().get(&m.peer)) == Some(&m.record));
        if page.total_count != workers.len() || page.workers.len() != workers.len() || !fresh {
            let detail = format!("{} got {page:?}; the room is {workers:?}", key.0);
            return w.checker.fail(w.t, "registry query answered within the bound", detail);
        }
    }
}
