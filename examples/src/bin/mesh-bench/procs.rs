//! `mesh-bench failover | idle`: real `mesh-signal` and `mesh-worker` processes on loopback (the
//! binaries next to mesh-bench, built on demand). The admin goes away as a process really does:
//! SIGKILL (the server sees the socket close), SIGSTOP (everything stays open: only heartbeats and
//! ICE can tell), or SIGTERM (the worker leaves gracefully). With `--lab`, the processes run in the
//! network lab (one namespace per host) over an emulated WAN.

use crate::Samples;
use mesh_examples::labroom::{LabRoom, WanSpec};
use mesh_examples::procs::{
    attempts, cpu_time_of, full, sibling_binary, wait_all, wait_new_admin, wakeups_of, worker_config, WorkerProc,
};
use mesh_netlab::Lab;
use signaling_ws::loadgen::ServerProcess;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A server and `n` workers on loopback, or in the network lab.
enum Room {
    Local {
        // Dropped in this order: the workers before their server.
        workers: Vec<WorkerProc>,
        _server: ServerProcess,
        dir: PathBuf,
    },
    Lab(Box<LabRoom>),
}

impl Room {
    fn workers(&mut self) -> &mut Vec<WorkerProc> {
        match self {
            Room::Local { workers, .. } => workers,
            Room::Lab(room) => &mut room.workers,
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Room::Local { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts `n` workers (on loopback, or in a lab with `wan`, logging timeline marks to `timeline`
/// if given) and waits for the full mesh; the time is from the first worker's start to the last
/// worker holding all its links.
fn form(n: usize, tag: &str, wan: Option<WanSpec>, timeline: Option<&Path>) -> Result<(Room, Duration), String> {
    let (mut room, t) = match wan {
        None => {
            let server = ServerProcess::spawn(&sibling_binary("mesh-signal", "signaling-ws")?)?;
            let worker = sibling_binary("mesh-worker", "mesh-examples")?;
            let (dir, config) = worker_config(&server.url, "bench", tag).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let workers = (0..n)
                .map(|i| WorkerProc::spawn(&worker, Path::new(&config), &format!("w{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            (Room::Local { workers, _server: server, dir }, t)
        }
        Some(wan) => {
            let lab = Lab::new(n + 1)?;
            wan.apply(&lab)?;
            let room = LabRoom::logged(lab, (1..=n).collect(), n, "", timeline.map(Path::to_path_buf))?;
            // The server is up before the first worker starts: count from that start.
            let since_first = mesh_core::timeline::unix_us().saturating_sub(room.spawned_us[0]);
            (Room::Lab(Box::new(room)), Instant::now() - Duration::from_micros(since_first))
        }
    };
    let workers: Vec<&WorkerProc> = room.workers().iter().collect();
    wait_all(&workers, Duration::from_secs(120), "full mesh", full(n as u64 - 1))?;
    Ok((room, t.elapsed()))
}

/// Options of `mesh-bench failover`.
#[derive(clap::Args, Debug)]
pub(crate) struct FailoverArgs {
    /// Mesh size.
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// How the admin's process goes away: SIGKILL, SIGSTOP, or SIGTERM (a graceful leave).
    #[arg(long, value_parser = ["kill", "freeze", "leave"], default_value = "kill")]
    mode: String,
    /// Trials.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Run in the network lab with this WAN (`rtt=80ms,jitter=10ms,loss=1%`; needs root).
    #[arg(long)]
    lab: Option<WanSpec>,
}

/// Time from the signal to the admin's process until every survivor reports the same new admin,
/// verified; and the link attempts the survivors made meanwhile.
pub(crate) fn failover(args: FailoverArgs) -> Result<(), String> {
    let n = args.workers.max(3);
    let (mut verified, mut reconnects) = (Samples::default(), 0u64);
    for trial in 0..args.trials {
        let (mut room, _) = form(n, &format!("failover-{trial}"), args.lab, None)?;
        let admin = room.workers()[0].snapshot()["health"]["admin"].as_str().ok_or("no admin")?.to_string();
        let idx = (0..n).find(|i| format!("w{i}") == admin).ok_or("admin is not one of ours")?;
        let gone = room.workers().remove(idx);
        let before: u64 = room.workers().iter().map(|p| attempts(&p.snapshot())).sum();
        let survivors: Vec<&WorkerProc> = room.workers().iter().collect();
        let t = Instant::now();
        gone.signal(match args.mode.as_str() {
            "kill" => "-KILL",
            "freeze" => "-STOP",
            _ => "-TERM",
        });
        wait_new_admin(&survivors, WAIT, &admin)?;
        verified.push(t.elapsed().as_secs_f64() * 1000.0);
        reconnects += room.workers().iter().map(|p| attempts(&p.snapshot())).sum::<u64>() - before;
        drop(gone); // resumed, then killed
    }
    println!(
        "failover {n} workers, admin {} (processes{}, webrtc + relay,ws): ms to verified new admin  min/median/max {}  reconnects {reconnects}  trials {}",
        args.mode,
        lab_label(args.lab),
        verified.summary(1),
        args.trials
    );
    Ok(())
}

/// Options of `mesh-bench idle`.
#[derive(clap::Args, Debug)]
pub(crate) struct IdleArgs {
    /// Mesh size.
    #[arg(long, default_value_t = 10)]
    workers: usize,
    /// Seconds of idle time measured (after the mesh formed and settled for 2 s).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Then measure a room of stock matchbox 0.15 peers the same way, as the baseline of the same
    /// run (`anchors/matchbox`, built on first use: a few minutes).
    #[arg(long)]
    anchor: bool,
    /// Then measure the same traffic without the transport's runtime: bare UDP processes, the
    /// stack's sans-IO core on a simulated wire, and the stack on one socket and one thread per
    /// process (see `floor.rs`).
    #[arg(long)]
    floor: bool,
}

/// CPU time each idle worker process uses, as a share of one core, and its wake-ups; with
/// `--anchor`, the same for a room of matchbox peers, measured next.
pub(crate) fn idle(args: IdleArgs) -> Result<(), String> {
    let n = args.workers.max(2);
    let secs = Duration::from_secs(args.secs.max(1));
    let (mut room, formed) = form(n, "idle", None, None)?;
    let pids: Vec<u32> = room.workers().iter().map(WorkerProc::pid).collect();
    let (share, woken, wall) = idle_cost(&pids, secs)?;
    println!(
        "idle {n} workers (processes, formed in {} ms): CPU per worker, % of a core  min/median/max {}  wake-ups per worker per s {}  over {wall:.0} s",
        formed.as_millis(),
        share.summary(3),
        woken.summary(0),
    );
    drop(room);
    if args.anchor {
        let (anchor, formed) = crate::anchor::matchbox_room(n)?;
        let (base, base_woken, wall) = idle_cost(&anchor.peer_pids(), secs)?;
        println!(
            "idle {n} matchbox 0.15 peers (processes, same run, formed in {} ms): CPU per peer, % of a core  min/median/max {}  wake-ups per peer per s {}  over {wall:.0} s",
            formed.as_millis(),
            base.summary(3),
            base_woken.summary(0),
        );
        println!(
            "idle: our worker / matchbox peer (medians): CPU {:.2}x  wake-ups {:.2}x",
            share.median() / base.median(),
            woken.median() / base_woken.median()
        );
    }
    if args.floor {
        let (sockets, sockets_woken) = crate::floor::sockets(n, secs)?;
        println!(
            "idle floor, sockets: {n} processes, a datagram to each peer every second and its answer (4 per link-second): CPU per process, % of a core  min/median/max {}  wake-ups per process per s {}",
            sockets.summary(3),
            sockets_woken.summary(0),
        );
        let (per_link_us, datagrams, wakes) = crate::floor::core()?;
        let core = per_link_us * (n - 1) as f64 / 1e4; // µs per s, as % of a core
        println!(
            "idle floor, the stack's sans-IO core: {per_link_us:.1} µs per end per link-second ({datagrams:.1} datagrams sent, {wakes:.1} instants with work at either end), {core:.3} % of a core for {} links",
            n - 1
        );
        println!(
            "idle floor: sockets + core {:.3} % of a core, against the worker's {:.3} % in this run ({:.2}x)",
            sockets.median() + core,
            share.median(),
            (sockets.median() + core) / share.median()
        );
        let (stack, stack_woken) = crate::floor::stack(n, secs)?;
        println!(
            "idle floor, the stack on one socket and one thread: {n} processes, {} connections each, a heartbeat on each every second: CPU per process, % of a core  min/median/max {}  wake-ups per process per s {}  ({:.2}x the worker's)",
            n - 1,
            stack.summary(3),
            stack_woken.summary(0),
            stack.median() / share.median()
        );
    }
    Ok(())
}

/// After 2 s for set-up's work to finish, each process's CPU share (% of a core) and wake-ups
/// per second over `secs`; and the seconds measured.
pub(crate) fn idle_cost(pids: &[u32], secs: Duration) -> Result<(Samples, Samples, f64), String> {
    std::thread::sleep(Duration::from_secs(2));
    let read = |pid: u32| {
        let cpu = cpu_time_of(pid).ok_or_else(|| format!("no /proc schedstat for pid {pid}"))?;
        Ok::<_, String>((cpu, wakeups_of(pid).ok_or_else(|| format!("no /proc status for pid {pid}"))?))
    };
    let start = pids.iter().map(|&p| read(p)).collect::<Result<Vec<_>, String>>()?;
    let t = Instant::now();
    std::thread::sleep(secs);
    let wall = t.elapsed().as_secs_f64();
    let (mut share, mut woken) = (Samples::default(), Samples::default());
    for (&pid, (cpu_before, woken_before)) in pids.iter().zip(start) {
        let (cpu, wakeups) = read(pid)?;
        share.push((cpu - cpu_before).as_secs_f64() / wall * 100.0);
        woken.push(wakeups.saturating_sub(woken_before) as f64 / wall);
    }
    Ok((share, woken, wall))
}

pub(crate) fn lab_label(lab: Option<WanSpec>) -> String {
    match lab {
        None => String::new(),
        Some(w) => format!(" in the lab: rtt {:?}, jitter {:?}, loss {}%", w.rtt, w.jitter, w.loss_percent),
    }
}

/// `mesh-bench formation --lab …`: worker processes in the lab, time to a full mesh; with
/// `breakdown`, each trial's joins and link attempts step by step, and the phases over all.
pub(crate) fn formation_lab(sizes: &[usize], trials: usize, wan: WanSpec, breakdown: bool) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("mesh-breakdown-{}", std::process::id()));
    if breakdown {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for &n in sizes {
        let (mut ms, mut failures, mut duplicates) = (Samples::default(), 0, 0u64);
        let mut totals = crate::breakdown::Totals::default();
        for trial in 0..trials {
            match form(n.max(2), &format!("formation-{trial}"), Some(wan), breakdown.then_some(dir.as_path())) {
                Ok((mut room, took)) => {
                    ms.push(took.as_secs_f64() * 1000.0);
                    // Each worker opens a first link to each peer once (re-links count as
                    // reconnects): first opens above n·(n−1) are pairs linked twice.
                    let count = |s: &serde_json::Value, k: &str| s["counters"][k].as_u64().unwrap_or(0);
                    let first_opens: u64 = room
                        .workers()
                        .iter()
                        .map(|p| p.snapshot())
                        .map(|s| count(&s, "links_opened") - count(&s, "reconnects"))
                        .sum();
                    duplicates += first_opens.saturating_sub((n * (n - 1)) as u64) / 2;
                    if let (true, Room::Lab(lab)) = (breakdown, &room) {
                        println!(
                            "breakdown: {n} workers, trial {}: full mesh in {:.0} ms",
                            trial + 1,
                            took.as_secs_f64() * 1000.0
                        );
                        crate::breakdown::report(&dir, &lab.spawned_us, &mut totals);
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("formation of {n} in the lab failed: {e}");
                }
            }
        }
        println!(
            "formation {n:>2} workers (processes{}, webrtc + relay,ws) ms to full mesh  min/median/max {}  trials {trials}  failures {failures}  duplicate links {duplicates}",
            lab_label(Some(wan)),
            ms.summary(1)
        );
        println!("  every run (ms, in order): {}", ms.runs());
        if breakdown {
            totals.print();
        }
    }
    if breakdown && std::env::var_os("LAB_RUST_LOG").is_some() {
        // A closer look was asked for: the last trial's worker logs stay.
        eprintln!("worker logs of the last trial: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
