//! mesh-client: joins a room as a client (not a worker: it links to the admin only), asks the
//! admin for the workers matching a filter and prints them, then leaves. Configuration as for
//! `mesh-worker` (`--config FILE`, `MESH_*` variables); the role is forced to `client`.

use clap::Parser;
use mesh_core::{MeshConfig, MeshNode, Registry, RegistryFilter, Role, WorkerStatus};
use mesh_examples::cli::{exit, init_logging};
use mesh_examples::stack::link_plugins;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Print the registry of a mesh room")]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Seconds to wait for the link to the admin and for its answer.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Only workers with this status (`any` for every status).
    #[arg(long, default_value = "any", value_parser = ["any", "available", "busy", "reserved"])]
    status: String,
    /// Only workers whose priority (the `priority_key` value) is at least this.
    #[arg(long)]
    min_priority: Option<u64>,
    /// Only workers whose metadata `tags` list holds this tag (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// At most this many workers (highest priority first).
    #[arg(long)]
    max: Option<usize>,
    /// Print the answer as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn filter(&self) -> RegistryFilter {
        let status = match self.status.as_str() {
            "available" => Some(WorkerStatus::Available),
            "busy" => Some(WorkerStatus::Busy),
            "reserved" => Some(WorkerStatus::Reserved),
            _ => None,
        };
        RegistryFilter { status, min_priority: self.min_priority, tags: self.tags.clone(), max: self.max }
    }
}

async fn run(args: Args) -> Result<(), String> {
    link_plugins();
    let mut config = MeshConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    config.role = Role::Client;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let node = MeshNode::from_config(&config, &Registry::from_inventory()).await.map_err(|e| e.to_string())?;
    // The query itself waits for the link to the admin, within the timeout.
    let result = node.query_registry(args.filter(), timeout).await.map_err(|e| e.to_string());
    node.leave().await;
    let page = result?;
    if args.json {
        println!("{}", serde_json::to_string(&page).map_err(|e| e.to_string())?);
    } else {
        println!("{:<20} {:<8} {:>9}  metadata", "worker", "status", "priority");
        for w in &page.workers {
            println!(
                "{:<20} {:<8} {:>9}  {}",
                w.peer.as_str(),
                format!("{:?}", w.record.status).to_lowercase(),
                w.record.priority,
                serde_json::to_string(&w.record.metadata).unwrap_or_default()
            );
        }
        println!(
            "{} shown, {} matched, {} workers in the room",
            page.workers.len(),
            page.matched_count,
            page.total_count
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit("mesh-client", run(Args::parse()).await)
}
