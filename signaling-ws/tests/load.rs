//! Load: the real `mesh-signal` process, rooms × 10 peers on loopback, each peer forwarding
//! one signal to a neighbour in its room. Default 1,000 rooms (10,000 connections; the fd limit
//! here is 20,000, so the server runs as its own process); `LOAD_ROOMS` overrides. Every peer
//! keeps its connection until all signals arrived. Bounded in count (10,000 connections, 10,000 signals) and
//! time (one overall timeout). Prints registrations/s, forwarding latency p50/p99 and the server's
//! peak memory; asserts only that everything was registered and delivered.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// Rooms; `LOAD_ROOMS` overrides (for quick local runs).
fn rooms() -> usize {
    std::env::var("LOAD_ROOMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}
const PEERS: usize = 10;
/// Registrations in flight.
const CONCURRENCY: usize = 200;

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_rooms_of_ten_register_and_forward() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_mesh-signal"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env("MESH_SIGNAL_RATE_BURST", "1000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("mesh-signal starts");
    /// Kills the server if the test fails before stopping it.
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
    let _guard = Guard(server.id());
    let mut lines = BufReader::new(server.stdout.take().expect("stdout"));
    let mut first = String::new();
    lines.read_line(&mut first).expect("prints its address");
    let url = first.trim().strip_prefix("mesh-signal listening on ").expect("address line").to_string();
    // Keep draining the server's output so a full pipe can never block it; show its warnings.
    std::thread::spawn(move || {
        for line in (&mut lines).lines().map_while(Result::ok).take(20) {
            eprintln!("server: {line}");
        }
        std::io::copy(&mut lines, &mut std::io::sink()).ok();
    });

    let run = async {
        // Register everyone.
        let started = Instant::now();
        let ids: Vec<(usize, usize)> = (0..rooms()).flat_map(|r| (0..PEERS).map(move |p| (r, p))).collect();
        let conns: Vec<_> = futures::stream::iter(ids)
            .map(|(r, p)| {
                let url = url.clone();
                async move {
                    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await.expect("connect");
                    let reg = json!({"type": "register", "room": format!("room-{r}"), "peer": format!("p{p}"), "role": "worker"});
                    ws.send(Message::Text(reg.to_string().into())).await.expect("register");
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) if t.contains("\"registered\"") => break,
                            Some(Ok(Message::Text(t))) if t.contains("\"error\"") => panic!("{t}"),
                            Some(Ok(_)) => {}
                            other => panic!("connection ended during registration: {other:?}"),
                        }
                    }
                    (p, ws)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let reg_secs = started.elapsed().as_secs_f64();
        eprintln!("registered in {reg_secs:.2} s");
        assert_eq!(conns.len(), rooms() * PEERS);

        // Each peer sends one signal to the next peer of its room and reads the one sent to it.
        let delivered: Vec<_> = futures::stream::iter(conns)
            .map(|(p, ws)| async move {
                let (mut sink, mut stream) = ws.split();
                let to = format!("p{}", (p + 1) % PEERS);
                let signal = json!({"session": {"offerer": format!("p{p}"), "seq": 1}, "body": {"kind": "candidate", "candidate": micros_now().to_string()}});
                sink.send(Message::Text(json!({"type": "signal", "to": to, "signal": signal}).to_string().into())).await.expect("send");
                loop {
                    match stream.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).expect("json");
                            if v["type"] == "error" { panic!("server error: {t}"); }
                            if v["type"] == "signal" {
                                let sent: u64 = v["signal"]["body"]["candidate"].as_str().and_then(|s| s.parse().ok()).expect("stamp");
                                // Keep the connection: closing with unread frames resets it,
                                // and a reset discards frames the server has not read yet.
                                return (micros_now().saturating_sub(sent), sink, stream);
                            }
                        }
                        Some(Ok(_)) => {}
                        other => panic!("connection ended before its signal: {other:?}"),
                    }
                }
            })
            .buffer_unordered(rooms() * PEERS)
            .collect()
            .await;
        let latencies: Vec<u64> = delivered.iter().map(|(l, _, _)| *l).collect();
        drop(delivered);
        (reg_secs, latencies)
    };
    let (reg_secs, mut latencies) =
        tokio::time::timeout(Duration::from_secs(300), run).await.expect("load finished in time");
    assert_eq!(latencies.len(), rooms() * PEERS, "every signal delivered");
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?").to_string();
    println!(
        "load: {} registrations in {reg_secs:.2} s ({:.0}/s); forwarding latency p50 {} us, p99 {} us; server {peak}",
        rooms() * PEERS,
        (rooms() * PEERS) as f64 / reg_secs,
        p(0.50),
        p(0.99),
    );
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let status = server.wait().expect("server exits");
    assert!(status.success(), "mesh-signal stops cleanly on SIGTERM: {status}");
}
