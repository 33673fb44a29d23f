//! Plugins by name. Each plugin crate `inventory::submit!`s a [`TransportPlugin`] or
//! [`SignalerPlugin`]: a name and a factory that builds the trait object from its configuration
//! section. [`Registry::from_inventory`] collects them; explicit registration on a registry is the
//! primary API, inventory sits on top. An unknown name is an error listing the known ones.
//!
//! A plugin crate that a binary never references may not be linked: reference it explicitly
//! (for example `transport_webrtc::link()`).

use crate::config::MeshConfig;
use crate::signaler::Signaler;
use crate::transport::Transport;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Shared objects a factory may need (an in-memory network, a runtime handle), by type.
#[derive(Clone, Default)]
pub struct Resources(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Resources {
    /// Adds (or replaces) the resource of type `T`.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) -> &mut Self {
        self.0.insert(TypeId::of::<T>(), value);
        self
    }
    /// The resource of type `T`, if present.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>()).cloned().and_then(|v| v.downcast::<T>().ok())
    }
}

/// What a factory gets.
pub struct PluginContext<'a> {
    /// The whole configuration.
    pub config: &'a MeshConfig,
    /// The plugin's own section (`[ws]` for `ws`), or `null`.
    pub section: serde_json::Value,
    /// Shared objects.
    pub resources: &'a Resources,
}

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin of that name is registered.
    #[error("unknown {kind} plugin `{name}`; known: {}", known.join(", "))]
    Unknown {
        /// `transport` or `signaler`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Registered names.
        known: Vec<String>,
    },
    /// A top-level configuration key that is neither a setting nor a known plugin's section.
    #[error("unknown configuration key `{key}` (not a setting, nor the section of a plugin: {})", known.join(", "))]
    UnknownKey {
        /// The key.
        key: String,
        /// Registered plugin names.
        known: Vec<String>,
    },
    /// The plugin's configuration section is not acceptable.
    #[error("plugin `{plugin}`: {why}")]
    Config {
        /// Plugin name.
        plugin: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A transport factory.
pub type TransportFactory = fn(&PluginContext<'_>) -> Result<Arc<dyn Transport>, PluginError>;
/// A signaler factory.
pub type SignalerFactory = fn(&PluginContext<'_>) -> Result<Arc<dyn Signaler>, PluginError>;

/// A transport plugin descriptor, submitted with `inventory::submit!`.
pub struct TransportPlugin {
    /// Name used in configuration.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Builds the transport.
    pub build: TransportFactory,
}

/// A signaler plugin descriptor, submitted with `inventory::submit!`.
pub struct SignalerPlugin {
    /// Name used in configuration.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Builds the signaler.
    pub build: SignalerFactory,
}

inventory::collect!(TransportPlugin);
inventory::collect!(SignalerPlugin);

/// The plugins a program can build, by name.
#[derive(Clone, Default)]
pub struct Registry {
    transports: BTreeMap<&'static str, (&'static str, TransportFactory)>,
    signalers: BTreeMap<&'static str, (&'static str, SignalerFactory)>,
    /// Shared objects handed to every factory.
    pub resources: Resources,
}

impl Registry {
    /// A registry of every plugin linked into the program.
    pub fn from_inventory() -> Self {
        let mut r = Self::default();
        for p in inventory::iter::<TransportPlugin> {
            r.register_transport(p.name, p.description, p.build);
        }
        for p in inventory::iter::<SignalerPlugin> {
            r.register_signaler(p.name, p.description, p.build);
        }
        r
    }

    /// Registers (or replaces) a transport.
    pub fn register_transport(&mut self, name: &'static str, description: &'static str, build: TransportFactory) {
        self.transports.insert(name, (description, build));
    }

    /// Registers (or replaces) a signaler.
    pub fn register_signaler(&mut self, name: &'static str, description: &'static str, build: SignalerFactory) {
        self.signalers.insert(name, (description, build));
    }

    /// Registered transports: name and description.
    pub fn transports(&self) -> Vec<(&'static str, &'static str)> {
        self.transports.iter().map(|(n, (d, _))| (*n, *d)).collect()
    }

    /// Registered signalers: name and description.
    pub fn signalers(&self) -> Vec<(&'static str, &'static str)> {
        self.signalers.iter().map(|(n, (d, _))| (*n, *d)).collect()
    }

    /// Refuses a configuration whose top-level keys include one that is neither a setting nor
    /// the section of a registered plugin (a misspelt key would otherwise pass silently).
    pub fn check_sections(&self, config: &MeshConfig) -> Result<(), PluginError> {
        let known = |name: &str| self.transports.contains_key(name) || self.signalers.contains_key(name);
        match config.plugins.keys().find(|k| !known(k)) {
            Some(key) => {
                let names: std::collections::BTreeSet<String> =
                    self.transports.keys().chain(self.signalers.keys()).map(|n| n.to_string()).collect();
                let names = names.into_iter().collect();
                Err(PluginError::UnknownKey { key: key.clone(), known: names })
            }
            None => Ok(()),
        }
    }

    fn ctx<'a>(&'a self, config: &'a MeshConfig, name: &str) -> PluginContext<'a> {
        PluginContext { config, section: config.section(name), resources: &self.resources }
    }

    /// Builds the transport called `name`.
    pub fn transport(&self, name: &str, config: &MeshConfig) -> Result<Arc<dyn Transport>, PluginError> {
        let (_, build) = self.transports.get(name).ok_or_else(|| PluginError::Unknown {
            kind: "transport",
            name: name.into(),
            known: self.transports.keys().map(|k| k.to_string()).collect(),
        })?;
        build(&self.ctx(config, name))
    }

    /// Builds the signaler called `name`.
    pub fn signaler(&self, name: &str, config: &MeshConfig) -> Result<Arc<dyn Signaler>, PluginError> {
        let (_, build) = self.signalers.get(name).ok_or_else(|| PluginError::Unknown {
            kind: "signaler",
            name: name.into(),
            known: self.signalers.keys().map(|k| k.to_string()).collect(),
        })?;
        build(&self.ctx(config, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_plugins_are_registered_through_inventory() {
        let r = Registry::from_inventory();
        assert!(r.transports().iter().any(|(n, _)| *n == "memory"));
        assert!(r.signalers().iter().any(|(n, _)| *n == "memory"));
    }

    #[test]
    fn unknown_name_is_an_error_listing_the_known_ones() {
        let r = Registry::from_inventory();
        let err = r.transport("carrier-pigeon", &MeshConfig::default()).err().expect("unknown").to_string();
        assert!(err.contains("carrier-pigeon") && err.contains("memory"), "{err}");
    }
}
