//! [`ServerConfig`]: every limit and knob of the server, with safe defaults; unknown keys are
//! refused.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a connection may stay silent before the server drops it (the default of
/// `idle_timeout_ms`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Server settings; every limit has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Workers per room (clients are not counted).
    pub max_workers_per_room: usize,
    /// Largest frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Sustained frames per second per connection.
    pub rate_per_sec: u32,
    /// Burst of frames above the sustained rate.
    pub rate_burst: u32,
    /// Server pings a quiet connection this often.
    pub keepalive_interval_ms: u64,
    /// A connection silent this long is closed (half-open detection).
    pub idle_timeout_ms: u64,
    /// Time a new connection has to complete the WebSocket handshake and register.
    pub handshake_timeout_ms: u64,
    /// Connections open at once; more are refused with a close reason.
    pub max_connections: usize,
    /// Connections open at once from one source address; more are refused with a close reason.
    pub max_connections_per_address: usize,
    /// Per-room access tokens.
    pub tokens: BTreeMap<String, String>,
    /// Token for rooms without their own; none means open rooms.
    pub shared_secret: Option<String>,
    /// The Redis shared by a cluster of servers (`redis://host:port`); none: rooms live in
    /// this process.
    pub redis_url: Option<String>,
    /// With Redis: how long a server that stopped refreshing its lease keeps its peers.
    pub lease_ms: u64,
    /// Worker public keys allowed to register (64 hex digits each); empty: any key.
    pub allow_workers: Vec<String>,
    /// Client public keys allowed to register; empty: any key (worker keys always may).
    pub allow_clients: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_workers_per_room: 10,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 100,
            rate_burst: 200,
            keepalive_interval_ms: 15_000,
            idle_timeout_ms: IDLE_TIMEOUT.as_millis() as u64,
            handshake_timeout_ms: 10_000,
            max_connections: 20_000,
            max_connections_per_address: 256,
            tokens: BTreeMap::new(),
            shared_secret: None,
            redis_url: None,
            lease_ms: 3_000,
            allow_workers: Vec::new(),
            allow_clients: Vec::new(),
        }
    }
}
