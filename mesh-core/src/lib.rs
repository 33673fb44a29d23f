//! # mesh-core
//!
//! The heart of the worker mesh: identifiers, wire messages, the replicated room state, the
//! [`Transport`] and [`Signaler`] traits, the sans-IO [`MeshState`] that makes every decision, the
//! async [`MeshNode`] that drives it, the plugin registry and the configuration.
//!
//! Layout, one idea per module:
//! - [`id`], [`signal`], [`wire`], [`room`], [`query`]: data, no I/O.
//! - [`identity`]: node keys and signal signatures.
//! - [`transport`], [`signaler`], [`chain`]: the plugin traits and the ordered fallback.
//! - [`state`]: the state machine (formation, election, health, retries).
//! - [`node`]: the async driver.
//! - [`registry`], [`config`]: plugins by name, configuration by figment.
//! - [`memory`]: in-memory plugins with fault injection, for tests and demos.
//! - [`timeline`]: timestamped marks of each join and link step, for breakdowns, and quantiles.
//! - [`testing`]: the kit every test and benchmark uses (options, waits, counts).

pub mod chain;
pub mod config;
pub mod data;
pub mod id;
pub mod identity;
pub mod lease;
pub mod memory;
pub mod node;
pub mod query;
pub mod registry;
pub mod relay_route;
pub mod room;
pub mod signal;
pub mod signaler;
pub mod state;
pub mod testing;
pub mod timeline;
pub mod transfer;
pub mod transport;
pub mod wire;

pub use chain::{PathCounters, PathOrder, SignalStats, SignalerChain};
pub use config::{ConfigError, MeshConfig, TrustConfig};
pub use data::{DataConfig, DataError, Inbox, Incoming, Request};
pub use node::{wall_clock_phase, MeshNode, NodeError, NodeOptions, Snapshot};
pub use registry::{PluginContext, PluginError, Registry, Resources, SignalerPlugin, TransportPlugin};

pub use id::{IdError, PeerId, RoomId};

pub use query::{RegistryFilter, RegistryPage};
pub use room::{elect, MemberInfo, Metadata, RoomState, WorkerRecord, WorkerStatus};
pub use signal::{SessionId, Signal, SignalBody};
pub use signaler::{
    Announcement, Identity, Inbound, MeshAccess, NoLinks, RelayOutcome, Role, SignalError, Signaler, SignalerContext,
    SignalingEvent,
};
pub use state::{
    Counters, Drive, Event, HealthRecord, LinkOp, LinkStatus, MeshEvent, MeshState, NodeRole, Output, SignalingOp,
    StateConfig, Timing, Transmit,
};
pub use transport::{CloseReason, Link, LinkEvent, LinkHandle, SignalSink, Transport, TransportError};
pub use wire::{MeshMessage, Proof, RelayErrorReason, Vote, MAX_EPOCH};

pub use async_trait::async_trait;
pub use inventory;
