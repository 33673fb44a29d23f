//! `mesh-bench signaling`: the `mesh-signal` binary (found next to this one) under
//! rooms × peers WebSocket connections: registrations per second, forwarding latency idle and in
//! an all-at-once burst, and the server's peak memory. With `--redis URL`, two instances share
//! the rooms on that Redis and the peers of each room alternate between them.

use crate::Samples;
use signaling_ws::loadgen::{self, LoadConfig, ServerProcess};

/// Options of `mesh-bench signaling`.
#[derive(clap::Args, Debug)]
pub(crate) struct SignalingArgs {
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
    /// Run two instances on this Redis (`redis://HOST:PORT`) instead of one in-memory server.
    #[arg(long)]
    redis: Option<String>,
}

/// Runs the load `trials` times against fresh servers.
pub(crate) async fn run(args: SignalingArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let server_path = exe.with_file_name("mesh-signal");
    if !server_path.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p signaling-ws`",
            server_path.display()
        ));
    }
    let [mut regs, mut idle50, mut idle99, mut burst50, mut burst99, mut rss]: [Samples; 6] = Default::default();
    for trial in 0..args.trials {
        let servers = match &args.redis {
            None => vec![ServerProcess::spawn(&server_path)?],
            Some(url) => (0..2)
                .map(|_| {
                    let mut command = std::process::Command::new(&server_path);
                    command.args(["--redis", url]);
                    ServerProcess::spawn_command(command, "127.0.0.1:0")
                })
                .collect::<Result<_, _>>()?,
        };
        // Rooms named afresh each trial: the instances of a trial before may still hold theirs.
        let room_prefix = format!("bench-{}-{trial}-", std::process::id());
        let config = LoadConfig {
            rooms: args.rooms,
            peers: args.peers,
            concurrency: args.concurrency,
            idle_samples: args.idle,
            room_prefix,
        };
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        let report = loadgen::run(&urls, &config).await?;
        let rss_mib = servers.iter().map(|s| s.peak_rss_kib().unwrap_or(0)).sum::<u64>() as f64 / 1024.0;
        for server in servers {
            if !server.stop() {
                return Err("mesh-signal did not stop cleanly".into());
            }
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
    let servers = if args.redis.is_some() { "2 servers on redis" } else { "1 server in memory" };
    println!("signaling over {servers}");
    println!(
        "signaling {n} connections: registrations/s            min/median/max {}  trials {}",
        regs.summary(0),
        args.trials
    );
    println!("signaling {n} connections: idle forward p50 (ms)      min/median/max {}", idle50.summary(3));
    println!("signaling {n} connections: idle forward p99 (ms)      min/median/max {}", idle99.summary(3));
    println!("signaling {n} connections: burst of {n} p50 (ms)   min/median/max {}", burst50.summary(1));
    println!("signaling {n} connections: burst of {n} p99 (ms)   min/median/max {}", burst99.summary(1));
    println!("signaling {n} connections: servers' peak RSS (MiB)    min/median/max {}", rss.summary(1));
    Ok(())
}
