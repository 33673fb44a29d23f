//! In-memory plugins: a [`MemoryNetwork`] that plays both the signaling server (rooms,
//! registration, notices, forwarding) and the wire (link pairs), with fault injection:
//! cut a pair of peers or isolate one, close links, delay or drop signals, drop a peer's
//! signaling connection. Registered as the `memory` transport and the `memory` signaler.

mod link;
mod signaler;
mod transport;

pub use link::MemoryLink;
pub use signaler::MemorySignaler;
pub use transport::MemoryTransport;

use crate::id::{PeerId, RoomId};
use crate::room::MemberInfo;
use crate::signaler::{Inbound, Role, SignalingEvent};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// The plugin name of both memory plugins.
pub const NAME: &str = "memory";

struct Member {
    role: Role,
    info: MemberInfo,
    inbox: mpsc::Sender<Inbound>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, BTreeMap<PeerId, Member>>,
    admins: HashMap<RoomId, PeerId>,
    pending: HashMap<u64, link::Pending>,
    live: Vec<Weak<link::End>>,
    cut: HashSet<(PeerId, PeerId)>,
    dropped_signals_to: HashSet<PeerId>,
    silenced: HashSet<PeerId>,
    signal_delay: Duration,
    next_id: u64,
}

/// A simulated network: signaling rendezvous plus links, with faults on demand.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryNetwork {
    /// A fresh, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide network used when no other is provided in [`crate::Resources`].
    pub fn global() -> Self {
        static GLOBAL: OnceLock<MemoryNetwork> = OnceLock::new();
        GLOBAL.get_or_init(MemoryNetwork::new).clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    /// Cuts `a` from `b`: traffic on their links vanishes and new attempts never open.
    pub fn cut(&self, a: &PeerId, b: &PeerId) {
        let mut inner = self.lock();
        inner.cut.insert((a.clone(), b.clone()));
        inner.cut.insert((b.clone(), a.clone()));
    }

    /// Cuts `a` from every peer currently known to the network.
    pub fn isolate(&self, a: &PeerId) {
        let peers: Vec<PeerId> = {
            let inner = self.lock();
            inner.rooms.values().flat_map(|r| r.keys().cloned()).collect()
        };
        for p in peers.iter().filter(|p| *p != a) {
            self.cut(a, p);
        }
    }

    /// `a` goes silent, as a process that is SIGSTOPped or loses its cable: its traffic
    /// vanishes, and its links and its rendezvous registration, even when its node is dropped,
    /// tell nobody. Peers learn of it only from the silence (their heartbeat timeout).
    pub fn silence(&self, a: &PeerId) {
        self.isolate(a);
        self.lock().silenced.insert(a.clone());
    }

    /// True if `a` was silenced.
    pub(crate) fn is_silenced(&self, a: &PeerId) -> bool {
        self.lock().silenced.contains(a)
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Is traffic from `a` to `b` cut?
    pub fn is_cut(&self, a: &PeerId, b: &PeerId) -> bool {
        self.lock().cut.contains(&(a.clone(), b.clone()))
    }

    /// Closes every open link between `a` and `b`; both sides see it closed.
    pub fn close_links(&self, a: &PeerId, b: &PeerId) {
        let ends: Vec<Arc<link::End>> = self.lock().live.iter().filter_map(Weak::upgrade).collect();
        for end in ends {
            if end.connects(a, b) {
                end.close_both("closed by fault injection");
            }
        }
    }

    /// Signals addressed to `peer` are silently lost (or delivered again with `false`).
    pub fn drop_signals_to(&self, peer: &PeerId, drop: bool) {
        let mut inner = self.lock();
        if drop {
            inner.dropped_signals_to.insert(peer.clone());
        } else {
            inner.dropped_signals_to.remove(peer);
        }
    }

    /// Every signal is delivered after `delay`.
    pub fn delay_signals(&self, delay: Duration) {
        self.lock().signal_delay = delay;
    }

    /// Drops `peer`'s signaling registration as a server would when its connection dies.
    pub fn disconnect(&self, room: &RoomId, peer: &PeerId) {
        self.deregister(room, peer);
    }

    /// Peers registered in `room`.
    pub fn members(&self, room: &RoomId) -> Vec<PeerId> {
        self.lock().rooms.get(room).map(|r| r.keys().cloned().collect()).unwrap_or_default()
    }

    fn register(
        &self,
        room: &RoomId,
        role: Role,
        info: MemberInfo,
        inbox: mpsc::Sender<Inbound>,
    ) -> Result<(Vec<MemberInfo>, Option<PeerId>), String> {
        let mut inner = self.lock();
        let admin = inner.admins.get(room).cloned();
        let members = inner.rooms.entry(room.clone()).or_default();
        if members.contains_key(&info.peer) {
            return Err(format!("peer id {} is already registered in room {room}", info.peer));
        }
        let workers: Vec<MemberInfo> =
            members.values().filter(|m| m.role == Role::Worker).map(|m| m.info.clone()).collect();
        if role == Role::Worker {
            for m in members.values() {
                let event = SignalingEvent::PeerJoined(info.clone());
                let _ = m.inbox.try_send(Inbound { path: NAME, event });
            }
        }
        members.insert(info.peer.clone(), Member { role, info, inbox });
        Ok((workers, admin))
    }

    fn set_admin(&self, room: &RoomId, peer: &PeerId) {
        let mut inner = self.lock();
        inner.admins.insert(room.clone(), peer.clone());
        for (other, m) in inner.rooms.get(room).into_iter().flatten() {
            if other != peer {
                let _ = m.inbox.try_send(Inbound { path: NAME, event: SignalingEvent::Admin(peer.clone()) });
            }
        }
    }

    fn withdraw_admin(&self, room: &RoomId, peer: &PeerId) {
        let mut inner = self.lock();
        if inner.admins.get(room) == Some(peer) {
            inner.admins.remove(room);
        }
    }

    fn deregister(&self, room: &RoomId, peer: &PeerId) {
        let mut inner = self.lock();
        if inner.admins.get(room) == Some(peer) {
            inner.admins.remove(room);
        }
        let Some(members) = inner.rooms.get_mut(room) else { return };
        if members.remove(peer).is_none() {
            return;
        }
        for m in members.values() {
            let _ = m.inbox.try_send(Inbound { path: NAME, event: SignalingEvent::PeerLeft(peer.clone()) });
        }
        if members.is_empty() {
            inner.rooms.remove(room);
        }
    }

    /// Forwards a signal within `room`, honouring drops and delays. False if `to` is not there.
    fn forward(&self, room: &RoomId, from: &PeerId, to: &PeerId, signal: crate::Signal) -> bool {
        let (inbox, delay, dropped, key) = {
            let inner = self.lock();
            let Some(m) = inner.rooms.get(room).and_then(|r| r.get(to)) else { return false };
            let key = inner.rooms.get(room).and_then(|r| r.get(from)).and_then(|m| m.info.key.clone());
            (m.inbox.clone(), inner.signal_delay, inner.dropped_signals_to.contains(to), key)
        };
        if dropped {
            return true;
        }
        let event = SignalingEvent::Signal { from: from.clone(), signal, key };
        let inbound = Inbound { path: NAME, event };
        if delay.is_zero() {
            let _ = inbox.try_send(inbound);
        } else {
            // Bounded by `delay`; ends on its own.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inbox.send(inbound).await;
            });
        }
        true
    }
}

fn network_from(resources: &crate::Resources) -> MemoryNetwork {
    resources.get::<MemoryNetwork>().map(|n| (*n).clone()).unwrap_or_else(MemoryNetwork::global)
}

inventory::submit! {
    crate::TransportPlugin {
        name: NAME,
        description: "in-process links with fault injection (tests, demos)",
        build: |ctx| {
            let timeout = transport::connect_timeout(&ctx.section).map_err(|why| crate::PluginError::Config { plugin: NAME, why })?;
            let me = ctx.config.peer_id().map_err(|e| crate::PluginError::Config { plugin: NAME, why: e.to_string() })?;
            Ok(Arc::new(MemoryTransport::new(network_from(ctx.resources), me, timeout)))
        },
    }
}

inventory::submit! {
    crate::SignalerPlugin {
        name: NAME,
        description: "in-process signaling rendezvous with fault injection (tests, demos)",
        build: |ctx| Ok(Arc::new(MemorySignaler::new(network_from(ctx.resources)))),
    }
}
