//! [`MeshNode`]: the async driver of one [`crate::MeshState`] over any transport and signaler chain.
//!
//! The node owns one driver task, which owns everything else: per-link session tasks, the
//! signaler chain and short background sends. [`MeshNode::leave`] says goodbye and ends them all;
//! dropping the node (or [`MeshNode::abort`]) ends them without a goodbye to the room.

mod app;
mod driver;
mod io;
mod session;
mod starting;

pub use starting::SETUP_TIMEOUT;

use crate::chain::{PathCounters, SignalerChain};
use crate::config::MeshConfig;
use crate::data::{DataConfig, DataPlane};
use crate::id::{PeerId, RoomId};
use crate::identity::NodeKey;
use crate::query::{RegistryFilter, RegistryPage};
use crate::registry::{PluginError, Registry};
use crate::room::WorkerRecord;
use crate::signal::Signal;
use crate::signaler::{Identity, MeshAccess, RelayOutcome, SignalError, Signaler, SignalerContext};
use crate::state::{Counters, HealthRecord, MeshEvent, StateConfig, Timing};
use crate::transport::Transport;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Capacity of the signaling inbox; a full inbox slows signalers down.
const INBOX: usize = 1024;

/// Why a node could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A plugin could not be built.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The signaling chain could not start (registration refused, server unreachable...).
    #[error("signaling: {0}")]
    Signaling(#[from] SignalError),
    /// The configuration is not usable (names the key).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The identity key could not be loaded or created.
    #[error("identity key: {0}")]
    Identity(String),
    /// No open link to that peer.
    #[error("no open link to {0}")]
    NotLinked(PeerId),
    /// The wait ended before the condition held.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A request that needs the admin got no answer in time; says what was missing.
    #[error("no answer from the admin within {waited:?}: {missing}")]
    NoAdmin {
        /// How long the request waited.
        waited: Duration,
        /// What was missing (no admin known, admin not verified, link not open...).
        missing: String,
    },
    /// The node has stopped.
    #[error("node stopped")]
    Stopped,
}

/// Everything a user can read about a node at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// The health record.
    pub health: HealthRecord,
    /// Link counters.
    pub counters: Counters,
    /// Per-path signal counters.
    pub signals: BTreeMap<String, PathCounters>,
    /// Per linked peer, the network path its link took, where the transport tells
    /// (see [`crate::Link::route`]).
    pub routes: BTreeMap<PeerId, String>,
}

/// What the driver publishes for relaying signalers and the handle.
#[derive(Default)]
struct Shared {
    admin: Option<PeerId>,
    linked: Vec<PeerId>,
    /// The linked peers that are workers (a broadcast's recipients).
    linked_workers: Vec<PeerId>,
}

/// Relay requests waiting for the driver; more are refused (the relay signaler falls back).
const RELAY_QUEUE: usize = 256;

/// The [`MeshAccess`] a node gives its signalers: reads what the driver published, and hands
/// relay requests to the driver, which feeds them to the state machine.
struct Access {
    shared: Arc<Mutex<Shared>>,
    requests: mpsc::Sender<io::RelayRequest>,
    next_id: std::sync::atomic::AtomicU64,
}

impl MeshAccess for Access {
    fn admin(&self) -> Option<PeerId> {
        self.shared.lock().ok().and_then(|s| s.admin.clone())
    }

    fn linked_peers(&self) -> Vec<PeerId> {
        self.shared.lock().map(|s| s.linked.clone()).unwrap_or_default()
    }

    fn relay(&self, via: &PeerId, to: &PeerId, signal: Signal) -> Option<oneshot::Receiver<RelayOutcome>> {
        if !self.shared.lock().ok()?.linked.contains(via) {
            return None;
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let (reply, rx) = oneshot::channel();
        let request = io::RelayRequest { id, via: via.clone(), to: to.clone(), signal, reply };
        self.requests.try_send(request).ok()?;
        Some(rx)
    }
}

enum Command {
    SetRecord(WorkerRecord),
    Connect(PeerId),
    Disconnect(PeerId),
    SetStatus(crate::room::WorkerStatus),
    SetMetadata(String, serde_json::Value),
    QueryRegistry { filter: RegistryFilter, timeout: Duration, reply: oneshot::Sender<RegistryPage> },
    Leave { done: oneshot::Sender<()> },
}

/// Parameters of a node besides its plugins.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Who this node is.
    pub identity: Identity,
    /// Timings of the state machine.
    pub timing: Timing,
    /// Per-path confirmation timeout of the signaler chain.
    pub signal_timeout: Duration,
    /// Largest mesh message accepted off a link.
    pub max_message_bytes: usize,
    /// The keys that may be members of the room (default: any).
    pub trust: crate::identity::Allowlist,
    /// Limits of application messages and requests.
    pub data: DataConfig,
    /// Client links this worker takes at most (besides its worker links).
    pub max_client_links: usize,
}

/// A running mesh member.
pub struct MeshNode {
    peer: PeerId,
    room: RoomId,
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    events: broadcast::Sender<MeshEvent>,
    task: Option<JoinHandle<()>>,
    data: DataPlane,
    /// The blobs this node serves.
    provided: crate::transfer::Provided,
    /// The data plane's deadlines, the blob server and, on a worker, its reservations; they
    /// end with the node.
    services: tokio::task::JoinSet<()>,
    shared: Arc<Mutex<Shared>>,
    /// What the worker's status is made of: its lease and its own work.
    load: Arc<Mutex<Load>>,
}

/// The inputs of a worker's status: `busy` while it says so, else `reserved` while leased.
#[derive(Debug, Default)]
pub(crate) struct Load {
    leased: Option<PeerId>,
    busy: bool,
}

impl Load {
    fn status(&self) -> crate::room::WorkerStatus {
        use crate::room::WorkerStatus::*;
        match (self.busy, &self.leased) {
            (true, _) => Busy,
            (false, Some(_)) => Reserved,
            (false, None) => Available,
        }
    }
}

impl MeshNode {
    /// Builds the configured plugins from `registry` and starts the node.
    pub async fn from_config(config: &MeshConfig, registry: &Registry) -> Result<Self, NodeError> {
        registry.check_sections(config)?;
        let (room, peer) = (config.room_id()?, config.peer_id()?);
        let transport = registry.transport(&config.transport, config)?;
        let signalers =
            config.signaling.iter().map(|name| registry.signaler(name, config)).collect::<Result<Vec<_>, _>>()?;
        let options = NodeOptions {
            identity: Identity { room, peer, role: config.role, record: config.record(), key: None },
            timing: config.timing.timing(),
            signal_timeout: Duration::from_millis(config.timing.signal_timeout_ms),
            max_message_bytes: config.max_message_bytes,
            trust: config.trust.allowlist(),
            data: DataConfig::default(),
            max_client_links: crate::state::DEFAULT_MAX_CLIENT_LINKS,
        };
        let key = match &config.key_file {
            Some(path) => NodeKey::load_or_create(path).map_err(NodeError::Identity)?,
            None => NodeKey::generate(),
        };
        Self::start_with_key(options, Arc::new(key), transport, signalers).await
    }

    /// Starts a node over `transport` and the chain of `signalers` (tried in order), with a
    /// fresh identity key.
    pub async fn start(
        options: NodeOptions,
        transport: Arc<dyn Transport>,
        signalers: Vec<Arc<dyn Signaler>>,
    ) -> Result<Self, NodeError> {
        Self::start_with_key(options, Arc::new(NodeKey::generate()), transport, signalers).await
    }

    /// Starts a node whose signals are signed with `key` (its public half goes in `register`).
    pub async fn start_with_key(
        options: NodeOptions,
        key: Arc<NodeKey>,
        transport: Arc<dyn Transport>,
        signalers: Vec<Arc<dyn Signaler>>,
    ) -> Result<Self, NodeError> {
        let mut identity = options.identity.clone();
        identity.key = Some(key.public_hex());
        // A restarted worker's record must replace its predecessor's wherever that one is
        // still held (a departure nobody saw): versions start from the clock.
        identity.record.version = identity.record.version.max(first_session() / 1000);
        identity.record.sig = Some(key.sign_record(&identity.room, &identity.peer, &identity.record));
        crate::mark!("start");
        let span = tracing::info_span!("mesh", room = %identity.room, peer = %identity.peer);
        let chain = SignalerChain::new(signalers, options.signal_timeout);
        let chain = Arc::new(chain.signed(key.clone(), identity.room.clone(), identity.peer.clone()));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let (requests, relays) = mpsc::channel(RELAY_QUEUE);
        let access = Arc::new(Access { shared: shared.clone(), requests, next_id: Default::default() });
        let ctx = SignalerContext { identity: identity.clone(), inbox: inbox_tx, mesh: access };
        if let Err(err) = chain.start(ctx).instrument(span.clone()).await {
            chain.stop().await;
            return Err(err.into());
        }
        let state = crate::MeshState::new(StateConfig {
            room: identity.room.clone(),
            me: identity.peer.clone(),
            role: identity.role,
            record: identity.record.clone(),
            timing: options.timing.clone(),
            seed: rand::random(),
            key: Some(key.clone()),
            first_session: first_session(),
            trust: options.trust.clone(),
            max_client_links: options.max_client_links,
            heartbeat_phase: wall_clock_phase(options.timing.heartbeat_interval),
        });
        let (commands, commands_rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(1024);
        let initial = Snapshot {
            health: state.health_record(),
            counters: state.counters(),
            signals: BTreeMap::new(),
            routes: BTreeMap::new(),
        };
        let (snapshot_tx, snapshot) = watch::channel(initial);
        let data = DataPlane::new(options.data.clone());
        let mut services = tokio::task::JoinSet::new();
        services.spawn(data.clone().run_timer().instrument(span.clone()));
        let provided = crate::transfer::Provided::default();
        let load = Arc::new(Mutex::new(Load::default()));
        if let Ok(inbox) = data.listen(crate::transfer::PROTOCOL) {
            services.spawn(crate::transfer::serve(inbox, provided.clone()).instrument(span.clone()));
        }
        let leases = (identity.role == crate::signaler::Role::Worker).then(|| data.listen(crate::lease::PROTOCOL));
        if let Some(Ok(inbox)) = leases {
            let (commands, load) = (commands.clone(), load.clone());
            let show = move |holder: Option<PeerId>| {
                let status = load.lock().map(|mut l| {
                    l.leased = holder;
                    l.status()
                });
                status.is_ok_and(|s| commands.try_send(Command::SetStatus(s)).is_ok())
            };
            services.spawn(crate::lease::serve(inbox, events.subscribe(), show).instrument(span.clone()));
        }
        let driver = driver::Driver::new(driver::Parts {
            state,
            transport,
            chain,
            shared: shared.clone(),
            data: data.clone(),
            inbox,
            relays,
            commands: commands_rx,
            events: events.clone(),
            snapshot: snapshot_tx,
            max_message_bytes: options.max_message_bytes,
        });
        let task = tokio::spawn(driver.run().instrument(span));
        let (peer, room) = (identity.peer, identity.room);
        Ok(Self { peer, room, commands, snapshot, events, task: Some(task), data, provided, services, shared, load })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer
    }

    /// The room joined.
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// A watch that changes whenever the snapshot does.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// Every [`MeshEvent`] from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.events.subscribe()
    }

    /// Waits until `pred` holds for the snapshot, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Snapshot, NodeError> {
        let mut watch = self.snapshot.clone();
        let result = match tokio::time::timeout(timeout, watch.wait_for(pred)).await {
            Ok(Ok(s)) => Ok(s.clone()),
            Ok(Err(_)) => Err(NodeError::Stopped),
            Err(_) => Err(NodeError::Timeout(timeout)),
        };
        result
    }

    /// Waits until this node holds `links` open links out of `links` expected (a full mesh of
    /// `links + 1` workers), at most `timeout`.
    pub async fn wait_links(&self, links: usize, timeout: Duration) -> Result<Snapshot, NodeError> {
        self.wait_for(timeout, |s| s.health.links_up == links && s.health.links_expected == links).await
    }

    /// Changes this worker's record (status, metadata); the room learns of it.
    pub async fn set_record(&self, record: WorkerRecord) -> Result<(), NodeError> {
        self.commands.send(Command::SetRecord(record)).await.map_err(|_| NodeError::Stopped)
    }

    /// Marks this worker busy (its record shows `busy`, whatever its lease) or not (`reserved`
    /// while a lease is held, else `available`).
    pub async fn set_busy(&self, busy: bool) -> Result<(), NodeError> {
        let status = self.load.lock().map(|mut l| {
            l.busy = busy;
            l.status()
        });
        let status = status.map_err(|_| NodeError::Stopped)?;
        self.commands.send(Command::SetStatus(status)).await.map_err(|_| NodeError::Stopped)
    }

    /// Sets metadata `key` of this worker's record to `value` (`null` removes it); the rest of
    /// the record stays.
    pub async fn set_metadata(&self, key: &str, value: serde_json::Value) -> Result<(), NodeError> {
        self.commands.send(Command::SetMetadata(key.to_string(), value)).await.map_err(|_| NodeError::Stopped)
    }

    /// The peer holding this worker's lease now, if any.
    pub fn lease_holder(&self) -> Option<PeerId> {
        self.load.lock().ok().and_then(|l| l.leased.clone())
    }

    /// Asks the admin for the workers matching `filter` (docs/BEHAVIOUR.md 23). The query waits,
    /// within `timeout`, for a verified admin and an open link to it, and follows an admin change.
    pub async fn query_registry(&self, filter: RegistryFilter, timeout: Duration) -> Result<RegistryPage, NodeError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::QueryRegistry { filter, timeout, reply };
        self.commands.send(command).await.map_err(|_| NodeError::Stopped)?;
        // The driver forgets the query at `timeout`; the margin lets its answer win a tie.
        match tokio::time::timeout(timeout + Duration::from_millis(50), rx).await {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(_)) if self.task.as_ref().is_some_and(|t| t.is_finished()) => Err(NodeError::Stopped),
            Ok(Err(_)) | Err(_) => Err(NodeError::NoAdmin { waited: timeout, missing: self.admin_missing() }),
        }
    }

    /// Why this node cannot reach its admin now, in words (for errors).
    fn admin_missing(&self) -> String {
        let health = self.snapshot().health;
        let Some(admin) = health.admin.clone() else { return "no admin known yet".into() };
        if health.role == crate::NodeRole::Admin {
            return "this node is the admin, yet the query was not answered".into();
        }
        let link = health.peers.iter().find(|p| p.peer == admin).map(|p| p.state);
        match (link, health.admin_verified) {
            (Some(crate::LinkStatus::Up), true) => format!("admin {admin} is linked and verified but did not answer"),
            (Some(crate::LinkStatus::Up), false) => {
                format!("admin {admin} is linked but not verified (no admin_verify_ack naming itself)")
            }
            (state, _) => format!("no open link to admin {admin} (link {})", state.map_or("none", |s| s.as_str())),
        }
    }

    /// Leaves gracefully: tells the room, closes links, ends every task (bounded in time).
    pub async fn leave(mut self) {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Leave { done }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                tracing::warn!(peer = %self.peer, "driver did not stop in time; aborting it");
                task.abort();
            }
        }
        self.data.stop();
        self.services.shutdown().await;
    }

    /// Ends the node's task at once: no goodbye to the room, no word to the rendezvous. The
    /// transports still tear their links down as they are dropped (a WebRTC link sends its BYE,
    /// a memory link fails its peer at once), so peers learn of it promptly; a silent death is a
    /// process killed (SIGKILL) or one whose packets stop.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.services.abort_all();
        self.data.stop();
    }
}

/// The last instant on the wall clock's grid of whole `interval`s since the Unix epoch: every
/// node of a room (clocks in step) derives the same grid, whenever it started. Heartbeats go on
/// it, and a transport may put its own periodic work there too, to share their wake-ups.
pub fn wall_clock_phase(interval: std::time::Duration) -> Option<std::time::Instant> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    let into = since_epoch.as_nanos().checked_rem(interval.as_nanos())?;
    std::time::Instant::now().checked_sub(std::time::Duration::from_nanos(into as u64))
}

/// The first session number of a node started now: microseconds since the Unix epoch, so a
/// restarted process (same peer id) never reuses its predecessor's session ids. (Its record's
/// first version is the same clock in milliseconds.)
fn first_session() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}
