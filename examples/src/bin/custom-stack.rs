//! custom-stack: how to write and plug in your own Signaler. `Tapped` wraps the in-memory
//! signaler and counts every signal it carries; it registers itself with `inventory` under the
//! name `tapped`, so a configuration can name it like any built-in plugin. A custom `Transport`
//! plugs in the same way with `mesh_core::TransportPlugin`.

use mesh_core::memory::{MemoryNetwork, MemorySignaler};
use mesh_core::{
    async_trait, Announcement, MeshConfig, MeshNode, PeerId, Registry, Signal, SignalError, Signaler, SignalerContext,
    SignalerPlugin,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Signals carried by every `tapped` signaler of this process.
static TAPPED: AtomicU64 = AtomicU64::new(0);

/// A signaler that delegates to another and counts what it sends.
struct Tapped(MemorySignaler);

#[async_trait]
impl Signaler for Tapped {
    fn name(&self) -> &'static str {
        "tapped"
    }
    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError> {
        self.0.start(ctx).await
    }
    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError> {
        TAPPED.fetch_add(1, Ordering::Relaxed);
        println!("  tapped: {} -> {to}", signal.session);
        self.0.send(to, signal).await
    }
    async fn announce(&self, what: Announcement) -> Result<(), SignalError> {
        self.0.announce(what).await
    }
    async fn stop(&self) {
        self.0.stop().await
    }
}

mesh_core::inventory::submit! {
    SignalerPlugin {
        name: "tapped",
        description: "the memory signaler, counting what it carries (custom-stack example)",
        // Factories get the whole configuration, their own section and shared resources.
        build: |ctx| {
            let net = ctx.resources.get::<MemoryNetwork>().ok_or(mesh_core::PluginError::Config {
                plugin: "tapped",
                why: "needs a MemoryNetwork resource".into(),
            })?;
            Ok(Arc::new(Tapped(MemorySignaler::new((*net).clone()))))
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::from_inventory();
    registry.resources.insert(Arc::new(MemoryNetwork::new()));
    let config = MeshConfig {
        room: "custom".into(),
        transport: "memory".into(),
        signaling: vec!["tapped".into()],
        ..MeshConfig::default()
    };
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let mut cfg = config.clone();
        cfg.peer_id = name.into();
        nodes.push(MeshNode::from_config(&cfg, &registry).await?);
    }
    for node in &nodes {
        node.wait_for(Duration::from_secs(10), |s| s.health.links_up == 2).await?;
    }
    let links: usize = nodes.iter().map(|n| n.snapshot().health.links_up).sum::<usize>() / 2;
    let signals = TAPPED.load(Ordering::Relaxed);
    println!("{} workers, {links} links, {signals} signals through the custom signaler", nodes.len());
    for node in nodes {
        node.leave().await;
    }
    Ok(())
}
