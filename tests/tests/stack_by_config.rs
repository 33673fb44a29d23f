//! A worker stack is chosen by configuration alone: the same code builds whatever the TOML and
//! `MESH_*` environment name, through the plugin registry.

use mesh_core::memory::MemoryNetwork;
use mesh_core::{MeshConfig, MeshNode, Registry};
use std::sync::Arc;
use std::time::Duration;

fn config(peer: &str, toml: &str) -> MeshConfig {
    use figment::providers::{Format, Toml};
    let f = MeshConfig::figment(None).merge(Toml::string(toml)).merge(("peer_id", peer));
    MeshConfig::from_figment(f).expect("valid configuration")
}

#[tokio::test(start_paused = true)]
async fn stack_named_in_configuration_forms_a_mesh() {
    let toml = r#"
        room = "lab-1"
        transport = "memory"
        signaling = ["memory"]
        [metadata]
        gpu_memory_mb = 24000
    "#;
    let mut registry = Registry::from_inventory();
    registry.resources.insert(Arc::new(MemoryNetwork::new()));
    let mut nodes = Vec::new();
    for p in ["a", "b", "c"] {
        nodes.push(MeshNode::from_config(&config(p, toml), &registry).await.expect("starts"));
    }
    for n in &nodes {
        n.wait_for(Duration::from_secs(60), |s| s.health.links_up == 2).await.expect("full mesh");
    }
    let h = nodes[0].snapshot().health;
    assert_eq!(h.room.as_str(), "lab-1");
    assert_eq!(h.role, mesh_core::NodeRole::Admin);
}

#[tokio::test]
async fn unknown_plugin_in_configuration_is_refused_with_the_known_names() {
    let cfg = config("a", "transport = \"memory\"\nsignaling = [\"smoke-signals\"]");
    let err = MeshNode::from_config(&cfg, &Registry::from_inventory()).await.err().expect("refused").to_string();
    assert!(err.contains("smoke-signals") && err.contains("memory"), "{err}");
}
