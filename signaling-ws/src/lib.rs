//! # signaling-ws
//!
//! The WebSocket signaling server ([`SignalingServer`], binary `mesh-signal`) and the `ws`
//! [`WsSignaler`] plugin that workers keep open. The protocol is in `docs/PROTOCOL.md`.

mod limits;
pub mod loadgen;
pub mod protocol;
pub mod redis_store;
pub mod server;
pub mod signaler;
pub mod store;

pub use server::{ServerConfig, SignalingServer};
pub use signaler::WsSignaler;

use std::sync::Arc;

/// Call from a binary to make sure this crate (and its plugin registration) is linked.
pub fn link() {}

inventory::submit! {
    mesh_core::SignalerPlugin {
        name: signaler::NAME,
        description: "WebSocket to a mesh-signal server (section [ws]: url, token)",
        build: |ctx| {
            let url = ctx.section.get("url").and_then(|v| v.as_str()).unwrap_or("ws://127.0.0.1:8765").to_string();
            if !url.starts_with("ws://") && !url.starts_with("wss://") {
                return Err(mesh_core::PluginError::Config { plugin: signaler::NAME, why: format!("ws.url must start with ws:// or wss://, got {url}") });
            }
            let token = ctx.section.get("token").and_then(|v| v.as_str()).map(String::from);
            Ok(Arc::new(WsSignaler::new(url, token)))
        },
    }
}
