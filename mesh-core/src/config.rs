//! The configuration of one worker: one typed struct extracted by figment from defaults, then a
//! TOML file, then `MESH_*` environment variables (`MESH_TIMING__HEARTBEAT_INTERVAL_MS=500`,
//! `MESH_SIGNALING=relay,ws`), validated once with errors that name the key.

use crate::id::{PeerId, RoomId};
use crate::room::{Metadata, WorkerRecord};
use crate::signaler::Role;
use crate::state::Timing;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value had the wrong shape.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is present but not acceptable.
    #[error("configuration key `{key}`: {why}")]
    Invalid {
        /// The offending key, dotted (`timing.heartbeat_timeout_ms`).
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// `MESH_*` variables that are not a node's settings (the log format of the programs, the
/// simulator's seed count): left out of the configuration, where an unknown key is refused.
const NOT_SETTINGS: [&str; 2] = ["log_format", "sim_seeds"];

/// Timings in milliseconds, as written in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingConfig {
    /// Heartbeat period on every link.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a peer is lost.
    pub heartbeat_timeout_ms: u64,
    /// Time an elected admin has to answer `admin_verify`.
    pub admin_verify_timeout_ms: u64,
    /// First retry delay.
    pub retry_initial_ms: u64,
    /// Largest retry delay.
    pub retry_max_ms: u64,
    /// Wait for a known joiner's offer before dialing it.
    pub offer_wait_ms: u64,
    /// Wait for the answer to an offer sent by the rendezvous before sending it again by relay.
    pub answer_wait_ms: u64,
    /// Period of the health record.
    pub health_interval_ms: u64,
    /// How long one signaling path has to confirm a signal before the next is tried.
    pub signal_timeout_ms: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        let t = Timing::default();
        let ms = |d: Duration| d.as_millis() as u64;
        Self {
            heartbeat_interval_ms: ms(t.heartbeat_interval),
            heartbeat_timeout_ms: ms(t.heartbeat_timeout),
            admin_verify_timeout_ms: ms(t.admin_verify_timeout),
            retry_initial_ms: ms(t.retry_initial),
            retry_max_ms: ms(t.retry_max),
            offer_wait_ms: ms(t.offer_wait),
            answer_wait_ms: ms(t.answer_wait),
            health_interval_ms: ms(t.health_interval),
            signal_timeout_ms: 500,
        }
    }
}

impl TimingConfig {
    /// As the state machine's [`Timing`].
    pub fn timing(&self) -> Timing {
        let ms = Duration::from_millis;
        Timing {
            heartbeat_interval: ms(self.heartbeat_interval_ms),
            heartbeat_timeout: ms(self.heartbeat_timeout_ms),
            admin_verify_timeout: ms(self.admin_verify_timeout_ms),
            retry_initial: ms(self.retry_initial_ms),
            retry_max: ms(self.retry_max_ms),
            offer_wait: ms(self.offer_wait_ms),
            answer_wait: ms(self.answer_wait_ms),
            health_interval: ms(self.health_interval_ms),
        }
    }
}

/// Which keys may be members of the room (`[trust]`): the same lists as mesh-signal's, so that
/// even a compromised signaling server cannot add a member the honest workers accept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Worker public keys (64 hex digits each, as `--print-key` prints them); empty: any key.
    #[serde(deserialize_with = "list_or_csv")]
    pub workers: Vec<String>,
    /// Client public keys; empty: any key (worker keys are always accepted as clients too).
    #[serde(deserialize_with = "list_or_csv")]
    pub clients: Vec<String>,
}

impl TrustConfig {
    /// As the state machine's allowlist (an empty list allows any key).
    pub fn allowlist(&self) -> crate::identity::Allowlist {
        let set = |l: &Vec<String>| (!l.is_empty()).then(|| l.iter().map(|k| k.trim().to_ascii_lowercase()).collect());
        crate::identity::Allowlist { workers: set(&self.workers), clients: set(&self.clients) }
    }
}

/// The whole configuration of a worker (or client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshConfig {
    /// Room to join.
    pub room: String,
    /// This peer's id; empty means hostname plus a random suffix.
    pub peer_id: String,
    /// Worker or client.
    pub role: Role,
    /// Transport plugin name.
    pub transport: String,
    /// Signaler plugin names, in fallback order.
    #[serde(deserialize_with = "list_or_csv")]
    pub signaling: Vec<String>,
    /// Metadata key whose number is the election priority.
    pub priority_key: String,
    /// This worker's status as it joins (`available`, `busy`, `reserved`).
    pub status: crate::room::WorkerStatus,
    /// Free-form metadata announced to the room.
    pub metadata: Metadata,
    /// Timings.
    pub timing: TimingConfig,
    /// Largest mesh message accepted off a link, in bytes.
    pub max_message_bytes: usize,
    /// File holding this node's Ed25519 secret key (hex), created if missing: a stable identity
    /// across restarts. Without it each start makes a fresh key.
    pub key_file: Option<std::path::PathBuf>,
    /// The keys that may be members of the room.
    pub trust: TrustConfig,
    /// Plugin sections (`[ws]`, `[webrtc]`, `[memory]` ...), handed to the plugin of that name.
    #[serde(flatten)]
    pub plugins: BTreeMap<String, serde_json::Value>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            room: "default".into(),
            peer_id: String::new(),
            role: Role::Worker,
            transport: "webrtc".into(),
            signaling: vec!["relay".into(), "ws".into()],
            priority_key: "gpu_memory_mb".into(),
            status: crate::room::WorkerStatus::Available,
            metadata: Metadata::new(),
            timing: TimingConfig::default(),
            max_message_bytes: crate::wire::DEFAULT_MAX_MESSAGE_BYTES,
            key_file: None,
            trust: TrustConfig::default(),
            plugins: BTreeMap::new(),
        }
    }
}

fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(v) => v,
        ListOrCsv::Csv(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
    })
}

impl MeshConfig {
    /// The figment of defaults, then `file` (if given), then `MESH_*` variables.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Serialized::defaults(MeshConfig::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        // Not settings of a node: mesh-signal's (`MESH_SIGNAL_*`) and the programs' own.
        let not_ours = |k: &figment::value::UncasedStr| {
            k.as_str().to_ascii_lowercase().starts_with("signal_") || NOT_SETTINGS.iter().any(|n| k == *n)
        };
        f.merge(Env::prefixed("MESH_").filter(move |k| !not_ours(k)).split("__"))
    }

    /// Loads and validates from defaults, `file` and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(file))
    }

    /// Extracts and validates from any figment (tests layer their own).
    pub fn from_figment(f: Figment) -> Result<Self, ConfigError> {
        let mut cfg: MeshConfig = f.extract().map_err(Box::new)?;
        // A tag list given as one string (`MESH_METADATA__TAGS=h100,fp8`) is a CSV list, as
        // every list of the configuration may be.
        if let Some(serde_json::Value::String(csv)) = cfg.metadata.get("tags") {
            let tags: Vec<String> = csv.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
            cfg.metadata.insert("tags".into(), serde_json::json!(tags));
        }
        if cfg.peer_id.is_empty() {
            cfg.peer_id = Self::generate_peer_id().to_string(); // generated once, read the same ever after
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: String| Err(ConfigError::Invalid { key, why });
        if let Err(e) = RoomId::new(self.room.clone()) {
            return invalid("room", e.to_string());
        }
        if !self.peer_id.is_empty() {
            if let Err(e) = PeerId::new(self.peer_id.clone()) {
                return invalid("peer_id", e.to_string());
            }
        }
        if self.transport.is_empty() {
            return invalid("transport", "must name a transport plugin".into());
        }
        if self.signaling.is_empty() {
            return invalid("signaling", "must name at least one signaler plugin".into());
        }
        let t = &self.timing;
        for (key, v) in [
            ("timing.heartbeat_interval_ms", t.heartbeat_interval_ms),
            ("timing.retry_initial_ms", t.retry_initial_ms),
            ("timing.admin_verify_timeout_ms", t.admin_verify_timeout_ms),
            ("timing.signal_timeout_ms", t.signal_timeout_ms),
            ("timing.health_interval_ms", t.health_interval_ms),
        ] {
            if v == 0 {
                return invalid(key, "must be greater than 0".into());
            }
        }
        if t.heartbeat_timeout_ms <= t.heartbeat_interval_ms {
            return invalid("timing.heartbeat_timeout_ms", "must be greater than timing.heartbeat_interval_ms".into());
        }
        if t.retry_max_ms < t.retry_initial_ms {
            return invalid("timing.retry_max_ms", "must be at least timing.retry_initial_ms".into());
        }
        for (key, list) in [("trust.workers", &self.trust.workers), ("trust.clients", &self.trust.clients)] {
            if let Some(bad) = list.iter().find(|k| crate::identity::PublicKey::parse(k.trim()).is_none()) {
                return invalid(key, format!("`{bad}` is not an Ed25519 public key (64 hex digits)"));
            }
        }
        if self.status == crate::room::WorkerStatus::Leaving {
            return invalid("status", "must be available, busy or reserved".into());
        }
        let frame = crate::data::frame::MAX_FRAME;
        if self.max_message_bytes < frame {
            return invalid("max_message_bytes", format!("must be at least {frame} (one application frame)"));
        }
        Ok(())
    }

    /// The room id; an error names the key when it is not a valid id.
    pub fn room_id(&self) -> Result<RoomId, ConfigError> {
        RoomId::new(self.room.clone()).map_err(|e| ConfigError::Invalid { key: "room", why: e.to_string() })
    }

    /// The peer id as configured ([`MeshConfig::from_figment`] fills in a generated one, once,
    /// when none is set); an error names the key when it is empty or not a valid id.
    pub fn peer_id(&self) -> Result<PeerId, ConfigError> {
        PeerId::new(self.peer_id.clone()).map_err(|e| ConfigError::Invalid { key: "peer_id", why: e.to_string() })
    }

    /// A fresh peer id: this host's name plus a random suffix.
    pub fn generate_peer_id() -> PeerId {
        let host: String = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_else(|| "worker".into())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let suffix: u32 = rand::random();
        PeerId::new(format!("{}-{suffix:08x}", if host.is_empty() { "worker" } else { &host }))
            .unwrap_or_else(|_| PeerId::new(format!("worker-{suffix:08x}")).expect("generated id is valid"))
    }

    /// This worker's first record: metadata, and the priority read from `priority_key`.
    pub fn record(&self) -> WorkerRecord {
        let priority = self.metadata.get(&self.priority_key).and_then(|v| v.as_u64()).unwrap_or(0);
        WorkerRecord { status: self.status, ..WorkerRecord::new(priority, self.metadata.clone()) }
    }

    /// The configuration section of plugin `name` (`null` if absent).
    pub fn section(&self, name: &str) -> serde_json::Value {
        self.plugins.get(name).cloned().unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests;
