//! `mesh-bench failover | idle`: real `mesh-signal` and `mesh-worker` processes on loopback (the
//! binaries next to mesh-bench, built on demand). The admin goes away as a process really does:
//! SIGKILL (the server sees the socket close), SIGSTOP (everything stays open: only heartbeats and
//! ICE can tell), or SIGTERM (the worker leaves gracefully).

use crate::Samples;
use mesh_examples::procs::{attempts, full, sibling_binary, wait_all, worker_config, WorkerProc};
use signaling_ws::loadgen::ServerProcess;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A server and `n` workers, formed into a full mesh.
struct Room {
    // Dropped in this order: the workers before their server.
    workers: Vec<WorkerProc>,
    _server: ServerProcess,
    dir: PathBuf,
}

impl Drop for Room {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn form(n: usize, tag: &str) -> Result<(Room, Duration), String> {
    let server = ServerProcess::spawn(&sibling_binary("mesh-signal", "signaling-ws")?)?;
    let worker = sibling_binary("mesh-worker", "mesh-examples")?;
    let (dir, config) = worker_config(&server.url, "bench", tag).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let workers = (0..n)
        .map(|i| WorkerProc::spawn(&worker, Path::new(&config), &format!("w{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    wait_all(&workers.iter().collect::<Vec<_>>(), WAIT, "full mesh", full(n as u64 - 1))?;
    Ok((Room { workers, _server: server, dir }, t.elapsed()))
}

/// Options of `mesh-bench failover`.
#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Mesh size.
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// How the admin's process goes away: SIGKILL, SIGSTOP, or SIGTERM (a graceful leave).
    #[arg(long, value_parser = ["kill", "freeze", "leave"], default_value = "kill")]
    mode: String,
    /// Trials.
    #[arg(long, default_value_t = 5)]
    trials: usize,
}

/// Time from the signal to the admin's process until every survivor reports the same new admin,
/// verified; and the link attempts the survivors made meanwhile.
pub fn failover(args: FailoverArgs) -> Result<(), String> {
    let n = args.workers.max(3);
    let (mut verified, mut reconnects) = (Samples::default(), 0u64);
    for trial in 0..args.trials {
        let (mut room, _) = form(n, &format!("failover-{trial}"))?;
        let admin = room.workers[0].snapshot()["health"]["admin"].as_str().ok_or("no admin")?.to_string();
        let idx = (0..n).find(|i| format!("w{i}") == admin).ok_or("admin is not one of ours")?;
        let gone = room.workers.remove(idx);
        let before: u64 = room.workers.iter().map(|p| attempts(&p.snapshot())).sum();
        let survivors: Vec<&WorkerProc> = room.workers.iter().collect();
        let t = Instant::now();
        gone.signal(match args.mode.as_str() {
            "kill" => "-KILL",
            "freeze" => "-STOP",
            _ => "-TERM",
        });
        let new_admin = |s: &serde_json::Value| {
            s["health"]["admin_verified"] == true && s["health"]["admin"].as_str().is_some_and(|a| a != admin)
        };
        wait_all(&survivors, WAIT, "a verified new admin", new_admin)?;
        let first = survivors[0].snapshot()["health"]["admin"].clone();
        wait_all(&survivors, WAIT, "the same admin everywhere", |s| new_admin(s) && s["health"]["admin"] == first)?;
        verified.push(t.elapsed().as_secs_f64() * 1000.0);
        reconnects += room.workers.iter().map(|p| attempts(&p.snapshot())).sum::<u64>() - before;
        drop(gone); // resumed, then killed
    }
    println!(
        "failover {n} workers, admin {} (processes, webrtc + relay,ws): ms to verified new admin  min/median/max {}  reconnects {reconnects}  trials {}",
        args.mode,
        verified.summary(1),
        args.trials
    );
    Ok(())
}

/// Options of `mesh-bench idle`.
#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    /// Mesh size.
    #[arg(long, default_value_t = 10)]
    workers: usize,
    /// Seconds of idle time measured (after the mesh formed and settled for 2 s).
    #[arg(long, default_value_t = 10)]
    secs: u64,
}

/// CPU time each idle worker process uses, as a share of one core.
pub fn idle(args: IdleArgs) -> Result<(), String> {
    let n = args.workers.max(2);
    let (room, formed) = form(n, "idle")?;
    std::thread::sleep(Duration::from_secs(2)); // let formation's work finish before measuring
    let cpu = |p: &WorkerProc| p.cpu_time().ok_or_else(|| format!("no /proc stat for pid {}", p.pid()));
    let start: Vec<Duration> = room.workers.iter().map(cpu).collect::<Result<_, _>>()?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(args.secs.max(1)));
    let wall = t.elapsed().as_secs_f64();
    let mut share = Samples::default();
    for (p, before) in room.workers.iter().zip(start) {
        share.push((cpu(p)? - before).as_secs_f64() / wall * 100.0);
    }
    println!(
        "idle {n} workers (processes, formed in {} ms): CPU per worker, % of a core  min/median/max {}  over {:.0} s",
        formed.as_millis(),
        share.summary(3),
        wall
    );
    Ok(())
}
