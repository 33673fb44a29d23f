//! mesh-worker: one worker process. Configuration: defaults, then `--config FILE` (TOML), then
//! `MESH_*` environment variables (`MESH_ROOM`, `MESH_PEER_ID`, `MESH_WS__URL`, ...). Prints its
//! snapshot (health record, link counters, signals per path) as one JSON line every
//! `--report-ms` and on every change of it; on SIGINT/SIGTERM it leaves the room (telling its
//! peers, so they re-elect at once) and exits 0. With `[jobs.NAME]` sections it runs those job
//! kinds for `mesh-job` clients (and nothing else); its jobs die with it.

use clap::Parser;
use mesh_core::{MeshConfig, MeshNode, Registry};
use mesh_examples::cli::{exit, init_logging};
use mesh_examples::stack::link_plugins;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(about = "Run one worker of a mesh room")]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Milliseconds between snapshot lines.
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Print this node's public key (from `key_file`, created if missing) and exit: the line to
    /// put in the room's allowlists.
    #[arg(long)]
    print_key: bool,
    /// Runtime threads. 1 (the default) runs every link on one thread: the least CPU and the
    /// fewest wake-ups, idle or moving data over a few links; more spread many busy links'
    /// encryption over cores.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn print_snapshot(node: &MeshNode) {
    match serde_json::to_string(&node.snapshot()) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("mesh-worker: snapshot not printable: {err}"),
    }
}

async fn run(args: Args) -> Result<(), String> {
    link_plugins();
    let mut config = MeshConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if args.print_key {
        let path = config
            .key_file
            .as_ref()
            .ok_or("--print-key needs key_file (MESH_KEY_FILE): without one every start has a fresh key")?;
        println!("{}", mesh_core::identity::NodeKey::load_or_create(path)?.public_hex());
        return Ok(());
    }
    let jobs = mesh_job::WorkerJobs::take_from(&mut config)?;
    let node = MeshNode::from_config(&config, &Registry::from_inventory()).await.map_err(|e| e.to_string())?;
    let node = std::sync::Arc::new(node);
    let server = match jobs.kinds.0.is_empty() {
        true => None,
        false => Some(mesh_job::serve(node.clone(), jobs).await?),
    };
    tracing::info!(peer = %node.peer_id(), room = %node.room(), "worker started");
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    // Printed on every change of the snapshot (links, admin, health), read after the change is
    // published, and every `--report-ms`.
    let mut watch = node.watch();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.report_ms.max(10)));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = ticker.tick() => print_snapshot(&node),
            changed = watch.changed() => match changed {
                Ok(()) => print_snapshot(&node),
                Err(_) => return Err("the node stopped".into()),
            },
        }
    }
    tracing::info!("leaving the room");
    if let Some(server) = server {
        server.shutdown().await;
    }
    match std::sync::Arc::try_unwrap(node) {
        Ok(node) => node.leave().await,
        Err(_) => tracing::warn!("the node is still in use; exiting without a goodbye"),
    }
    Ok(())
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    let mut builder = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let result = match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(format!("no async runtime: {e}")),
    };
    exit("mesh-worker", result)
}
