//! `mesh-bench restart`: a formed room of worker processes loses its `mesh-signal` (SIGKILL),
//! the server comes back on the same port after an outage, and a newcomer joins at once: the
//! time from the server being back until the newcomer is linked to every survivor.

use crate::Samples;
use mesh_examples::labroom::{LabRoom, WanSpec};
use mesh_examples::procs::{full, sibling_binary, wait_all, worker_config, WorkerProc};
use signaling_ws::loadgen::ServerProcess;
use std::process::Command;
use std::time::{Duration, Instant};

/// Options of `mesh-bench restart`.
#[derive(clap::Args, Debug)]
pub(crate) struct RestartArgs {
    /// Workers in the room before the restart (the newcomer makes one more).
    #[arg(long, default_value_t = 9)]
    workers: usize,
    /// How long the server stays down, in ms.
    #[arg(long, default_value_t = 3000)]
    outage_ms: u64,
    /// Trials.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Run in the network lab with this WAN (`rtt=80ms,jitter=5ms,loss=1%`; needs root).
    #[arg(long)]
    lab: Option<WanSpec>,
}

/// Runs the trials and prints every one, then min / median / max.
pub(crate) fn run(args: RestartArgs) -> Result<(), String> {
    let n = args.workers.max(2);
    let (server_bin, worker_bin) =
        (sibling_binary("mesh-signal", "signaling-ws")?, sibling_binary("mesh-worker", "mesh-examples")?);
    let mut linked = Samples::default();
    let mut runs = Vec::new();
    for trial in 0..args.trials {
        if let Some(wan) = args.lab {
            let ms = in_lab(n, wan, Duration::from_millis(args.outage_ms))?.as_secs_f64() * 1000.0;
            runs.push(format!("{ms:.0}"));
            linked.push(ms);
            continue;
        }
        let server = ServerProcess::spawn(&server_bin)?;
        let listen = server.url.strip_prefix("ws://").ok_or("server URL is not ws://")?.to_string();
        let (dir, config) =
            worker_config(&server.url, "bench", &format!("restart-{trial}")).map_err(|e| e.to_string())?;
        let result = (|| {
            let mut workers = (0..n)
                .map(|i| WorkerProc::spawn(&worker_bin, &config, &format!("w{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            let all: Vec<&WorkerProc> = workers.iter().collect();
            wait_all(&all, Duration::from_secs(60), "full mesh", full(n as u64 - 1))?;
            drop(server); // SIGKILL: the sockets close as in a crash
            std::thread::sleep(Duration::from_millis(args.outage_ms)); // the outage itself
            let _server = ServerProcess::spawn_command(Command::new(&server_bin), &listen)?;
            let back = Instant::now();
            workers.push(WorkerProc::spawn(&worker_bin, &config, &format!("w{n}"))?);
            let all: Vec<&WorkerProc> = workers.iter().collect();
            wait_all(&all, Duration::from_secs(60), "the newcomer linked to all", full(n as u64))?;
            Ok::<_, String>(back.elapsed())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        let took = result?;
        let ms = took.as_secs_f64() * 1000.0;
        runs.push(format!("{ms:.0}"));
        linked.push(ms);
    }
    println!(
        "restart: {n} workers, mesh-signal SIGKILLed for {} ms, a newcomer joins as it is back ({}): ms from the server back to the newcomer linked to all  min/median/max {}  runs [{}]",
        args.outage_ms,
        args.lab.map_or("processes on loopback".to_string(), |wan| format!("processes{}", crate::procs::lab_label(Some(wan)))),
        linked.summary(0),
        runs.join(", ")
    );
    Ok(())
}

/// One trial in the lab: the server on host 0, the room on hosts 1..=n, the newcomer on n+1.
fn in_lab(n: usize, wan: WanSpec, outage: Duration) -> Result<Duration, String> {
    let lab = mesh_netlab::Lab::new(n + 2)?;
    wan.apply(&lab)?;
    let mut room = LabRoom::on(lab, (1..=n + 1).collect(), n, "")?;
    wait_all(&room.all(), Duration::from_secs(60), "full mesh", full(n as u64 - 1))?;
    room.restart_server(outage)?;
    let back = Instant::now();
    room.start(n)?;
    wait_all(&room.all(), Duration::from_secs(60), "the newcomer linked to all", full(n as u64))?;
    Ok(back.elapsed())
}
