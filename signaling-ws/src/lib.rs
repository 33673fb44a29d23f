//! # signaling-ws
//!
//! The WebSocket signaling server ([`SignalingServer`], binary `mesh-signal`) and the `ws`
//! [`WsSignaler`] plugin that workers keep open. The protocol is in `docs/PROTOCOL.md`.

pub mod backoff;
mod dial;
mod http;
mod limits;
pub mod loadgen;
pub mod metrics;
pub mod protocol;
pub mod redis_store;
pub mod server;
pub mod signaler;
pub mod store;
pub mod trust;

pub use server::{ServerConfig, SignalingServer};
pub use signaler::WsSignaler;

use std::sync::Arc;

/// Call from a binary to make sure this crate (and its plugin registration) is linked.
pub fn link() {}

inventory::submit! {
    mesh_core::SignalerPlugin {
        name: signaler::NAME,
        description: "WebSocket to a mesh-signal server, or several serving the same rooms (section [ws]: url or urls, token)",
        build: |ctx| {
            let urls = signaler::urls_of(&ctx.section)
                .map_err(|why| mesh_core::PluginError::Config { plugin: signaler::NAME, why })?;
            let token = ctx.section.get("token").and_then(|v| v.as_str()).map(String::from);
            Ok(Arc::new(WsSignaler::with_urls(urls, token)))
        },
    }
}
