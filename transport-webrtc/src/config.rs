//! The `[webrtc]` configuration section: ICE servers, bind addresses, timeouts and buffer sizes.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ...
    pub urls: Vec<String>,
    /// TURN user name (empty for STUN).
    #[serde(default)]
    pub username: String,
    /// TURN credential (empty for STUN).
    #[serde(default)]
    pub credential: String,
}

/// Settings of the `webrtc` transport. Every field has a default; see the README for each key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcConfig {
    /// STUN/TURN servers; empty by default (host candidates only: one host or one LAN).
    pub ice_servers: Vec<IceServer>,
    /// Local UDP addresses each link binds. A wildcard (`0.0.0.0:0`) means every non-loopback
    /// interface; `127.0.0.1:0` adds loopback candidates, so a whole mesh can run on one host.
    pub udp_addrs: Vec<String>,
    /// How long an attempt may take from offer to open channel before it is abandoned.
    pub connect_timeout_ms: u64,
    /// Gathering never holds a link up (candidates trickle as found); if it has not completed
    /// after this long, a warning names the likely cause (an unreachable STUN/TURN server).
    pub gather_timeout_ms: u64,
    /// Silence on the ICE path before the connection counts as disconnected.
    pub disconnected_timeout_ms: u64,
    /// Further silence after "disconnected" before the link is declared failed and closed.
    pub failed_timeout_ms: u64,
    /// A link that has received nothing for this long sends an ICE keep-alive (consent checks
    /// go at least every 5 s whatever the traffic).
    pub keepalive_ms: u64,
    /// Pause between ICE connectivity checks while a link is forming.
    pub ice_check_interval_ms: u64,
    /// Bytes a link's reliable channel may hold unacknowledged before `send` waits; bulk data
    /// (streams, blobs) stops at three quarters of it, leaving the rest to mesh control. Bulk
    /// throughput is at most three quarters of it per round trip: the default (2 MiB) is
    /// 19 MiB/s at 80 ms; 8 MiB reaches TCP's rate there, but on a LAN lets bulk delay control
    /// answers by a quarter second or more.
    pub send_buffer_bytes: usize,
    /// SCTP receive window: bytes a peer may have in flight to this node. One link's throughput
    /// is at most this per round trip (SCTP's own default, 1 MiB, caps 80 ms at 12.5 MiB/s).
    pub receive_window_bytes: usize,
    /// Largest message reassembled from a peer; defaults to the mesh's `max_message_bytes`.
    pub max_message_bytes: Option<usize>,
    /// Send heartbeats on a separate unordered channel (true) or on the reliable one (false).
    pub heartbeat_channel: bool,
    /// UDP socket buffer requested each way (the kernel caps it at `net.core.rmem_max`).
    pub udp_buffer_bytes: usize,
    /// mDNS for `.local` candidates (browsers hide host addresses behind them): `auto` resolves
    /// them where the host can join multicast and turns mDNS off (with one warning) where it
    /// cannot; `query` insists on it; `off` never opens the multicast socket.
    pub mdns: Mdns,
    /// Which candidates a link may use: `all`, or `relay` (only TURN-relayed paths, which keeps
    /// the workers' addresses from each other and tests a TURN set-up).
    pub ice_transport_policy: IcePolicy,
}

/// Which ICE candidates links may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum IcePolicy {
    /// Host, server-reflexive, peer-reflexive and relayed candidates.
    #[default]
    All,
    /// Relayed candidates only (needs a TURN server in `ice_servers`).
    Relay,
}

/// Whether links use mDNS to resolve the peer's `.local` candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Mdns {
    /// Resolve `.local` candidates when the host allows multicast; otherwise off, with a warning.
    #[default]
    Auto,
    /// Always resolve; a host without a multicast route cannot open links (the error says so).
    Query,
    /// Never open the multicast socket; `.local` candidates are ignored.
    Off,
}

impl TryFrom<String> for Mdns {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "auto" => Ok(Self::Auto),
            "query" => Ok(Self::Query),
            "off" => Ok(Self::Off),
            other => Err(format!("mdns: `{other}` is not auto, query or off")),
        }
    }
}

impl TryFrom<String> for IcePolicy {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "all" => Ok(Self::All),
            "relay" => Ok(Self::Relay),
            other => Err(format!("ice_transport_policy: `{other}` is not all or relay")),
        }
    }
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            udp_addrs: vec!["0.0.0.0:0".into(), "127.0.0.1:0".into()],
            connect_timeout_ms: 10_000,
            gather_timeout_ms: 5_000,
            disconnected_timeout_ms: 2_000,
            failed_timeout_ms: 3_000,
            keepalive_ms: 2_000,
            ice_check_interval_ms: 5,
            send_buffer_bytes: 2 * 1024 * 1024,
            receive_window_bytes: 4 * 1024 * 1024,
            max_message_bytes: None,
            heartbeat_channel: true,
            udp_buffer_bytes: 4 * 1024 * 1024,
            mdns: Mdns::Auto,
            ice_transport_policy: IcePolicy::All,
        }
    }
}

impl WebRtcConfig {
    /// Loopback only: the setting for a mesh on one host (tests, the demo).
    pub fn loopback() -> Self {
        Self { udp_addrs: vec!["127.0.0.1:0".into()], ..Self::default() }
    }

    /// Reads a `[webrtc]` section (`null` means all defaults) and checks it.
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        let config: Self = if section.is_null() {
            Self::default()
        } else {
            serde_json::from_value(section.clone()).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.udp_addrs.is_empty() {
            return Err("udp_addrs must name at least one address".into());
        }
        for addr in &self.udp_addrs {
            addr.parse::<SocketAddr>().map_err(|e| format!("udp_addrs: `{addr}` is not ip:port ({e})"))?;
        }
        for server in &self.ice_servers {
            if server.urls.is_empty() {
                return Err("ice_servers: every server needs at least one url".into());
            }
            for url in &server.urls {
                if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| url.starts_with(p)) {
                    return Err(format!("ice_servers: `{url}` must start with stun:, stuns:, turn: or turns:"));
                }
            }
        }
        for (key, ms) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("gather_timeout_ms", self.gather_timeout_ms),
            ("disconnected_timeout_ms", self.disconnected_timeout_ms),
            ("failed_timeout_ms", self.failed_timeout_ms),
            ("keepalive_ms", self.keepalive_ms),
            ("ice_check_interval_ms", self.ice_check_interval_ms),
        ] {
            if ms == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        let has_turn = self.ice_servers.iter().flat_map(|s| &s.urls).any(|u| u.starts_with("turn"));
        if self.ice_transport_policy == IcePolicy::Relay && !has_turn {
            return Err("ice_transport_policy = \"relay\" needs a turn: or turns: server in ice_servers".into());
        }
        if self.send_buffer_bytes < 64 * 1024 {
            return Err("send_buffer_bytes must be at least 65536".into());
        }
        if !(64 * 1024..=u32::MAX as usize).contains(&self.receive_window_bytes) {
            return Err("receive_window_bytes must be at least 65536 and fit 32 bits".into());
        }
        let frame = mesh_core::data::frame::MAX_FRAME;
        if self.max_message_bytes.is_some_and(|n| n < frame) {
            return Err(format!("max_message_bytes must be at least {frame} (one application frame)"));
        }
        Ok(())
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_absent_section_gives_the_defaults() {
        assert_eq!(WebRtcConfig::from_section(&serde_json::Value::Null).unwrap(), WebRtcConfig::default());
    }

    #[test]
    fn a_section_overrides_keys_and_keeps_the_rest() {
        let c = WebRtcConfig::from_section(&json!({
            "udp_addrs": ["127.0.0.1:0"],
            "ice_servers": [{"urls": ["turn:turn.example:3478"], "username": "u", "credential": "p"}],
            "connect_timeout_ms": 2500
        }))
        .unwrap();
        assert_eq!(c.udp_addrs, vec!["127.0.0.1:0"]);
        assert_eq!(c.ice_servers[0].username, "u");
        assert_eq!(c.connect_timeout(), Duration::from_millis(2500));
        assert_eq!(c.keepalive_ms, WebRtcConfig::default().keepalive_ms);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        for (section, key) in [
            (json!({"udp_addrs": []}), "udp_addrs"),
            (json!({"udp_addrs": ["localhost"]}), "udp_addrs"),
            (json!({"ice_servers": [{"urls": ["http://x"]}]}), "ice_servers"),
            (json!({"connect_timeout_ms": 0}), "connect_timeout_ms"),
            (json!({"send_buffer_bytes": 10}), "send_buffer_bytes"),
            (json!({"max_message_bytes": 65536}), "max_message_bytes"),
            (json!({"receive_window_bytes": 1000}), "receive_window_bytes"),
            (json!({"udp_adrs": ["127.0.0.1:0"]}), "udp_adrs"),
            (json!({"ice_transport_policy": "relay"}), "ice_transport_policy"),
            (json!({"mdns": "sometimes"}), "mdns"),
        ] {
            let err = WebRtcConfig::from_section(&section).unwrap_err();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }
}
