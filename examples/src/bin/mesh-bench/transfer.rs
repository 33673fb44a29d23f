//! `mesh-bench transfer`: a verified transfer between two workers of a mesh in this process,
//! beside the raw WebRTC link's throughput measured in the same run.

use crate::link::raw_link_mib_s;
use crate::mesh::{leave_all, start_all, wait_full, StackArgs};
use crate::{quantile, Samples};
use bytes::Bytes;
use mesh_core::{Incoming, MeshNode, RegistryFilter};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The process's peak resident memory so far, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    peak_rss_of("self")
}

/// Peak resident memory of process `pid` (`self` for this one) so far, in MiB (`VmHWM`).
pub(crate) fn peak_rss_of(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(f64::NAN) / 1024.0
}

/// `mib` MiB over one stream from `a` to `b`: MiB/s until the reader had it all.
async fn stream_mib_s(a: &MeshNode, b: &MeshNode, mib: usize) -> Result<f64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut inbox = b.listen("bench/stream").map_err(|e| e.to_string())?;
    let mut out = a.open_stream(b.peer_id(), "bench/stream").map_err(|e| e.to_string())?;
    let t = Instant::now();
    let block = vec![7u8; 1 << 20];
    let write = async {
        for _ in 0..mib {
            out.write_all(&block).await.map_err(|e| e.to_string())?;
        }
        out.shutdown().await.map_err(|e| e.to_string())
    };
    let read = async {
        let Some(Incoming::Stream(mut s)) = inbox.recv().await else { return Err("no stream".to_string()) };
        let (mut buf, mut total) = (vec![0u8; 1 << 20], 0usize);
        loop {
            match s.read(&mut buf).await.map_err(|e| e.to_string())? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    };
    let (written, read) = tokio::join!(write, read);
    written?;
    if read? != mib << 20 {
        return Err("the stream came short".into());
    }
    Ok(mib as f64 / t.elapsed().as_secs_f64())
}

/// `count` 1 KiB requests from `a` to `b` all at once: the time until every answer came.
async fn concurrent_requests(a: &MeshNode, b: &MeshNode, count: usize) -> Result<Duration, String> {
    let mut inbox = b.listen("bench/many").map_err(|e| e.to_string())?;
    let echo = tokio::spawn(async move {
        while let Some(Incoming::Request(req)) = inbox.recv().await {
            let body = req.body.clone();
            req.respond(body).await;
        }
    });
    let body = Bytes::from(vec![0u8; 1024]);
    let t = Instant::now();
    let asks = (0..count).map(|_| a.request(b.peer_id(), "bench/many", body.clone(), WAIT));
    let results = futures::future::join_all(asks).await;
    let took = t.elapsed();
    echo.abort();
    match results.iter().find(|r| r.is_err()) {
        Some(Err(e)) => Err(format!("a request failed: {e}")),
        _ => Ok(took),
    }
}

/// Options of `mesh-bench transfer`.
#[derive(clap::Args, Debug)]
pub(crate) struct TransferArgs {
    /// Trials.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// MiB per transfer.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Run between two lab hosts over this WAN (`rtt=80ms,loss=1%`; needs root): one mesh stream
    /// beside plain TCP in the same run, and a fetch whose receiver is SIGKILLed half way.
    #[arg(long)]
    lab: Option<mesh_examples::labroom::WanSpec>,
    #[command(flatten)]
    stack: StackArgs,
}

/// Per trial: the raw link, then `fetch` of a file of the same size between two workers.
pub(crate) async fn run(args: TransferArgs) -> Result<(), String> {
    if let Some(wan) = args.lab {
        return tokio::task::block_in_place(|| crate::labxfer::run(args.mib, args.trials, wan));
    }
    let dir = std::env::temp_dir().join(format!("mesh-bench-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("blob");
    mesh_examples::blob::write_pattern(&src, args.mib).map_err(|e| e.to_string())?;
    let rss_before = peak_rss_mib();
    let (mut raw, mut fetched, mut share) = (Samples::default(), Samples::default(), Samples::default());
    let (mut control_p50, mut control_p99, mut many) = (Samples::default(), Samples::default(), Samples::default());
    let (mut stream, mut stream_share) = (Samples::default(), Samples::default());
    let result = async {
        for _ in 0..args.trials {
            let baseline = raw_link_mib_s(args.mib).await?;
            let stack = args.stack.stack().await?;
            let nodes = start_all(&stack, 2).await?;
            wait_full(&nodes).await?;
            let id = nodes[0].provide(&src).await.map_err(|e| e.to_string())?;
            let dest = dir.join("copy");
            let _ = std::fs::remove_file(&dest);
            many.push(concurrent_requests(&nodes[1], &nodes[0], 10_000).await?.as_secs_f64() * 1000.0);
            let one_stream = stream_mib_s(&nodes[0], &nodes[1], args.mib).await?;
            stream.push(one_stream);
            stream_share.push(100.0 * one_stream / baseline);
            let t = Instant::now();
            let done = std::sync::atomic::AtomicBool::new(false);
            let fetch = async {
                let report = nodes[1].fetch(nodes[0].peer_id(), &id, &dest, None).await;
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                report
            };
            // Mesh control on the same link meanwhile: registry queries to the admin (w0).
            let probe = async {
                let mut rtts = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let q = Instant::now();
                    if nodes[1].query_registry(RegistryFilter::default(), WAIT).await.is_err() {
                        break;
                    }
                    rtts.push(q.elapsed().as_secs_f64() * 1000.0);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                rtts
            };
            let (report, mut rtts) = tokio::join!(fetch, probe);
            let report = report.map_err(|e| e.to_string())?;
            let mib_s = args.mib as f64 / t.elapsed().as_secs_f64();
            if report.fetched != (args.mib * 1024 * 1024) as u64 {
                return Err(format!("fetched {} bytes", report.fetched));
            }
            if !rtts.is_empty() {
                control_p50.push(quantile(&mut rtts, 0.5));
                control_p99.push(quantile(&mut rtts, 0.99));
            }
            raw.push(baseline);
            fetched.push(mib_s);
            share.push(100.0 * mib_s / baseline);
            leave_all(nodes).await;
            stack.shutdown().await;
        }
        Ok::<_, String>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let label = format!("transfer w0 -> w1, {} MiB ({})", args.mib, args.stack.label());
    println!("raw link, 64 KiB messages (MiB/s)        min/median/max {}  trials {}", raw.summary(1), args.trials);
    println!("{label}: fetch, verified (MiB/s)  min/median/max {}", fetched.summary(1));
    println!("{label}: min/median/max {} % of the raw link in the same run", share.summary(0));
    println!("one stream w0 -> w1, {} MiB (MiB/s)  min/median/max {}", args.mib, stream.summary(1));
    println!(
        "one stream w0 -> w1, {} MiB: min/median/max {} % of the raw link in the same run",
        args.mib,
        stream_share.summary(0)
    );
    println!("{label}: registry query round trip during it, p50 (ms)  min/median/max {}", control_p50.summary(1));
    println!("{label}: registry query round trip during it, p99 (ms)  min/median/max {}", control_p99.summary(1));
    println!("10,000 concurrent 1 KiB requests w1 -> w0, all answered (ms)  min/median/max {}", many.summary(0));
    println!(
        "peak RSS of this process (both workers and the bench, {} MiB file): {:.0} MiB ({:.0} MiB before the first trial)",
        args.mib,
        peak_rss_mib(),
        rss_before
    );
    Ok(())
}
