//! The signaling server as the nodes see it: who is registered (in order), the records they
//! registered with, and the admin it was told of. It can go down, losing all of it.

use mesh_core::{MemberInfo, PeerId, Role, WorkerRecord};

/// One registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The peer.
    pub peer: PeerId,
    /// Which incarnation of the peer's process holds the connection.
    pub inc: u32,
    /// Worker or client.
    pub role: Role,
    /// The record it registered with (workers).
    pub record: Option<WorkerRecord>,
}

/// The rendezvous.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// False while the server is down.
    pub up: bool,
    /// Registrations in order.
    pub registered: Vec<Registration>,
    /// The admin it was last told of.
    pub admin: Option<PeerId>,
    /// The first worker of an empty room, named admin until one announces itself.
    pub first: Option<PeerId>,
    /// When it last went down (ms), for the nodes' reconnect backoff.
    pub down_since: u64,
}

impl Server {
    /// A server that is up and empty.
    pub fn new() -> Self {
        Self { up: true, ..Self::default() }
    }

    /// True when `peer`'s incarnation `inc` holds a registration.
    pub fn has(&self, peer: &PeerId, inc: u32) -> bool {
        self.registered.iter().any(|r| &r.peer == peer && r.inc == inc)
    }

    /// True when `peer` is registered at all (any incarnation).
    pub fn holds_name(&self, peer: &PeerId) -> bool {
        self.registered.iter().any(|r| &r.peer == peer)
    }

    /// The workers registered, other than `peer`, as members.
    pub fn members_for(&self, peer: &PeerId) -> Vec<MemberInfo> {
        self.registered
            .iter()
            .filter(|r| &r.peer != peer)
            .filter_map(|r| r.record.clone().map(|rec| MemberInfo::new(r.peer.clone(), rec)))
            .collect()
    }

    /// Removes `peer`'s registration; returns whether it had one (of incarnation `inc`).
    pub fn remove(&mut self, peer: &PeerId, inc: u32) -> bool {
        let before = self.registered.len();
        self.registered.retain(|r| !(&r.peer == peer && r.inc == inc));
        let removed = self.registered.len() != before;
        if removed && self.admin.as_ref() == Some(peer) {
            self.admin = None;
        }
        if removed && self.first.as_ref() == Some(peer) {
            self.first = None;
        }
        removed
    }

    /// Everyone registered except `peer`.
    pub fn others(&self, peer: &PeerId) -> Vec<(PeerId, u32)> {
        self.registered.iter().filter(|r| &r.peer != peer).map(|r| (r.peer.clone(), r.inc)).collect()
    }

    /// Workers registered.
    pub fn workers(&self) -> usize {
        self.registered.iter().filter(|r| r.role == Role::Worker).count()
    }
}
