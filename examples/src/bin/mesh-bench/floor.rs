//! `mesh-bench idle --floor`: what an idle worker's traffic costs without the transport's
//! runtime, measured beside the workers in the same run. Two parts:
//! - sockets: N processes (`mesh-bench floor-peer`), one UDP socket each; on every whole second
//!   of the wall clock each sends a 100-byte datagram to every other, which answers it with a
//!   50-byte one: the four datagrams per link-second a heartbeat each way and their SCTP
//!   acknowledgements cost, with no crypto and no async runtime;
//! - the stack's sans-IO core: two peer connections with a link's settings on a simulated wire
//!   in virtual time (`transport_webrtc::testing::wire`), a heartbeat-sized message each way
//!   every second for an hour, consent checks and all; its CPU per end and link-second, times
//!   the links of a worker.

use crate::Samples;
use mesh_examples::procs::cpu_time_of;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use transport_webrtc::testing::wire::{Timing, Wire};

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
}

/// `floor-peer`: binds a loopback UDP socket, prints its port, reads the peers' addresses (one
/// line, space-separated) from stdin, then beats and answers until `secs` have passed.
pub(crate) fn peer(args: PeerArgs) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", socket.local_addr().map_err(|e| e.to_string())?.port());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let peers: Vec<SocketAddr> = line.split_whitespace().filter_map(|a| a.parse().ok()).collect();
    let end = Instant::now() + Duration::from_secs(args.secs);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
        let next = Duration::from_secs(since.as_secs() + 1);
        // Answer beats until the next whole second, then beat.
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
            let Some(wait) = next.checked_sub(now).filter(|w| !w.is_zero()) else { break };
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

/// The `floor-peer` processes, killed on drop.
struct Peers(Vec<Child>);

impl Drop for Peers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sockets part: CPU share and wake-ups per `floor-peer` process of `n`, over `secs`.
pub(crate) fn sockets(n: usize, secs: Duration) -> Result<(Samples, Samples), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut peers = Peers(Vec::new());
    let mut ports = Vec::new();
    for _ in 0..n {
        let mut child = Command::new(&exe)
            .args(["floor-peer", "--secs", &(secs.as_secs() + 10).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("floor-peer: {e}"))?;
        let stdout = child.stdout.take().ok_or("floor-peer: no stdout")?;
        peers.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        ports.push(line.trim().parse::<u16>().map_err(|_| format!("floor-peer printed {line:?}"))?);
    }
    for (i, child) in peers.0.iter_mut().enumerate() {
        let others: Vec<String> =
            ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| format!("127.0.0.1:{p}")).collect();
        let stdin = child.stdin.as_mut().ok_or("floor-peer: no stdin")?;
        writeln!(stdin, "{}", others.join(" ")).map_err(|e| e.to_string())?;
    }
    let pids: Vec<u32> = peers.0.iter().map(Child::id).collect();
    let (share, woken, _) = crate::procs::idle_cost(&pids, secs)?;
    Ok((share, woken))
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
    let beat = r#"{"type":"heartbeat","seq":123456,"admin":"w0","epoch":3,"admin_linked":true,"links":null}"#;
    let me = std::process::id();
    let (cpu_before, sent_before, wakes_before) =
        (cpu_time_of(me).ok_or("no schedstat")?, wire.ends[0].datagrams, wire.wakes);
    let start = wire.now;
    for second in 1..=SECS {
        let at = start + Duration::from_secs(second);
        wire.run_until(at);
        for end in &mut wire.ends {
            end.send(at, beat);
        }
    }
    wire.run_until(start + Duration::from_secs(SECS + 1));
    let cpu = cpu_time_of(me).ok_or("no schedstat")? - cpu_before;
    let sent = (wire.ends[0].datagrams - sent_before) as f64 / SECS as f64;
    let wakes = (wire.wakes - wakes_before) as f64 / SECS as f64;
    Ok((cpu.as_secs_f64() * 1e6 / SECS as f64 / 2.0, sent, wakes))
}
