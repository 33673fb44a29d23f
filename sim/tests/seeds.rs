//! Five hundred seeded failure schedules on every `cargo test`; `MESH_SIM_SEEDS` runs more
//! (and `mesh-bench sim --seeds N` runs campaigns). A failure prints the seed, its shrunk
//! schedule and the trace: replay it with `mesh-bench sim --seed N`.

#[test]
fn every_invariant_holds_over_seeded_failure_schedules() {
    let count = std::env::var("MESH_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let campaign = mesh_sim::campaign(0, count, threads);
    assert_eq!(campaign.schedules, count);
    for invariant in mesh_sim::INVARIANTS {
        let checked = campaign.checks.get(invariant).copied().unwrap_or(0);
        assert!(checked > 0, "{invariant} never checked");
    }
    if let Some((seed, _)) = campaign.failures.first() {
        panic!("{} of {count} schedules failed; the first:\n{}", campaign.failures.len(), mesh_sim::report(*seed));
    }
}
