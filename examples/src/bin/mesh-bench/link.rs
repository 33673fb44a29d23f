//! `mesh-bench link`: one WebRTC link between two transports in this process, on loopback.

use crate::{quantile, Samples};
use bytes::Bytes;
use mesh_core::{LinkEvent, LinkHandle};
use std::time::{Duration, Instant};
use transport_webrtc::{testing, WebRtcConfig, WebRtcTransport};

const WAIT: Duration = Duration::from_secs(30);

/// Options of `mesh-bench link`.
#[derive(clap::Args, Debug)]
pub(crate) struct LinkArgs {
    /// Trials of each case.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Ping-pongs per latency trial.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// MiB sent per throughput trial.
    #[arg(long, default_value_t = 64)]
    mib: usize,
}

async fn next(handle: &mut LinkHandle) -> Result<LinkEvent, String> {
    tokio::time::timeout(WAIT, handle.events.recv()).await.map_err(|_| "timed out")?.ok_or_else(|| "link ended".into())
}

async fn open(a: &WebRtcTransport, b: &WebRtcTransport) -> Result<(LinkHandle, LinkHandle, Duration), String> {
    let t = Instant::now();
    let (mut x, mut y) = testing::pair(a, b).await.map_err(|e| e.to_string())?;
    for h in [&mut x, &mut y] {
        match next(h).await? {
            LinkEvent::Open => {}
            other => return Err(format!("expected Open, got {other:?}")),
        }
    }
    Ok((x, y, t.elapsed()))
}

async fn message(handle: &mut LinkHandle) -> Result<Bytes, String> {
    match next(handle).await? {
        LinkEvent::Message(m) => Ok(m),
        other => Err(format!("expected a message, got {other:?}")),
    }
}

/// Sends `mib` MiB as 64 KiB messages from `x` to `y`; the time until the last arrived.
async fn raw_throughput(x: &LinkHandle, y: &mut LinkHandle, mib: usize) -> Result<Duration, String> {
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    let count = mib * 16;
    let link = x.link.clone();
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            if link.send(chunk.clone()).await.is_err() {
                return;
            }
        }
    });
    for _ in 0..count {
        message(y).await?;
    }
    let _ = sender.await;
    Ok(t.elapsed())
}

/// The raw link's throughput in MiB/s: a fresh loopback link, `mib` MiB of 64 KiB messages.
pub(crate) async fn raw_link_mib_s(mib: usize) -> Result<f64, String> {
    let transport = || WebRtcTransport::new(WebRtcConfig::loopback(), 1 << 20);
    let (a, b) = (transport(), transport());
    let (x, mut y, _) = open(&a, &b).await?;
    let took = raw_throughput(&x, &mut y, mib).await?;
    x.link.close().await;
    Ok(mib as f64 / took.as_secs_f64())
}

/// Runs the three link cases.
pub(crate) async fn run(args: LinkArgs) -> Result<(), String> {
    let transport = || WebRtcTransport::new(WebRtcConfig::loopback(), 1 << 20);
    let (a, b) = (transport(), transport());
    let (mut opens, mut p50s, mut p99s, mut mbps) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let _ = open(&a, &b).await?; // warm-up
    for _ in 0..args.trials {
        let (mut x, mut y, took) = open(&a, &b).await?;
        opens.push(took.as_secs_f64() * 1000.0);

        let mut rtts = Vec::with_capacity(args.pings);
        let ping = Bytes::from(vec![7u8; 1024]);
        for _ in 0..args.pings {
            let t = Instant::now();
            x.link.send(ping.clone()).await.map_err(|e| e.to_string())?;
            let got = message(&mut y).await?;
            y.link.send(got).await.map_err(|e| e.to_string())?;
            message(&mut x).await?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
        }
        p50s.push(quantile(&mut rtts, 0.5));
        p99s.push(quantile(&mut rtts, 0.99));

        let took = raw_throughput(&x, &mut y, args.mib).await?;
        mbps.push(args.mib as f64 / took.as_secs_f64());
        x.link.close().await;
    }
    println!(
        "link open (ms, dial to both sides open)      min/median/max {}  trials {}",
        opens.summary(1),
        args.trials
    );
    println!("link latency p50 (us, 1 KiB, RTT/2)          min/median/max {}  pings {}", p50s.summary(0), args.pings);
    println!("link latency p99 (us, 1 KiB, RTT/2)          min/median/max {}", p99s.summary(0));
    println!("link throughput (MiB/s, 64 KiB messages)     min/median/max {}  {} MiB each", mbps.summary(1), args.mib);
    Ok(())
}
