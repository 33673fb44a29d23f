//! Room membership and forwarding, behind [`RoomStore`]: the in-process [`MemoryRoomStore`] (the
//! default, no set-up), or [`crate::redis_store::RedisRoomStore`], shared by several servers.

use crate::protocol::{ErrorCode, ServerMsg};
use mesh_core::{MemberInfo, PeerId, Role, RoomId, Signal};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The outgoing queue of one connection, with an id unique per server.
#[derive(Clone)]
pub struct Conn {
    /// Connection id.
    pub id: u64,
    /// Frames for the connection's writer; full means a slow peer, and frames are dropped.
    pub tx: mpsc::Sender<ServerMsg>,
    /// Notified when the store lost this registration (a shared store that forgot this server):
    /// the connection closes so the peer registers again.
    pub lost: Arc<tokio::sync::Notify>,
}

/// Where rooms live.
#[async_trait::async_trait]
pub trait RoomStore: Send + Sync {
    /// Adds `peer` to `room` (created on first registration) and tells the other members. The
    /// first worker to join an empty room (not a `rejoin`) becomes its admin by the mesh's rule,
    /// so until an admin announces itself, later registrations are pointed at it.
    async fn join(
        &self,
        room: &RoomId,
        member: MemberInfo,
        role: Role,
        rejoin: bool,
        conn: Conn,
        max_workers: usize,
    ) -> Result<(Vec<MemberInfo>, Option<PeerId>), ErrorCode>;
    /// The registration answer of `peer` (on `conn_id`) is queued: what the store held for it
    /// meanwhile may follow now (the answer is always a newcomer's first frame).
    async fn answered(&self, _room: &RoomId, _peer: &PeerId, _conn_id: u64) {}
    /// Removes `peer` if `conn_id` still holds it, tells the others; empty rooms are removed.
    async fn leave(&self, room: &RoomId, peer: &PeerId, conn_id: u64);
    /// Hands `signal` from `from` to `to` in the same room.
    async fn forward(&self, room: &RoomId, from: &PeerId, to: &PeerId, signal: Signal) -> Result<(), ErrorCode>;
    /// Records `peer` as the room's admin and tells every member (when it changes).
    async fn set_admin(&self, room: &RoomId, peer: &PeerId);
    /// Forgets `peer` as the room's admin, if it is.
    async fn withdraw_admin(&self, room: &RoomId, peer: &PeerId);
    /// Number of rooms.
    async fn room_count(&self) -> usize;
    /// True when the store can serve (a shared store is reachable).
    fn healthy(&self) -> bool {
        true
    }
}

/// A registered connection as a store delivers to it: frames for a newcomer are held until its
/// registration answer is queued, so that answer is always its first frame.
pub struct Outbox {
    /// The connection.
    pub conn: Conn,
    /// Frames waiting for the registration answer (`None` once it is queued).
    held: Option<Vec<ServerMsg>>,
}

impl Outbox {
    /// The outbox of a connection whose registration answer is not queued yet.
    pub fn registering(conn: Conn) -> Self {
        Self { conn, held: Some(Vec::new()) }
    }

    /// Queues `msg` for `peer`, or holds it until the registration answer has gone out.
    pub fn send(&mut self, peer: &PeerId, msg: ServerMsg) {
        match &mut self.held {
            Some(held) => held.push(msg),
            None => {
                if self.conn.tx.try_send(msg).is_err() {
                    tracing::warn!(%peer, "outgoing queue full; frame dropped");
                }
            }
        }
    }

    /// The registration answer is queued: what was held follows it.
    pub fn release(&mut self, peer: &PeerId) {
        for msg in self.held.take().unwrap_or_default() {
            self.send(peer, msg);
        }
    }
}

struct Member {
    info: MemberInfo,
    role: Role,
    out: Outbox,
}

#[derive(Default)]
struct Room {
    members: BTreeMap<PeerId, Member>,
    admin: Option<PeerId>,
    /// The first worker of an empty room: admin by the mesh's rule, until one announces itself.
    first: Option<PeerId>,
}

impl Room {
    fn tell_others(&mut self, except: &PeerId, msg: &ServerMsg) {
        for (peer, m) in self.members.iter_mut() {
            if peer != except {
                m.out.send(peer, msg.clone());
            }
        }
    }
}

/// Rooms in this process.
#[derive(Default)]
pub struct MemoryRoomStore {
    rooms: Mutex<HashMap<RoomId, Room>>,
}

impl MemoryRoomStore {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl RoomStore for MemoryRoomStore {
    async fn join(
        &self,
        room_id: &RoomId,
        member: MemberInfo,
        role: Role,
        rejoin: bool,
        conn: Conn,
        max_workers: usize,
    ) -> Result<(Vec<MemberInfo>, Option<PeerId>), ErrorCode> {
        let mut rooms = self.rooms();
        let room = rooms.entry(room_id.clone()).or_default();
        if room.members.contains_key(&member.peer) {
            return Err(ErrorCode::DuplicatePeer);
        }
        if role == Role::Worker && room.members.values().filter(|m| m.role == Role::Worker).count() >= max_workers {
            if room.members.is_empty() {
                rooms.remove(room_id);
            }
            return Err(ErrorCode::RoomFull);
        }
        let workers = room.members.values().filter(|m| m.role == Role::Worker).map(|m| m.info.clone()).collect();
        if role == Role::Worker {
            room.tell_others(&member.peer, &ServerMsg::PeerJoined { member: member.clone() });
        }
        let admin = room.admin.clone().or_else(|| room.first.clone());
        let no_workers = !room.members.values().any(|m| m.role == Role::Worker);
        if role == Role::Worker && !rejoin && no_workers && room.admin.is_none() {
            room.first = Some(member.peer.clone());
        }
        room.members.insert(member.peer.clone(), Member { info: member, role, out: Outbox::registering(conn) });
        Ok((workers, admin))
    }

    async fn answered(&self, room_id: &RoomId, peer: &PeerId, conn_id: u64) {
        let mut rooms = self.rooms();
        let member = rooms.get_mut(room_id).and_then(|r| r.members.get_mut(peer)).filter(|m| m.out.conn.id == conn_id);
        if let Some(m) = member {
            m.out.release(peer);
        }
    }

    async fn leave(&self, room_id: &RoomId, peer: &PeerId, conn_id: u64) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(room_id) else { return };
        if room.members.get(peer).is_none_or(|m| m.out.conn.id != conn_id) {
            return;
        }
        room.members.remove(peer);
        if room.admin.as_ref() == Some(peer) {
            room.admin = None;
        }
        if room.first.as_ref() == Some(peer) {
            room.first = None;
        }
        room.tell_others(peer, &ServerMsg::PeerLeft { peer: peer.clone() });
        if room.members.is_empty() {
            rooms.remove(room_id);
        }
    }

    async fn forward(&self, room_id: &RoomId, from: &PeerId, to: &PeerId, signal: Signal) -> Result<(), ErrorCode> {
        let mut rooms = self.rooms();
        let target = rooms.get_mut(room_id).and_then(|r| r.members.get_mut(to)).ok_or(ErrorCode::UnknownPeer)?;
        target.out.send(to, ServerMsg::Signal { from: from.clone(), signal });
        Ok(())
    }

    async fn set_admin(&self, room_id: &RoomId, peer: &PeerId) {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get_mut(room_id) {
            let changed = room.admin.as_ref() != Some(peer);
            room.admin = Some(peer.clone());
            room.first = None;
            if changed {
                room.tell_others(peer, &ServerMsg::Admin { peer: peer.clone() });
            }
        }
    }

    async fn withdraw_admin(&self, room_id: &RoomId, peer: &PeerId) {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get_mut(room_id) {
            if room.admin.as_ref() == Some(peer) {
                room.admin = None;
            }
        }
    }

    async fn room_count(&self) -> usize {
        self.rooms().len()
    }
}
