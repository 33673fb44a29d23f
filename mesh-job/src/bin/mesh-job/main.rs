//! mesh-job: run jobs on the workers of a mesh room. `run` picks the best free worker for a kind,
//! uploads the inputs, streams the log, downloads the outputs and exits with the job's status;
//! `batch` runs a file of jobs across every matching worker; `attach`, `cancel` and `list` act on
//! jobs already handed out. Configuration as for `mesh-worker` (`--config FILE`, `MESH_*`
//! variables); the role is forced to `client`.

mod batch;
mod show;
mod single;

use clap::{Parser, Subcommand};
use mesh_core::{MeshConfig, MeshNode, Registry, RegistryFilter, Role, WorkerStatus};
use mesh_job::client::JobSpec;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Run jobs on the workers of a mesh room")]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where job tickets (id, worker, key, log position) are kept for attach and cancel.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

/// Which workers to consider.
#[derive(clap::Args, Debug, Clone)]
struct Pick {
    /// Only workers with this status (any status with a free slot when absent).
    #[arg(long, value_parser = ["available", "busy", "reserved"])]
    status: Option<String>,
    /// Only workers whose priority is at least this.
    #[arg(long)]
    min_priority: Option<u64>,
    /// Only workers whose metadata `tags` hold this tag (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl Pick {
    fn filter(&self) -> RegistryFilter {
        let status = self.status.as_deref().map(|s| match s {
            "busy" => WorkerStatus::Busy,
            "reserved" => WorkerStatus::Reserved,
            _ => WorkerStatus::Available,
        });
        RegistryFilter { status, min_priority: self.min_priority, tags: self.tags.clone(), max: None }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one job on the best free worker and follow it to its end.
    Run {
        /// The job kind (as the workers declare it).
        kind: String,
        /// An input file: NAME=PATH (repeat).
        #[arg(long = "input", value_parser = pair)]
        inputs: Vec<(String, String)>,
        /// A parameter: NAME=VALUE (repeat).
        #[arg(long = "param", value_parser = pair)]
        params: Vec<(String, String)>,
        /// Where the outputs go.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Do not run the job again elsewhere when its worker is lost.
        #[arg(long)]
        no_retry: bool,
        #[command(flatten)]
        pick: Pick,
    },
    /// Run a file of jobs (JSON lines: {"kind", "params", "inputs"}) across the matching workers.
    Batch {
        /// The file of jobs.
        file: PathBuf,
        /// Where each job's outputs and log go (one directory per job).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[command(flatten)]
        pick: Pick,
    },
    /// Follow a job again (after this client stopped or lost its link): the rest of its log, then
    /// its outputs.
    Attach {
        /// The job's id.
        job: String,
        /// Where the outputs go.
        #[arg(long, default_value = "out")]
        out: PathBuf,
    },
    /// Stop a job: SIGINT, then SIGTERM, then SIGKILL (`--now`: SIGKILL at once).
    Cancel {
        /// The job's id.
        job: String,
        /// Kill at once.
        #[arg(long)]
        now: bool,
    },
    /// The room's jobs: kind, worker, owner, state.
    List,
}

fn pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}`: expected NAME=VALUE"))
}

/// The state directory: `--state-dir`, else `~/.mesh-job`.
fn state_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".mesh-job")
    })
}

async fn start(config: Option<&std::path::Path>) -> Result<MeshNode, String> {
    transport_webrtc::link();
    signaling_ws::link();
    signaling_relay::link();
    let mut config = MeshConfig::load(config).map_err(|e| e.to_string())?;
    config.role = Role::Client;
    MeshNode::from_config(&config, &Registry::from_inventory()).await.map_err(|e| e.to_string())
}

async fn run(args: Args) -> Result<u8, String> {
    let state = state_dir(args.state_dir);
    let node = start(args.config.as_deref()).await?;
    let result = match args.command {
        Cmd::Run { kind, inputs, params, out, no_retry, pick } => {
            let spec = JobSpec {
                kind,
                params: params.into_iter().collect(),
                inputs: inputs.into_iter().map(|(k, v)| (k, PathBuf::from(v))).collect(),
            };
            single::run(&node, spec, &pick.filter(), &out, &state, !no_retry).await
        }
        Cmd::Batch { file, out, pick } => batch::run(&node, &file, &pick.filter(), &out).await,
        Cmd::Attach { job, out } => single::attach(&node, &job, &out, &state).await,
        Cmd::Cancel { job, now } => single::cancel(&node, &job, now, &state).await,
        Cmd::List => show::list(&node).await,
    };
    node.leave().await;
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| format!("warn,{}", transport_webrtc::QUIET_LOG_DIRECTIVES));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    match run(Args::parse()).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("mesh-job: {err}");
            ExitCode::from(1)
        }
    }
}
