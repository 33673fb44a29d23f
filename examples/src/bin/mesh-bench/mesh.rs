//! `mesh-bench formation | messages`: whole meshes in this process on a chosen stack
//! (by default the real one: WebRTC links, relay then WebSocket through an embedded server).

use crate::{quantile, Samples};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mesh_core::{Incoming, MeshConfig, MeshNode};
use mesh_examples::stack::Stack;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The stack options every mesh bench takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StackArgs {
    /// Transport plugin.
    #[arg(long, default_value = "webrtc")]
    transport: String,
    /// Signalers, in fallback order.
    #[arg(long, default_value = "relay,ws", value_delimiter = ',')]
    signaling: Vec<String>,
}

impl StackArgs {
    pub(crate) async fn stack(&self) -> Result<Stack, String> {
        let base = MeshConfig {
            room: "bench".into(),
            transport: self.transport.clone(),
            signaling: self.signaling.clone(),
            ..MeshConfig::default()
        };
        Stack::new(base).await
    }

    pub(crate) fn label(&self) -> String {
        format!("{} + {}", self.transport, self.signaling.join(","))
    }
}

pub(crate) async fn start_all(stack: &Stack, n: usize) -> Result<Vec<MeshNode>, String> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(stack.start(&format!("w{i}")).await?);
    }
    Ok(nodes)
}

pub(crate) async fn wait_full(nodes: &[MeshNode]) -> Result<(), String> {
    let links = nodes.len() - 1;
    for node in nodes {
        node.wait_links(links, WAIT).await.map_err(|e| format!("{}: {e}", node.peer_id()))?;
    }
    Ok(())
}

pub(crate) async fn leave_all(nodes: Vec<MeshNode>) {
    for node in nodes {
        node.leave().await;
    }
}

/// Options of `mesh-bench formation`.
#[derive(clap::Args, Debug)]
pub(crate) struct FormationArgs {
    /// Mesh sizes to form.
    #[arg(long, default_value = "2,5,10", value_delimiter = ',')]
    workers: Vec<usize>,
    /// Trials per size.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    #[command(flatten)]
    stack: StackArgs,
    /// Run worker processes in the network lab with this WAN (`rtt=80ms,jitter=10ms,loss=1%`;
    /// needs root) instead of in this process.
    #[arg(long)]
    lab: Option<mesh_examples::labroom::WanSpec>,
    /// With `--lab`: print where the time went (each join and link attempt, step by step, from
    /// the workers' timeline marks) and the phases over every trial.
    #[arg(long, requires = "lab")]
    breakdown: bool,
}

/// Time from starting the first worker to every worker holding all its links.
pub(crate) async fn formation(args: FormationArgs) -> Result<(), String> {
    if let Some(wan) = args.lab {
        return tokio::task::block_in_place(|| {
            crate::procs::formation_lab(&args.workers, args.trials, wan, args.breakdown)
        });
    }
    for &n in &args.workers {
        let (mut ms, mut failures) = (Samples::default(), 0);
        for _ in 0..args.trials {
            let stack = args.stack.stack().await?;
            let t = Instant::now();
            let nodes = start_all(&stack, n.max(2)).await?;
            match wait_full(&nodes).await {
                Ok(()) => ms.push(t.elapsed().as_secs_f64() * 1000.0),
                Err(e) => {
                    failures += 1;
                    eprintln!("formation of {n} failed: {e}");
                }
            }
            leave_all(nodes).await;
            stack.shutdown().await;
        }
        println!(
            "formation {:>2} workers ({}) ms to full mesh  min/median/max {}  trials {}  failures {failures}",
            n,
            args.stack.label(),
            ms.summary(1),
            args.trials
        );
    }
    Ok(())
}

/// Options of `mesh-bench messages`.
#[derive(clap::Args, Debug)]
pub(crate) struct MessagesArgs {
    /// Trials.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Round trips per latency trial.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// Messages per throughput trial.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Payload bytes per throughput message.
    #[arg(long, default_value_t = 16 * 1024)]
    size: usize,
    #[command(flatten)]
    stack: StackArgs,
}

/// Two workers: application-message latency (ping-pong) and one-way throughput over the mesh.
pub(crate) async fn messages(args: MessagesArgs) -> Result<(), String> {
    let (mut p50, mut p99, mut rate, mut mbps) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for _ in 0..args.trials {
        let stack = args.stack.stack().await?;
        let mut nodes = start_all(&stack, 2).await?;
        wait_full(&nodes).await?;
        let b = Arc::new(nodes.pop().ok_or("no w1")?);
        let a = nodes.pop().ok_or("no w0")?;
        let b_id = b.peer_id().clone();
        // w1 answers every request with its own bytes.
        let mut echo_inbox = b.listen("bench/echo").map_err(|e| e.to_string())?;
        let echo = tokio::spawn(async move {
            while let Some(incoming) = echo_inbox.recv().await {
                if let Incoming::Request(req) = incoming {
                    let body = req.body.clone();
                    req.respond(body).await;
                }
            }
        });
        let mut rtts = Vec::with_capacity(args.pings);
        let ping = Bytes::from(vec![0u8; 1024]);
        for _ in 0..args.pings {
            let t = Instant::now();
            a.request(&b_id, "bench/echo", ping.clone(), WAIT).await.map_err(|e| e.to_string())?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        p50.push(quantile(&mut rtts, 0.5));
        p99.push(quantile(&mut rtts, 0.99));
        echo.abort();

        let mut inbox = b.listen("bench/data").map_err(|e| e.to_string())?;
        let payload = Bytes::from(vec![b'x'; args.size]);
        let t = Instant::now();
        let count = args.count;
        // Up to 32 messages in flight, each acknowledged once it is in w1's inbox.
        let sender = futures::stream::iter(0..count)
            .map(|_| a.send(&b_id, "bench/data", payload.clone()))
            .buffer_unordered(32)
            .try_for_each(|()| async { Ok(()) });
        let sender = async { sender.await.map_err(|e| e.to_string()) };
        let receiver = async {
            for _ in 0..count {
                tokio::time::timeout(WAIT, inbox.recv())
                    .await
                    .map_err(|_| "throughput timed out")?
                    .ok_or("node stopped")?;
            }
            Ok::<_, String>(())
        };
        let (sent, received) = tokio::join!(sender, receiver);
        sent?;
        received?;
        let secs = t.elapsed().as_secs_f64();
        rate.push(count as f64 / secs);
        mbps.push((count * args.size) as f64 / secs / (1024.0 * 1024.0));
        a.leave().await;
        if let Ok(b) = Arc::try_unwrap(b) {
            b.leave().await;
        }
        stack.shutdown().await;
    }
    let label = format!("messages w0 -> w1 ({})", args.stack.label());
    println!("{label}: 1 KiB request round trip p50 (us)  min/median/max {}  requests {}", p50.summary(0), args.pings);
    println!("{label}: 1 KiB request round trip p99 (us)  min/median/max {}", p99.summary(0));
    println!("{label}: throughput (msg/s, {} B)  min/median/max {}", args.size, rate.summary(0));
    println!("{label}: throughput (MiB/s)         min/median/max {}  trials {}", mbps.summary(1), args.trials);
    Ok(())
}
