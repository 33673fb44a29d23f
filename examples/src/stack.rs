//! A worker stack chosen by plugin names, for programs that run several workers in one process:
//! the registry (plugins linked here), a base configuration, and an embedded `mesh-signal` server
//! on a free loopback port when `ws` is among the signalers and no URL was configured.

use mesh_core::memory::MemoryNetwork;
use mesh_core::{MeshConfig, MeshNode, Registry};
use serde_json::json;
use signaling_ws::{ServerConfig, SignalingServer};
use std::sync::Arc;

/// Plugins, base configuration and the embedded server of a local stack.
pub struct Stack {
    /// The plugins this program can build.
    pub registry: Registry,
    /// Configuration every worker starts from (room, plugins, sections).
    pub base: MeshConfig,
    server: Option<SignalingServer>,
}

/// Makes sure every plugin crate is linked into the calling binary.
pub fn link_plugins() {
    transport_webrtc::link();
    signaling_ws::link();
    signaling_relay::link();
}

/// The default log filter of the programs: warnings, minus the webrtc stack's benign chatter.
pub fn default_log_filter() -> String {
    format!("warn,{}", transport_webrtc::QUIET_LOG_DIRECTIVES)
}

impl Stack {
    /// Builds a stack from `base`. Workers on one host use loopback WebRTC candidates unless the
    /// configuration has a `[webrtc]` section; `ws` without a `[ws] url` gets an embedded server.
    pub async fn new(mut base: MeshConfig) -> Result<Self, String> {
        link_plugins();
        base.validate().map_err(|e| e.to_string())?;
        base.plugins.entry("webrtc".into()).or_insert_with(|| json!({ "udp_addrs": ["127.0.0.1:0"] }));
        let wants_server = base.signaling.iter().any(|s| s == "ws") && base.section("ws").get("url").is_none();
        let server = if wants_server {
            let addr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
            let server = SignalingServer::bind(addr, ServerConfig::default())
                .await
                .map_err(|e| format!("signaling server: {e}"))?;
            let mut section = base.section("ws");
            if !section.is_object() {
                section = json!({});
            }
            section["url"] = json!(server.url());
            base.plugins.insert("ws".into(), section);
            Some(server)
        } else {
            None
        };
        let mut registry = Registry::from_inventory();
        registry.resources.insert(Arc::new(MemoryNetwork::new()));
        Ok(Self { registry, base, server })
    }

    /// The embedded server's URL, if this stack runs one.
    pub fn server_url(&self) -> Option<String> {
        self.server.as_ref().map(|s| s.url())
    }

    /// Starts worker `name` on this stack.
    pub async fn start(&self, name: &str) -> Result<MeshNode, String> {
        let mut cfg = self.base.clone();
        cfg.peer_id = name.to_string();
        MeshNode::from_config(&cfg, &self.registry).await.map_err(|e| format!("{name}: {e}"))
    }

    /// Stops the embedded server, if any.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}
