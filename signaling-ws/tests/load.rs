//! Load: the real `mesh-signal` process, rooms × 10 peers on loopback, each peer forwarding one
//! signal to a neighbour in its room. Default 1,000 rooms (10,000 connections; the server runs
//! as its own process so the fd limit is not shared); `LOAD_ROOMS` overrides. Bounded in count
//! and time (one overall timeout). Asserts that everything was registered and delivered and that
//! the server stops cleanly; the figures themselves are `mesh-bench signaling`'s job.

use signaling_ws::loadgen::{self, LoadConfig, ServerProcess};
use std::time::Duration;

fn rooms() -> usize {
    std::env::var("LOAD_ROOMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_rooms_of_ten_register_and_forward() {
    let server = ServerProcess::spawn(env!("CARGO_BIN_EXE_mesh-signal").as_ref()).expect("mesh-signal starts");
    let config =
        LoadConfig { rooms: rooms(), peers: 10, concurrency: 200, idle_samples: 50, room_prefix: "room-".into() };
    let report =
        tokio::time::timeout(Duration::from_secs(300), loadgen::run(std::slice::from_ref(&server.url), &config))
            .await
            .expect("load finished in time")
            .expect("load ran without errors");
    assert_eq!(report.registered, config.rooms * config.peers, "every peer registered");
    assert_eq!(report.burst_us.len(), report.registered, "every burst signal delivered");
    assert_eq!(report.idle_us.len(), config.idle_samples, "every idle signal delivered");
    println!(
        "load: {} registrations ({:.0}/s); idle p50 {} us; burst p50 {} us p99 {} us; server peak {:?} KiB",
        report.registered,
        report.registrations_per_sec(),
        loadgen::quantile(&report.idle_us, 0.5),
        loadgen::quantile(&report.burst_us, 0.5),
        loadgen::quantile(&report.burst_us, 0.99),
        server.peak_rss_kib(),
    );
    assert!(server.stop(), "mesh-signal stops cleanly on SIGTERM");
}
