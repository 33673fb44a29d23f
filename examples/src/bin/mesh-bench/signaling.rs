//! `mesh-bench signaling`: the `mesh-signal` binary (found next to this one) under
//! rooms × peers WebSocket connections: registrations per second, forwarding latency idle and in
//! an all-at-once burst, and the server's peak memory.

use crate::Samples;
use signaling_ws::loadgen::{self, LoadConfig, ServerProcess};

/// Options of `mesh-bench signaling`.
#[derive(clap::Args, Debug)]
pub struct SignalingArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1000)]
    rooms: usize,
    /// Peers per room.
    #[arg(long, default_value_t = 10)]
    peers: usize,
    /// Registrations in flight.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Idle one-at-a-time signals timed per trial.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Trials (a fresh server each).
    #[arg(long, default_value_t = 3)]
    trials: usize,
}

/// Runs the load `trials` times against fresh servers.
pub async fn run(args: SignalingArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let server_path = exe.with_file_name("mesh-signal");
    if !server_path.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p signaling-ws`",
            server_path.display()
        ));
    }
    let config =
        LoadConfig { rooms: args.rooms, peers: args.peers, concurrency: args.concurrency, idle_samples: args.idle };
    let [mut regs, mut idle50, mut idle99, mut burst50, mut burst99, mut rss]: [Samples; 6] = Default::default();
    for _ in 0..args.trials {
        let server = ServerProcess::spawn(&server_path)?;
        let report = loadgen::run(&server.url, &config).await?;
        let rss_mib = server.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        if !server.stop() {
            return Err("mesh-signal did not stop cleanly".into());
        }
        let push = |s: &mut Samples, us: u64| s.push(us as f64 / 1000.0);
        regs.push(report.registrations_per_sec());
        push(&mut idle50, loadgen::quantile(&report.idle_us, 0.5));
        push(&mut idle99, loadgen::quantile(&report.idle_us, 0.99));
        push(&mut burst50, loadgen::quantile(&report.burst_us, 0.5));
        push(&mut burst99, loadgen::quantile(&report.burst_us, 0.99));
        rss.push(rss_mib);
    }
    let n = args.rooms * args.peers;
    println!(
        "signaling {n} connections: registrations/s            min/median/max {}  trials {}",
        regs.summary(0),
        args.trials
    );
    println!("signaling {n} connections: idle forward p50 (ms)      min/median/max {}", idle50.summary(3));
    println!("signaling {n} connections: idle forward p99 (ms)      min/median/max {}", idle99.summary(3));
    println!("signaling {n} connections: burst of {n} p50 (ms)   min/median/max {}", burst50.summary(1));
    println!("signaling {n} connections: burst of {n} p99 (ms)   min/median/max {}", burst99.summary(1));
    println!("signaling {n} connections: server peak RSS (MiB)      min/median/max {}", rss.summary(1));
    Ok(())
}
