//! Many seeds at once, on every core: schedules per second, invariants checked, failures.

use crate::run::Outcome;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a campaign found.
#[derive(Debug, Default)]
pub struct Campaign {
    /// Schedules run.
    pub schedules: u64,
    /// Wall time taken.
    pub wall: Duration,
    /// Virtual time simulated, ms.
    pub virtual_ms: u64,
    /// How many times each invariant was checked, over all runs.
    pub checks: BTreeMap<&'static str, u64>,
    /// Seeds that broke an invariant, with the violation.
    pub failures: Vec<(u64, crate::Violation)>,
    /// Every settle-to-rest time, ms.
    pub recoveries: Vec<u64>,
}

/// Runs seeds `from..from + count` on `threads` threads.
pub fn campaign(from: u64, count: u64, threads: usize) -> Campaign {
    let next = AtomicU64::new(from);
    let total = Mutex::new(Campaign::default());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut mine = Campaign::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= from + count {
                        break;
                    }
                    mine.add(crate::run_seed(seed, false));
                }
                if let Ok(mut total) = total.lock() {
                    total.merge(mine);
                }
            });
        }
    });
    let mut total = total.into_inner().unwrap_or_default();
    total.wall = start.elapsed();
    total.failures.sort_by_key(|(seed, _)| *seed);
    total
}

impl Campaign {
    fn add(&mut self, outcome: Outcome) {
        self.schedules += 1;
        self.virtual_ms += outcome.virtual_ms;
        for (k, v) in outcome.checks {
            *self.checks.entry(k).or_insert(0) += v;
        }
        self.recoveries.extend(outcome.recoveries);
        if let Some(v) = outcome.violation {
            self.failures.push((outcome.seed, v));
        }
    }

    fn merge(&mut self, other: Campaign) {
        self.schedules += other.schedules;
        self.virtual_ms += other.virtual_ms;
        for (k, v) in other.checks {
            *self.checks.entry(k).or_insert(0) += v;
        }
        self.recoveries.extend(other.recoveries);
        self.failures.extend(other.failures);
    }

    /// The `q` quantile of settle-to-rest times, ms.
    pub fn recovery_quantile(&self, q: f64) -> u64 {
        let mut v = self.recoveries.clone();
        v.sort_unstable();
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0)
    }
}
