//! A deterministic simulator of whole rooms of the real mesh state machine.
//!
//! Each run takes one seed. The seed gives a [`Schedule`]: a network (latency, jitter, heartbeat
//! loss, distance to the server) and a list of failures in rounds: joins, graceful leaves,
//! crashes, freezes and thaws, link flaps, partitions of any shape and their heals, the
//! signaling server going down and up, record changes and registry queries. The [`World`] runs
//! every node's real [`mesh_core::MeshState`] on virtual time and plays the driver, the network
//! and the server around them. The invariants of [`check`] are checked after every event and
//! when the room is at rest; the first broken one stops the run, which can then be replayed
//! with a trace and [`shrink`]ed. Everything is a function of the seed.
//!
//! ```
//! let outcome = mesh_sim::run_seed(7, false);
//! assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
//! ```

pub mod campaign;
mod chain;
pub mod check;
mod item;
mod links;
pub mod net;
mod pipe;
mod rendezvous;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod server;
pub mod shrink;
pub mod world;

pub use campaign::{campaign, Campaign};
pub use check::{Violation, INVARIANTS};
pub use run::{run, Outcome, CONVERGE_BOUND_MS};
pub use schedule::{Fault, Schedule, Step};
pub use shrink::shrink;
pub use world::World;

/// Generates the schedule of `seed` and runs it.
pub fn run_seed(seed: u64, trace: bool) -> Outcome {
    run(&Schedule::generate(seed), trace)
}

/// Everything a failing seed needs to be understood: the violation, the shrunk schedule and
/// its trace.
pub fn report(seed: u64) -> String {
    let schedule = Schedule::generate(seed);
    let Some(v) = run(&schedule, false).violation else { return format!("seed {seed}: every invariant held\n") };
    let (small, runs) = shrink(&schedule, v.invariant);
    let replay = run(&small, true);
    let mut out = format!("seed {seed} broke \"{}\" at {} ms: {}\n", v.invariant, v.at_ms, v.detail);
    out += &format!("shrunk in {runs} runs from {} to {} steps:\n{small}", schedule.steps.len(), small.steps.len());
    if let Some(v) = &replay.violation {
        out += &format!("the shrunk schedule breaks it at {} ms: {}\ntrace:\n", v.at_ms, v.detail);
    }
    for line in &replay.trace {
        out += line;
        out.push('\n');
    }
    out
}
