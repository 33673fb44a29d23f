//! temp
#[test]
fn quick() {
    let n: u64 = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let c = mesh_sim::campaign(0, n, 2);
    eprintln!("{} schedules in {:?}; failures {}", c.schedules, c.wall, c.failures.len());
    let mut by: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (s, v) in &c.failures {
        by.entry(v.invariant).or_default().push(*s);
    }
    for (k, v) in &by {
        eprintln!("{k}: {} e.g. {:?}", v.len(), &v[..v.len().min(8)]);
    }
    eprintln!(
        "recovery p50 {} p99 {} max {}",
        c.recovery_quantile(0.5),
        c.recovery_quantile(0.99),
        c.recovery_quantile(1.0)
    );
}
#[test]
fn one() {
    if let Some(seed) = std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        eprintln!("{}", mesh_sim::report(seed));
    }
}
