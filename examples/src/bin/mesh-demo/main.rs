//! mesh-demo: N workers in one process, by default on the real stack (WebRTC links, signals by
//! relay then WebSocket through an embedded `mesh-signal` server on a free loopback port), walking
//! a scenario. Exit status 1 if the mesh did not form or a check of the scenario failed.

mod scenario;
mod transfer;

use clap::{Parser, ValueEnum};
use mesh_core::MeshConfig;
use mesh_examples::cli::init_logging;
use mesh_examples::stack::Stack;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

/// What the demo walks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Form, a verified file transfer, the admin leaves, re-election, a newcomer joins.
    Tour,
    /// Form the full mesh and stop.
    Form,
    /// Form, then the admin leaves gracefully.
    AdminLeaves,
    /// Form, then the admin crashes (no goodbye).
    AdminCrash,
    /// Form, then one more worker joins.
    Join,
    /// Form, then the majority (admin included) goes silent: the rest report a partition.
    Partition,
}

/// The demo's command line.
#[derive(Parser, Debug)]
#[command(about = "Form a full worker mesh in one process and walk a scenario")]
pub struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 5)]
    pub workers: usize,
    /// Transport plugin.
    #[arg(long, default_value = "webrtc")]
    pub transport: String,
    /// Signaler plugins, in fallback order, comma separated.
    #[arg(long, default_value = "relay,ws", value_delimiter = ',')]
    pub signaling: Vec<String>,
    /// Scenario to walk.
    #[arg(long, value_enum, default_value_t = Scenario::Tour)]
    pub scenario: Scenario,
    /// One JSON object per line, ending with a summary line.
    #[arg(long)]
    pub json: bool,
    /// Optional TOML configuration (flags override it).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Where the demo reports: human lines or JSON lines, stamped with the time since start.
pub struct Out {
    json: bool,
    start: Instant,
}

impl Out {
    /// Reports one step.
    pub fn step(&self, event: &str, text: String, fields: Value) {
        let ms = self.start.elapsed().as_millis();
        if self.json {
            let mut obj = json!({ "t_ms": ms, "event": event });
            if let (Some(o), Some(f)) = (obj.as_object_mut(), fields.as_object()) {
                o.extend(f.clone());
            }
            println!("{obj}");
        } else {
            println!("[{ms:>6} ms] {text}");
        }
    }

    /// Progress for humans only (JSON consumers get the steps).
    pub fn progress(&self, text: String) {
        if !self.json {
            println!("[{:>6} ms]   {text}", self.start.elapsed().as_millis());
        }
    }
}

async fn run(args: &Args, out: &Out, summary: &mut BTreeMap<&'static str, Value>) -> Result<(), String> {
    let mut base = MeshConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    base.room = "demo".into();
    base.transport = args.transport.clone();
    base.signaling = args.signaling.clone();
    let stack = Stack::new(base).await?;
    summary.insert("transport", json!(stack.base.transport));
    summary.insert("signaling", json!(stack.base.signaling));
    summary.insert("scenario", json!(format!("{:?}", args.scenario).to_lowercase()));
    if let Some(url) = stack.server_url() {
        out.step("server", format!("embedded mesh-signal on {url}"), json!({ "url": url }));
    }
    let mut demo = scenario::Demo { stack: &stack, out, summary, nodes: Vec::new(), next_id: 0 };
    let result = demo.walk(args.scenario, args.workers.max(2)).await;
    demo.leave_all().await;
    stack.shutdown().await;
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let out = Out { json: args.json, start: Instant::now() };
    let mut summary = BTreeMap::new();
    let result = run(&args, &out, &mut summary).await;
    if let Err(e) = &result {
        summary.insert("error", json!(e));
    }
    summary.insert("ok", json!(result.is_ok()));
    if args.json {
        println!("{}", json!({ "summary": summary }));
    } else {
        println!("\nsummary");
        for (k, v) in &summary {
            println!("  {k:<28} {v}");
        }
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
