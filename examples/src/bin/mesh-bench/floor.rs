//! `mesh-bench idle --floor`: what an idle worker's traffic costs without the transport's
//! runtime, measured beside the workers in the same run. Three parts:
//! - sockets: N processes (`mesh-bench floor-peer`), one UDP socket each; on every whole second
//!   of the wall clock each sends a 100-byte datagram to every other, which answers it with a
//!   50-byte one: the four datagrams per link-second a heartbeat each way and their SCTP
//!   acknowledgements cost, with no crypto and no async runtime;
//! - the stack's sans-IO core: two peer connections with a link's settings on a simulated wire
//!   in virtual time (`transport_webrtc::testing::wire`), a heartbeat-sized message each way
//!   every second for an hour, consent checks and all; its CPU per end and link-second, times
//!   the links of a worker;
//! - both together: N processes (`mesh-bench floor-peer --stack`), each driving its N-1
//!   connections of the stack on one socket with one thread (`transport_webrtc::testing::shared`),
//!   a heartbeat-sized message on each every second: what a worker's links could cost if this
//!   project drove the core itself.

use crate::Samples;
use mesh_examples::procs::cpu_time_of;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use transport_webrtc::testing::shared::SharedSocket;
use transport_webrtc::testing::wire::{Timing, Wire};

/// A heartbeat as a worker sends it, for the parts that run the stack.
const HEARTBEAT: &str = r#"{"type":"heartbeat","seq":123456,"admin":"w0","epoch":3,"admin_linked":true,"links":null}"#;

/// A heartbeat's size on the wire: the datagram each peer sends every second.
const BEAT: [u8; 100] = [7; 100];
/// An acknowledgement's size: the answer to a beat.
const ACK: [u8; 50] = [9; 50];

/// Options of `mesh-bench floor-peer` (started by `idle --floor`).
#[derive(clap::Args, Debug)]
pub(crate) struct PeerArgs {
    /// Seconds to run before exiting.
    #[arg(long)]
    secs: u64,
    /// Drive the stack's connections on the socket instead of bare datagrams.
    #[arg(long)]
    stack: bool,
}

/// `floor-peer`: binds a loopback UDP socket and prints its port; then, with `--stack`, see
/// [`stack_peer`]; without, reads the peers' addresses (one line, space-separated) from stdin,
/// then beats and answers until `secs` have passed.
pub(crate) fn peer(args: PeerArgs) -> Result<(), String> {
    if args.stack {
        return stack_peer(args.secs);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", socket.local_addr().map_err(|e| e.to_string())?.port());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let peers: Vec<SocketAddr> = line.split_whitespace().filter_map(|a| a.parse().ok()).collect();
    let end = Instant::now() + Duration::from_secs(args.secs);
    let mut buf = [0u8; 2048];
    let second = Duration::from_secs(1);
    while Instant::now() < end {
        // The next whole second of the wall clock, where heartbeats go.
        let next = mesh_core::wall_clock_phase(second).ok_or("a clock before the epoch")? + second;
        // Answer beats until then, then beat.
        while let Some(wait) = next.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
            socket.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if len == BEAT.len() => {
                    let _ = socket.send_to(&ACK, from);
                }
                Ok(_) => {}
                Err(_) => break, // the timeout: the second is up
            }
        }
        for peer in &peers {
            let _ = socket.send_to(&BEAT, peer);
        }
    }
    Ok(())
}

/// The `floor-peer` processes (each with its output until it is taken), killed on drop.
struct Peers(Vec<(Child, Option<BufReader<std::process::ChildStdout>>)>);

impl Drop for Peers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `n` `floor-peer` processes (`--stack` if `stack`), each printing its port first.
fn spawn_peers(n: usize, secs: Duration, stack: bool) -> Result<(Peers, Vec<u16>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut peers = Peers(Vec::new());
    let mut ports = Vec::new();
    for _ in 0..n {
        let mut command = Command::new(&exe);
        command.args(["floor-peer", "--secs", &(secs.as_secs() + 40).to_string()]);
        if stack {
            command.arg("--stack");
        }
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| format!("floor-peer: {e}"))?;
        let stdout = child.stdout.take().ok_or("floor-peer: no stdout")?;
        peers.0.push((child, Some(BufReader::new(stdout))));
        let mut line = String::new();
        if let Some((_, Some(out))) = peers.0.last_mut() {
            out.read_line(&mut line).map_err(|e| e.to_string())?;
        }
        ports.push(line.trim().parse::<u16>().map_err(|_| format!("floor-peer printed {line:?}"))?);
    }
    Ok((peers, ports))
}

/// The sockets part: CPU share and wake-ups per `floor-peer` process of `n`, over `secs`.
pub(crate) fn sockets(n: usize, secs: Duration) -> Result<(Samples, Samples), String> {
    let (mut peers, ports) = spawn_peers(n, secs, false)?;
    for (i, (child, _)) in peers.0.iter_mut().enumerate() {
        let others: Vec<String> =
            ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| format!("127.0.0.1:{p}")).collect();
        let stdin = child.stdin.as_mut().ok_or("floor-peer: no stdin")?;
        writeln!(stdin, "{}", others.join(" ")).map_err(|e| e.to_string())?;
    }
    let pids: Vec<u32> = peers.0.iter().map(|(c, _)| c.id()).collect();
    let (share, woken, _) = crate::procs::idle_cost(&pids, secs)?;
    Ok((share, woken))
}

/// The part with both: CPU share and wake-ups per `floor-peer --stack` process of `n`, once
/// every process has all its channels open, over `secs`.
pub(crate) fn stack(n: usize, secs: Duration) -> Result<(Samples, Samples), String> {
    let (mut peers, ports) = spawn_peers(n, secs, true)?;
    let inputs: Vec<Arc<Mutex<ChildStdin>>> = peers
        .0
        .iter_mut()
        .map(|(child, _)| child.stdin.take().map(|s| Arc::new(Mutex::new(s))).ok_or("floor-peer: no stdin"))
        .collect::<Result<_, _>>()?;
    for (i, input) in inputs.iter().enumerate() {
        let mut input = input.lock().map_err(|_| "poisoned")?;
        writeln!(input, "{}", json!({ "index": i, "ports": ports })).map_err(|e| e.to_string())?;
    }
    // Each process's lines: descriptions for another (passed on), or how many channels it has open.
    let (opened_tx, opened) = mpsc::channel::<(usize, u64)>();
    for (i, (_, out)) in peers.0.iter_mut().enumerate() {
        let Some(out) = out.take() else { continue };
        let (inputs, opened_tx) = (inputs.clone(), opened_tx.clone());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
                if let Some(count) = msg["open"].as_u64() {
                    let _ = opened_tx.send((i, count));
                } else if let Some(to) = msg["to"].as_u64().and_then(|t| inputs.get(t as usize)) {
                    if let Ok(mut to) = to.lock() {
                        let _ = writeln!(to, "{line}");
                    }
                }
            }
        });
    }
    let mut open = vec![0u64; n];
    let deadline = Instant::now() + Duration::from_secs(30);
    while open.iter().any(|c| *c < n as u64 - 1) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or("floor-peer --stack: not all channels open in 30 s")?;
        let (i, count) =
            opened.recv_timeout(left).map_err(|_| format!("floor-peer --stack: channels open {open:?}"))?;
        open[i] = count;
    }
    let pids: Vec<u32> = peers.0.iter().map(|(c, _)| c.id()).collect();
    let (share, woken, _) = crate::procs::idle_cost(&pids, secs)?;
    Ok((share, woken))
}

/// `floor-peer --stack`: offers to every peer after it, answers every peer before it (the
/// descriptions pass through the bench on stdin and stdout), then drives them all until
/// `secs` have passed, printing how many channels are open whenever that changes.
fn stack_peer(secs: u64) -> Result<(), String> {
    let mut shared = SharedSocket::bind().map_err(|e| e.to_string())?;
    println!("{}", shared.local_addr().port());
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if let Ok(msg) = serde_json::from_str::<Value>(&line) {
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    });
    let hello = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "no peer list")?;
    let index = hello["index"].as_u64().ok_or("no index")? as usize;
    let ports: Vec<u16> =
        hello["ports"].as_array().ok_or("no ports")?.iter().filter_map(|p| p.as_u64()).map(|p| p as u16).collect();
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
    let say = |msg: Value| {
        println!("{msg}");
        let _ = std::io::stdout().flush();
    };
    for to in index + 1..ports.len() {
        let sdp = shared.offer(addr(to)).map_err(|e| e.to_string())?;
        say(json!({ "to": to, "from": index, "offer": sdp }));
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut reported = 0;
    while Instant::now() < end {
        let setting_up = shared.open() + 1 < ports.len();
        let step = setting_up.then_some(Duration::from_millis(5));
        shared.run(end, step, HEARTBEAT).map_err(|e| e.to_string())?;
        while let Ok(msg) = rx.try_recv() {
            let Some(from) = msg["from"].as_u64().map(|f| f as usize).filter(|f| *f < ports.len()) else { continue };
            if let Some(offer) = msg["offer"].as_str() {
                let sdp = shared.answer(addr(from), offer.to_owned()).map_err(|e| e.to_string())?;
                say(json!({ "to": from, "from": index, "answer": sdp }));
            } else if let Some(answer) = msg["answer"].as_str() {
                shared.answered(addr(from), answer.to_owned()).map_err(|e| e.to_string())?;
            }
        }
        if shared.open() != reported {
            reported = shared.open();
            say(json!({ "open": reported }));
        }
    }
    Ok(())
}

/// The core part, per end and link-second: CPU of the stack's sans-IO core in µs, datagrams
/// sent, and instants at which the core had something to do at either end (packets or timers).
pub(crate) fn core() -> Result<(f64, f64, f64), String> {
    const SECS: u64 = 3_600;
    let ms = Duration::from_millis(1);
    let timing = Timing { one_way: ms, signal: ms, stun_lag: Duration::ZERO, data_lead: Duration::ZERO };
    let t0 = Instant::now();
    let mut wire = Wire::link(t0, timing, None, None, t0 + Duration::from_secs(5));
    if wire.ends.iter().any(|e| e.channel.is_none()) {
        return Err("the simulated link did not open".into());
    }
    let me = std::process::id();
    let (cpu_before, sent_before, wakes_before) =
        (cpu_time_of(me).ok_or("no schedstat")?, wire.ends[0].datagrams, wire.wakes);
    let start = wire.now;
    for second in 1..=SECS {
        let at = start + Duration::from_secs(second);
        wire.run_until(at);
        for end in &mut wire.ends {
            end.send(at, HEARTBEAT);
        }
    }
    wire.run_until(start + Duration::from_secs(SECS + 1));
    let cpu = cpu_time_of(me).ok_or("no schedstat")? - cpu_before;
    let sent = (wire.ends[0].datagrams - sent_before) as f64 / SECS as f64;
    let wakes = (wire.wakes - wakes_before) as f64 / SECS as f64;
    Ok((cpu.as_secs_f64() * 1e6 / SECS as f64 / 2.0, sent, wakes))
}
