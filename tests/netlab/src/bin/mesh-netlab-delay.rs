//! mesh-netlab-delay: the lab's latency stage. Runs inside one host's namespace, takes the packets
//! an iptables `NFQUEUE` rule hands it (the host's egress), and lets each one go after
//! `--delay-ms` ± `--jitter-ms` (uniform, seeded). The kernel here has no `netem`, so latency is
//! added in userspace: holding a verdict holds the packet.
//!
//! Usage: mesh-netlab-delay --queue N --delay-ms D [--jitter-ms J] [--seed S]

use nfq::{Queue, Verdict};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: Option<u64>) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number")),
        None => default.ok_or(format!("{name} is required")),
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let queue_num = arg(&args, "--queue", Some(0))? as u16;
    let delay = Duration::from_millis(arg(&args, "--delay-ms", None)?);
    let jitter = arg(&args, "--jitter-ms", Some(0))? as f64;
    let mut rng = arg(&args, "--seed", Some(1))? | 1;
    let mut queue = Queue::open().map_err(|e| format!("netlink queue: {e}"))?;
    queue.bind(queue_num).map_err(|e| format!("bind queue {queue_num}: {e}"))?;
    let _ = queue.set_copy_range(queue_num, 0); // headers are enough: the payload is not read
    let _ = queue.set_queue_max_len(queue_num, 20_000);
    // A TSO burst arrives as one packet, not dozens (fewer messages), and the kernel may queue
    // plenty before this process reads them: with the default socket buffer (about 200 KiB,
    // some 250 queued packets) a TCP burst overflowed it and the kernel dropped packets silently,
    // which held a TCP stream at 80 ms RTT to 0.1 MiB/s.
    let _ = queue.set_recv_gso(queue_num, true);
    grow_netlink_buffer(64 << 20);
    queue.set_nonblocking(true);
    println!("mesh-netlab-delay queue {queue_num} ready"); // the lab waits for this line
    let mut held: BinaryHeap<(Reverse<Instant>, u64)> = BinaryHeap::new();
    let mut messages = std::collections::HashMap::new();
    let mut next_key = 0u64;
    loop {
        let mut busy = false;
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    busy = true;
                    // xorshift64: jitter uniform in [-jitter, +jitter]
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let unit = (rng >> 11) as f64 / (1u64 << 53) as f64;
                    let offset = (unit * 2.0 - 1.0) * jitter;
                    let hold = (delay.as_secs_f64() * 1000.0 + offset).max(0.0);
                    msg.set_verdict(Verdict::Accept);
                    held.push((Reverse(Instant::now() + Duration::from_secs_f64(hold / 1000.0)), next_key));
                    messages.insert(next_key, msg);
                    next_key += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|(Reverse(due), _)| *due <= now) {
            if let Some((_, key)) = held.pop() {
                if let Some(msg) = messages.remove(&key) {
                    queue.verdict(msg).map_err(|e| format!("verdict: {e}"))?;
                }
            }
        }
        if !busy {
            let until_due = held.peek().map(|(Reverse(due), _)| due.saturating_duration_since(now));
            std::thread::sleep(until_due.unwrap_or(Duration::from_millis(1)).min(Duration::from_millis(1)));
        }
    }
}

/// Sets the receive buffer of this process's netfilter netlink socket (the queue's) to `bytes`,
/// past `rmem_max` (the delayer runs as root). nfq keeps the socket to itself, so it is found
/// among the open descriptors by its family and protocol.
fn grow_netlink_buffer(bytes: i32) {
    for fd in 3..256 {
        let get = |opt: i32| {
            let (mut v, mut len) = (0i32, std::mem::size_of::<i32>() as libc::socklen_t);
            // SAFETY: getsockopt into a local i32 of the given length; a non-socket fd fails.
            let ok = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut i32).cast(), &mut len) } == 0;
            ok.then_some(v)
        };
        if get(libc::SO_DOMAIN) == Some(libc::AF_NETLINK) && get(libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER) {
            let len = std::mem::size_of::<i32>() as libc::socklen_t;
            // SAFETY: setsockopt from a local i32 on a socket this process owns.
            let set = unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&bytes as *const i32).cast(), len)
            };
            if set != 0 {
                eprintln!("mesh-netlab-delay: receive buffer not grown: {}", std::io::Error::last_os_error());
            }
            return;
        }
    }
    eprintln!("mesh-netlab-delay: no netlink socket found to grow its receive buffer");
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mesh-netlab-delay: {e}");
        std::process::exit(1);
    }
}
