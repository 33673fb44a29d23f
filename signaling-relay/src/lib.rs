//! # signaling-relay
//!
//! The `relay` Signaler plugin: signals hop over open mesh links through the admin.
//!
//! **Status: the plugin is not implemented yet** (tracked by its own issue). What it builds on is
//! in `mesh-core` already: the `relay` / `relay_ack` / `relay_error` wire messages, forwarding with
//! sender authentication in the state machine, and `MeshAccess::relay` on every node.
