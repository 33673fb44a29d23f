//! # signaling-relay
//!
//! The `relay` [`Signaler`]: a signal for a peer this node has no link to travels as a `relay`
//! envelope over an open mesh link, and the relay forwards it over its own link to the target.
//! The relay stamps nothing: it checks that the envelope's `from` is the peer its link
//! authenticates (else `relay_error: spoofed_sender`) and that it is linked to the target (else
//! `not_linked`), then forwards and answers `relay_ack`. That forwarding lives in `mesh-core`,
//! so every node relays for others whatever its own signalers are.
//!
//! **Choice of relay** (deterministic): the admin first (it links to every worker), then the
//! other linked peers in ascending peer-id order, at most `max_relays` tries in all. A peer
//! already linked to the target gets the envelope directly (it is its own relay). A relay that
//! answers `not_linked`, or whose link closes before answering, passes the turn to the next one.
//! The admin itself relays through nobody: a worker it has no link to is a newcomer nobody else
//! knows yet, so asking the others would only delay the fallback.
//!
//! **Failure, reported to the chain** so the next path (the WebSocket) takes over: no linked
//! relay at all (`Unreachable`), every relay refused (`Unreachable`), a spoofing or invalid
//! refusal (`Other`), no answer within `timeout_ms` (`Timeout`, default 500 ms).

use async_trait::async_trait;
use mesh_core::relay_route::{DEFAULT_MAX_RELAYS, DEFAULT_RELAY_TIMEOUT};
use mesh_core::{PeerId, PluginError, RelayErrorReason, RelayOutcome, Signal, SignalError, Signaler, SignalerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The plugin name used in configuration.
pub const NAME: &str = "relay";

/// Call from a binary to make sure this crate (and its plugin registration) is linked.
pub fn link() {}

/// Settings of the `[relay]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Longest wait for a relay's answer across all tries.
    pub timeout: Duration,
    /// Relays tried per signal (the admin counts as one).
    pub max_relays: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { timeout: DEFAULT_RELAY_TIMEOUT, max_relays: DEFAULT_MAX_RELAYS }
    }
}

/// The `[relay]` section as written; unknown keys are refused.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Section {
    timeout_ms: u64,
    max_relays: usize,
}

impl Default for Section {
    fn default() -> Self {
        let d = RelayConfig::default();
        Self { timeout_ms: d.timeout.as_millis() as u64, max_relays: d.max_relays }
    }
}

impl RelayConfig {
    /// Reads `timeout_ms` and `max_relays` from a `[relay]` section (`null` means defaults).
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        let section: Section = if section.is_null() {
            Section::default()
        } else {
            serde_json::from_value(section.clone()).map_err(|e| format!("relay: {e}"))?
        };
        if section.timeout_ms == 0 {
            return Err("relay.timeout_ms must be greater than 0".into());
        }
        if section.max_relays == 0 {
            return Err("relay.max_relays must be greater than 0".into());
        }
        Ok(Self { timeout: Duration::from_millis(section.timeout_ms), max_relays: section.max_relays })
    }
}

/// Signals over the mesh's own links.
pub struct RelaySignaler {
    config: RelayConfig,
    ctx: Mutex<Option<SignalerContext>>,
}

impl RelaySignaler {
    /// A relay signaler with `config`.
    pub fn new(config: RelayConfig) -> Self {
        Self { config, ctx: Mutex::new(None) }
    }

    fn context(&self) -> Option<SignalerContext> {
        self.ctx.lock().ok().and_then(|c| c.clone())
    }
}

pub use mesh_core::relay_route::relay_order;

#[derive(Debug, thiserror::Error)]
#[error("relay {via} refused the signal: {reason:?}")]
struct Refused {
    via: PeerId,
    reason: RelayErrorReason,
}

#[async_trait]
impl Signaler for RelaySignaler {
    fn needs_open_links(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn confirm_timeout(&self) -> Option<Duration> {
        Some(self.config.timeout) // the chain waits as long as the relays may take, no less
    }

    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError> {
        if let Ok(mut slot) = self.ctx.lock() {
            *slot = Some(ctx);
        }
        Ok(())
    }

    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError> {
        let ctx = self.context().ok_or(SignalError::NotRunning)?;
        let me = &ctx.identity.peer;
        let order = relay_order(me, to, ctx.mesh.admin().as_ref(), &ctx.mesh.linked_peers(), self.config.max_relays);
        if order.is_empty() {
            return Err(SignalError::Unreachable { peer: to.clone(), why: "no open link to relay through".into() });
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut tried = Vec::new();
        for via in order {
            let Some(answer) = ctx.mesh.relay(&via, to, signal.clone()) else {
                continue; // that link closed since we listed it
            };
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(RelayOutcome::Delivered)) => {
                    tracing::trace!(%to, %via, "signal relayed");
                    return Ok(());
                }
                Ok(Ok(RelayOutcome::Refused(RelayErrorReason::NotLinked)))
                | Ok(Ok(RelayOutcome::RelayGone))
                | Ok(Err(_)) => {
                    tracing::debug!(%to, %via, "relay could not deliver; trying the next");
                    tried.push(via);
                }
                Ok(Ok(RelayOutcome::Refused(reason))) => {
                    return Err(SignalError::Other(Box::new(Refused { via, reason })));
                }
                Err(_) => return Err(SignalError::Timeout(self.config.timeout)),
            }
        }
        let tried: Vec<String> = tried.iter().map(|p| p.to_string()).collect();
        Err(SignalError::Unreachable {
            peer: to.clone(),
            why: format!("no relay reached it (tried {})", tried.join(", ")),
        })
    }

    async fn stop(&self) {
        if let Ok(mut slot) = self.ctx.lock() {
            *slot = None;
        }
    }
}

inventory::submit! {
    mesh_core::SignalerPlugin {
        name: NAME,
        description: "Signals over open mesh links, through the admin (section [relay]: timeout_ms, max_relays)",
        build: |ctx| {
            let config = RelayConfig::from_section(&ctx.section).map_err(|why| PluginError::Config { plugin: NAME, why })?;
            Ok(Arc::new(RelaySignaler::new(config)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sections_are_refused() {
        assert!(RelayConfig::from_section(&serde_json::json!({"timeout_ms": 0})).is_err());
        assert!(RelayConfig::from_section(&serde_json::json!({"max_relays": "x"})).is_err());
        let typo = RelayConfig::from_section(&serde_json::json!({"timout_ms": 250})).unwrap_err();
        assert!(typo.contains("timout_ms"), "{typo}");
        assert_eq!(RelayConfig::from_section(&serde_json::Value::Null).unwrap(), RelayConfig::default());
        let c = RelayConfig::from_section(&serde_json::json!({"timeout_ms": 250})).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
    }
}
