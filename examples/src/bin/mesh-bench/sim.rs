//! `mesh-bench sim`: campaigns of the deterministic simulator (`mesh-sim`), or one seed replayed
//! with its shrunk schedule and trace.

use clap::Args;

/// Arguments of `mesh-bench sim`.
#[derive(Args, Debug)]
pub(crate) struct SimArgs {
    /// How many seeded schedules to run.
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// The first seed of the campaign.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Replay this one seed: its schedule, the invariant it broke, the shrunk schedule and trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs the campaign (or the replay) and prints what it found; an error if any seed failed.
pub(crate) fn run(args: SimArgs) -> Result<(), String> {
    if let Some(seed) = args.seed {
        let schedule = mesh_sim::Schedule::generate(seed);
        println!("{schedule}");
        let report = mesh_sim::report(seed);
        print!("{report}");
        return match mesh_sim::run(&schedule, false).violation {
            Some(v) => Err(format!("seed {seed} broke \"{}\"", v.invariant)),
            None => Ok(()),
        };
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let c = mesh_sim::campaign(args.from, args.seeds, threads);
    let secs = c.wall.as_secs_f64();
    println!(
        "{} schedules (seeds {}..{}) in {secs:.1} s on {threads} threads: {:.0} schedules/s, {:.1} h of virtual time",
        c.schedules,
        args.from,
        args.from + args.seeds,
        c.schedules as f64 / secs,
        c.virtual_ms as f64 / 3.6e6
    );
    println!("invariants checked:");
    for invariant in mesh_sim::INVARIANTS {
        println!("  {:>14}  {invariant}", c.checks.get(invariant).copied().unwrap_or(0));
    }
    println!(
        "settle to rest, over {} settles: p50 {} ms, p99 {} ms, max {} ms (bound {} ms)",
        c.recoveries.len(),
        c.recovery_quantile(0.5),
        c.recovery_quantile(0.99),
        c.recovery_quantile(1.0),
        mesh_sim::CONVERGE_BOUND_MS
    );
    println!("failures: {}", c.failures.len());
    for (seed, v) in c.failures.iter().take(20) {
        println!("  seed {seed}: \"{}\" at {} ms: {}", v.invariant, v.at_ms, v.detail);
    }
    match c.failures.first() {
        Some((seed, _)) => {
            Err(format!("{} seeds failed; replay one with: mesh-bench sim --seed {seed}", c.failures.len()))
        }
        None => Ok(()),
    }
}
