//! Shrinking: a failing schedule is cut down, step by step, to a small one that still breaks the
//! same invariant, so its trace reads in a minute.

use crate::run::run;
use crate::schedule::Schedule;

/// Most runs one shrink may make.
const MAX_RUNS: usize = 3_000;

/// The smallest schedule found that still breaks `invariant`, and how many runs it took.
pub fn shrink(schedule: &Schedule, invariant: &str) -> (Schedule, usize) {
    let runs = std::cell::Cell::new(0);
    let fails = |s: &Schedule| {
        runs.set(runs.get() + 1);
        run(s, false).violation.is_some_and(|v| v.invariant == invariant)
    };
    let mut best = schedule.clone();
    loop {
        let mut smaller = false;
        // Drop whole steps, last first (later steps depend on earlier joins).
        let mut i = best.steps.len();
        while i > 0 {
            i -= 1;
            let mut candidate = best.clone();
            candidate.steps.remove(i);
            if fails(&candidate) {
                best = candidate;
                smaller = true;
            }
        }
        // Shorter waits.
        for i in 0..best.steps.len() {
            for after_ms in [0, best.steps[i].after_ms / 2] {
                if after_ms < best.steps[i].after_ms {
                    let mut candidate = best.clone();
                    candidate.steps[i].after_ms = after_ms;
                    if fails(&candidate) {
                        best = candidate;
                        smaller = true;
                        break;
                    }
                }
            }
        }
        // A plainer network.
        let plainer = [(0, best.net.jitter_ms), (best.net.loss_pct, 0)];
        for (loss_pct, jitter_ms) in plainer {
            if (loss_pct, jitter_ms) != (best.net.loss_pct, best.net.jitter_ms) {
                let mut candidate = best.clone();
                candidate.net.loss_pct = loss_pct;
                candidate.net.jitter_ms = jitter_ms;
                if fails(&candidate) {
                    best = candidate;
                    smaller = true;
                }
            }
        }
        if !smaller || runs.get() >= MAX_RUNS {
            return (best, runs.get());
        }
    }
}
