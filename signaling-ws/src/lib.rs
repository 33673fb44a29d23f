//! # signaling-ws
//!
//! The WebSocket signaling server (`mesh-signal`) and the `ws` Signaler plugin.
//!
//! **Status: not implemented yet** (tracked by its own issue). No plugin is registered, so
//! configuring `signaling = ["ws"]` fails with the list of known signalers.
