//! mesh-client: joins a room as a client (not a worker: it links to the admin only), asks the
//! admin for the room registry and prints it, then leaves. Configuration as for `mesh-worker`
//! (`--config FILE`, `MESH_*` variables); the role is forced to `client`.

use clap::Parser;
use mesh_core::{MeshConfig, MeshNode, Registry, Role};
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
    /// Print the registry as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

async fn run(args: Args) -> Result<(), String> {
    link_plugins();
    let mut config = MeshConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    config.role = Role::Client;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let node = MeshNode::from_config(&config, &Registry::from_inventory()).await.map_err(|e| e.to_string())?;
    let result = async {
        node.wait_for(timeout, |s| s.health.links_up == 1 && s.health.admin.is_some())
            .await
            .map_err(|e| format!("no link to the admin: {e}"))?;
        node.query_registry(timeout).await.map_err(|e| e.to_string())
    }
    .await;
    node.leave().await;
    let workers = result?;
    if args.json {
        println!("{}", serde_json::to_string(&workers).map_err(|e| e.to_string())?);
    } else {
        println!("{:<20} {:<8} {:>9}  metadata", "worker", "status", "priority");
        for w in &workers {
            println!(
                "{:<20} {:<8} {:>9}  {}",
                w.peer.as_str(),
                format!("{:?}", w.record.status).to_lowercase(),
                w.record.priority,
                serde_json::to_string(&w.record.metadata).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit("mesh-client", run(Args::parse()).await)
}
