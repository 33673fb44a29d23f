//! Failure schedules: what happens to a room, and when, as a pure function of a seed.
//!
//! A schedule is a list of steps, each some milliseconds after the one before. It runs in rounds:
//! the first forms the room (joins, perhaps with failures mixed in), each round ends with
//! [`Fault::Settle`] (heal everything, then the room must converge), and later rounds are either
//! one departure in a settled room or a burst of mixed failures.

use crate::rng::Rng;
use mesh_core::WorkerStatus;
use std::fmt;

/// A node named by a step: by name, or whoever holds the admin role when the step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Named(String),
    /// The admin most live nodes follow at that instant.
    Admin,
}

/// One thing that happens to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A node registers (a worker, or a client); a name used before is a restart.
    Join {
        /// Peer id.
        name: String,
        /// A client rather than a worker.
        client: bool,
        /// Election priority.
        priority: u64,
    },
    /// Graceful leave.
    Leave(Target),
    /// The process dies (SIGKILL): its server connection closes, its links go silent.
    Crash(Target),
    /// The process stops (SIGSTOP): it hears nothing and says nothing until thawed.
    Freeze(Target),
    /// A frozen process continues (SIGCONT).
    Thaw(String),
    /// Every packet between two nodes is dropped for a while.
    Flap {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// For how long.
        ms: u64,
    },
    /// Links between groups are cut (a node in no group is in the first).
    Partition(Vec<Vec<String>>),
    /// Partitions end (flaps end by themselves).
    Heal,
    /// The signaling server goes away (its state is lost).
    ServerDown,
    /// The signaling server is back; nodes register again after their reconnect backoff.
    ServerUp,
    /// A worker's user changes its record.
    Record {
        /// Whose.
        name: String,
        /// The new status.
        status: WorkerStatus,
        /// A metadata value that changes with it.
        load: u64,
    },
    /// A node asks the admin for the registry.
    Query(String),
    /// Heal every cut, thaw every node, bring the server up: the room must converge.
    Settle,
}

/// A fault and when it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Milliseconds after the previous step (after convergence, for the step after a settle).
    pub after_ms: u64,
    /// What happens.
    pub fault: Fault,
}

/// The simulated network's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// Largest base one-way latency of a node pair, in ms (each pair draws its own).
    pub latency_ms: u64,
    /// Extra random delay per message, in ms.
    pub jitter_ms: u64,
    /// Packet loss on the unordered channel (heartbeats), in percent; the channel retransmits
    /// within its 1 s lifetime.
    pub loss_pct: u64,
    /// One-way latency between a node and the signaling server, in ms.
    pub server_ms: u64,
}

/// Everything a run does, derived from `seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// The network.
    pub net: Net,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// What the generator knows of the room while it writes the schedule.
struct Cast {
    workers: Vec<String>,
    clients: Vec<String>,
    gone: Vec<String>,
    frozen: Vec<String>,
    next_worker: usize,
    next_client: usize,
}

impl Cast {
    fn live(&self) -> Vec<String> {
        self.workers.iter().chain(&self.clients).filter(|n| !self.frozen.contains(n)).cloned().collect()
    }

    fn target(&self, rng: &mut Rng) -> Option<Target> {
        if rng.chance(0.4) {
            return Some(Target::Admin);
        }
        rng.pick(&self.live()).map(|n| Target::Named(n.clone()))
    }

    fn remove(&mut self, t: &Target) {
        if let Target::Named(n) = t {
            self.workers.retain(|w| w != n);
            self.clients.retain(|c| c != n);
            self.gone.push(n.clone());
        }
    }

    fn join(&mut self, rng: &mut Rng, client: bool) -> Option<Fault> {
        if !client && self.workers.len() >= 10 || client && self.clients.len() >= 2 {
            return None;
        }
        let restart = self.gone.iter().position(|n| n.starts_with(if client { 'c' } else { 'w' }));
        let name = match restart.filter(|_| rng.chance(0.5)) {
            Some(i) => self.gone.remove(i),
            None if client => {
                self.next_client += 1;
                format!("c{}", self.next_client - 1)
            }
            None => {
                self.next_worker += 1;
                format!("w{}", self.next_worker - 1)
            }
        };
        if client { &mut self.clients } else { &mut self.workers }.push(name.clone());
        Some(Fault::Join { name, client, priority: rng.below(4) * 8 })
    }
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let net = Net {
            latency_ms: rng.range(1, 120),
            jitter_ms: rng.range(0, 20),
            loss_pct: *rng.pick(&[0, 0, 1, 5, 20]).unwrap_or(&0),
            server_ms: rng.range(1, 60),
        };
        let mut cast =
            Cast { workers: vec![], clients: vec![], gone: vec![], frozen: vec![], next_worker: 0, next_client: 0 };
        let mut steps = Vec::new();
        let (workers, clients) = (rng.range(2, 10), rng.range(0, 2));
        let spread = *rng.pick(&[0, 50, 400, 2000]).unwrap_or(&0);
        // Workers and clients in a random order (a client may come before any worker).
        let mut order: Vec<bool> = (0..workers + clients).map(|i| i >= workers).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for client in order {
            if let Some(fault) = cast.join(&mut rng, client) {
                steps.push(Step { after_ms: rng.below(spread + 1), fault });
            }
        }
        if rng.chance(0.3) {
            chaos(&mut rng, &mut cast, &mut steps);
        }
        steps.push(Step { after_ms: 0, fault: Fault::Settle });
        for _ in 0..rng.range(0, 2) {
            if rng.chance(0.35) {
                let t = cast.target(&mut rng).unwrap_or(Target::Admin);
                let fault = if rng.chance(0.5) { Fault::Crash(t.clone()) } else { Fault::Leave(t.clone()) };
                cast.remove(&t);
                steps.push(Step { after_ms: rng.range(0, 3000), fault });
            } else {
                chaos(&mut rng, &mut cast, &mut steps);
            }
            steps.push(Step { after_ms: rng.range(0, 3000), fault: Fault::Settle });
            cast.frozen.clear();
        }
        Self { seed, net, steps }
    }
}

/// A burst of 1 to 6 mixed failures.
fn chaos(rng: &mut Rng, cast: &mut Cast, steps: &mut Vec<Step>) {
    for _ in 0..rng.range(1, 6) {
        let live = cast.live();
        let fault = match rng.below(12) {
            0 => cast.target(rng).map(|t| {
                cast.remove(&t);
                Fault::Crash(t)
            }),
            1 => cast.target(rng).map(|t| {
                cast.remove(&t);
                Fault::Leave(t)
            }),
            2 => cast.target(rng).map(|t| {
                if let Target::Named(n) = &t {
                    cast.frozen.push(n.clone());
                }
                Fault::Freeze(t)
            }),
            3 => rng.pick(&cast.frozen.clone()).map(|n| {
                cast.frozen.retain(|f| f != n);
                Fault::Thaw(n.clone())
            }),
            4 => match (rng.pick(&live).cloned(), rng.pick(&live).cloned()) {
                (Some(a), Some(b)) if a != b => Some(Fault::Flap { a, b, ms: rng.range(200, 8000) }),
                _ => None,
            },
            5 => {
                let groups = rng.range(2, 3) as usize;
                let mut parts = vec![Vec::new(); groups];
                for n in &live {
                    parts[rng.below(groups as u64) as usize].push(n.clone());
                }
                Some(Fault::Partition(parts))
            }
            6 => Some(Fault::Heal),
            7 => Some(if rng.chance(0.5) { Fault::ServerDown } else { Fault::ServerUp }),
            8 => rng.pick(&cast.workers.clone()).map(|n| Fault::Record {
                name: n.clone(),
                status: *rng
                    .pick(&[WorkerStatus::Available, WorkerStatus::Busy, WorkerStatus::Reserved])
                    .unwrap_or(&WorkerStatus::Busy),
                load: rng.below(100),
            }),
            9 => rng.pick(&cast.clients.clone()).or(rng.pick(&live)).map(|n| Fault::Query(n.clone())),
            _ => {
                let client = rng.chance(0.2);
                cast.join(rng, client)
            }
        };
        if let Some(fault) = fault {
            steps.push(Step { after_ms: rng.range(0, 5000), fault });
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Named(n) => f.write_str(n),
            Target::Admin => f.write_str("the admin"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Join { name, client: true, .. } => write!(f, "client {name} joins"),
            Fault::Join { name, priority, .. } => write!(f, "worker {name} joins (priority {priority})"),
            Fault::Leave(t) => write!(f, "{t} leaves"),
            Fault::Crash(t) => write!(f, "{t} crashes"),
            Fault::Freeze(t) => write!(f, "{t} freezes"),
            Fault::Thaw(n) => write!(f, "{n} thaws"),
            Fault::Flap { a, b, ms } => write!(f, "link {a}-{b} drops every packet for {ms} ms"),
            Fault::Partition(groups) => write!(f, "partition {groups:?}"),
            Fault::Heal => f.write_str("partition heals"),
            Fault::ServerDown => f.write_str("server goes down"),
            Fault::ServerUp => f.write_str("server comes back"),
            Fault::Record { name, status, load } => write!(f, "{name} sets its record to {status:?}, load {load}"),
            Fault::Query(n) => write!(f, "{n} queries the registry"),
            Fault::Settle => f.write_str("settle: heal, thaw, server up; the room must converge"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.net;
        writeln!(
            f,
            "seed {}: latency up to {} ms (+{} jitter), {}% heartbeat loss, server {} ms away",
            self.seed, n.latency_ms, n.jitter_ms, n.loss_pct, n.server_ms
        )?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>2}. +{:>5} ms  {}", s.after_ms, s.fault)?;
        }
        Ok(())
    }
}
