//! mesh-demo: N workers in one process on the plugins named by flags or configuration, walking a
//! tour: form the mesh, the admin leaves, re-election, a new worker joins. Exit status 1 if the
//! mesh did not form or a check of the tour failed.

use clap::Parser;
use mesh_core::memory::MemoryNetwork;
use mesh_core::{MeshConfig, MeshNode, Registry};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the demo waits for any step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(about = "Form a full worker mesh in one process and walk the admin-departure tour")]
struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// Transport plugin.
    #[arg(long, default_value = "memory")]
    transport: String,
    /// Signaler plugins, in fallback order, comma separated.
    #[arg(long, default_value = "memory", value_delimiter = ',')]
    signaling: Vec<String>,
    /// One JSON object per line, ending with a summary line.
    #[arg(long)]
    json: bool,
    /// Optional TOML configuration (flags override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

struct Out {
    json: bool,
    start: Instant,
}

impl Out {
    fn step(&self, event: &str, text: String, fields: Value) {
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
}

fn links(nodes: &[MeshNode]) -> usize {
    nodes.iter().map(|n| n.snapshot().health.links_up).sum::<usize>() / 2
}

fn attempts(nodes: &[MeshNode]) -> u64 {
    nodes.iter().map(|n| n.snapshot().counters).map(|c| c.dials + c.accepts).sum()
}

async fn start_worker(base: &MeshConfig, registry: &Registry, name: &str) -> Result<MeshNode, String> {
    let mut cfg = base.clone();
    cfg.peer_id = name.to_string();
    MeshNode::from_config(&cfg, registry).await.map_err(|e| format!("{name}: {e}"))
}

async fn wait_full(nodes: &[MeshNode]) -> Result<(), String> {
    let n = nodes.len();
    for node in nodes {
        node.wait_for(STEP_TIMEOUT, |s| s.health.links_up == n - 1 && s.health.links_expected == n - 1)
            .await
            .map_err(|e| format!("{} did not link to all {} others: {e}", node.peer_id(), n - 1))?;
    }
    Ok(())
}

fn link_table(nodes: &[MeshNode]) -> String {
    let mut out = String::from("  worker      role    links  peers\n");
    for n in nodes {
        let h = n.snapshot().health;
        let peers: Vec<&str> = h.peers.iter().filter(|p| p.state == "up").map(|p| p.peer.as_str()).collect();
        out += &format!(
            "  {:<10}  {:<6}  {:>2}/{:<2}  {}\n",
            h.peer.as_str(),
            h.role,
            h.links_up,
            h.links_expected,
            peers.join(" ")
        );
    }
    out
}

async fn tour(args: &Args, out: &Out, summary: &mut BTreeMap<&'static str, Value>) -> Result<(), String> {
    let mut base = MeshConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    base.room = "demo".into();
    base.transport = args.transport.clone();
    base.signaling = args.signaling.clone();
    base.validate().map_err(|e| e.to_string())?;
    // Every worker runs on this host: loopback candidates unless the configuration says otherwise.
    base.plugins.entry("webrtc".into()).or_insert_with(|| json!({ "udp_addrs": ["127.0.0.1:0"] }));
    let mut registry = Registry::from_inventory();
    registry.resources.insert(Arc::new(MemoryNetwork::new()));
    let n = args.workers.max(2);
    summary.insert("transport", json!(base.transport));
    summary.insert("signaling", json!(base.signaling));
    summary.insert("workers", json!(n));
    summary.insert("expected_links", json!(n * (n - 1) / 2));

    let t0 = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start_worker(&base, &registry, &format!("w{i}")).await?);
    }
    out.step("workers_started", format!("{n} workers registered in room demo"), json!({ "workers": n }));
    wait_full(&nodes).await?;
    let formation_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let opened: u64 = nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
    summary.insert("links", json!(links(&nodes)));
    summary.insert("duplicate_links", json!((opened / 2) as usize - links(&nodes)));
    summary.insert("formation_ms", json!((formation_ms * 10.0).round() / 10.0));
    out.step(
        "mesh_formed",
        format!("full mesh: {} links in {formation_ms:.1} ms\n{}", links(&nodes), link_table(&nodes)),
        json!({ "links": links(&nodes), "formation_ms": formation_ms }),
    );

    let admin = nodes[0].snapshot().health.admin.ok_or("no admin after formation")?;
    summary.insert("admin", json!(admin.as_str()));
    let idx = nodes.iter().position(|n| n.peer_id() == &admin).ok_or("admin is not a local worker")?;
    let leaving = nodes.remove(idx);
    let before = attempts(&nodes);
    let t1 = Instant::now();
    leaving.leave().await;
    out.step("admin_left", format!("admin {admin} left"), json!({ "admin": admin.as_str() }));
    let first = nodes[0].peer_id().clone();
    let expected = nodes[0]
        .wait_for(STEP_TIMEOUT, |s| s.health.admin_verified && s.health.admin.as_ref().is_some_and(|a| *a != admin))
        .await
        .map_err(|e| format!("{first} did not elect a new admin: {e}"))?
        .health
        .admin
        .ok_or("no new admin")?;
    for node in &nodes {
        node.wait_for(STEP_TIMEOUT, |s| s.health.admin_verified && s.health.admin.as_ref() == Some(&expected))
            .await
            .map_err(|e| format!("{} does not agree on admin {expected}: {e}", node.peer_id()))?;
    }
    let failover_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let reconnects = attempts(&nodes) - before;
    summary.insert("admin_left", json!(admin.as_str()));
    summary.insert("new_admin", json!(expected.as_str()));
    summary.insert("failover_ms", json!((failover_ms * 10.0).round() / 10.0));
    summary.insert("reconnects_after_admin_left", json!(reconnects));
    summary.insert("survivor_links", json!(links(&nodes)));
    out.step("admin_elected", format!("every survivor verified new admin {expected} in {failover_ms:.1} ms; {reconnects} new link attempts, {} links kept", links(&nodes)), json!({ "new_admin": expected.as_str(), "failover_ms": failover_ms, "reconnects": reconnects }));

    let joiner = format!("w{n}");
    nodes.push(start_worker(&base, &registry, &joiner).await?);
    let t2 = Instant::now();
    wait_full(&nodes).await?;
    summary.insert("links_after_join", json!(links(&nodes)));
    out.step(
        "worker_joined",
        format!(
            "{joiner} joined through {expected}: {} links in {:.1} ms\n{}",
            links(&nodes),
            t2.elapsed().as_secs_f64() * 1000.0,
            link_table(&nodes)
        ),
        json!({ "peer": joiner, "links": links(&nodes) }),
    );

    let mut signals: BTreeMap<String, u64> = BTreeMap::new();
    for node in &nodes {
        for (path, c) in node.snapshot().signals {
            *signals.entry(path).or_default() += c.sent;
        }
    }
    summary.insert("signals", json!(signals));
    for node in nodes {
        node.leave().await;
    }
    let survivors = n - 1;
    let checks = [
        (summary["duplicate_links"] == json!(0), "duplicate links"),
        (reconnects == 0, "reconnects after the admin left"),
        (summary["survivor_links"] == json!(survivors * (survivors - 1) / 2), "survivor links"),
        (summary["links_after_join"] == json!(n * (n - 1) / 2), "links after join"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("check failed: {what}")),
        None => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    transport_webrtc::link();
    signaling_ws::link();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("warn,{}", transport_webrtc::QUIET_LOG_DIRECTIVES).into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let out = Out { json: args.json, start: Instant::now() };
    let mut summary = BTreeMap::new();
    let result = tour(&args, &out, &mut summary).await;
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
