//! Room membership and forwarding, behind [`RoomStore`]: the in-process [`MemoryRoomStore`] (the
//! default, no set-up), or [`crate::redis_store::RedisRoomStore`], shared by several servers.

use crate::protocol::{ErrorCode, ServerMsg};
use mesh_core::{MemberInfo, PeerId, Role, RoomId, Signal};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The sender of a signal: its peer id and the key it registered.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The sender's peer id.
    pub peer: PeerId,
    /// The key it registered, if any.
    pub key: Option<String>,
}

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
    async fn forward(&self, room: &RoomId, from: Sender, to: &PeerId, signal: Signal) -> Result<(), ErrorCode>;
    /// The room's workers, with the keys they registered.
    async fn workers(&self, room: &RoomId) -> Result<Vec<MemberInfo>, ErrorCode>;
    /// Records `peer` as the room's admin at `epoch` and tells every member (when it changes).
    /// False (nothing changed) when another admin of a higher epoch is named.
    async fn set_admin(&self, room: &RoomId, peer: &PeerId, epoch: u64) -> bool;
    /// Forgets `peer` as the room's admin, if it is.
    async fn withdraw_admin(&self, room: &RoomId, peer: &PeerId);
    /// Number of rooms.
    async fn room_count(&self) -> usize;
    /// True when the store can serve (a shared store is reachable).
    fn healthy(&self) -> bool {
        true
    }
}

/// A registered connection as a store delivers to it. Frames for a newcomer are held until its
/// registration answer is queued, so that answer is always its first frame. A room notice may
/// carry the room's sequence number (a shared store's notices can arrive late): the connection
/// gets only notices newer than its own registration, which its answer already reflects.
/// Sequence 0 means "always deliver" (signals, and every frame of a store without sequences).
pub struct Outbox {
    /// The connection.
    pub conn: Conn,
    /// Frames waiting for the registration answer, with their sequence (`None` once it is queued).
    held: Option<Vec<(u64, ServerMsg)>>,
    /// The room's sequence number at this connection's registration.
    since: u64,
}

impl Outbox {
    /// The outbox of a connection whose registration answer is not queued yet.
    pub fn registering(conn: Conn) -> Self {
        Self { conn, held: Some(Vec::new()), since: 0 }
    }

    /// The room's sequence number at this registration: older notices are not delivered.
    pub fn registered_at(&mut self, seq: u64) {
        self.since = seq;
    }

    /// Queues `msg` (of room sequence `seq`, or 0) for `peer`, or holds it until the
    /// registration answer has gone out.
    pub fn send(&mut self, peer: &PeerId, seq: u64, msg: ServerMsg) {
        match &mut self.held {
            Some(held) => held.push((seq, msg)),
            None if seq != 0 && seq <= self.since => {} // the registration answer reflected it
            None => {
                if self.conn.tx.try_send(msg).is_err() {
                    tracing::warn!(%peer, "outgoing queue full; frame dropped");
                }
            }
        }
    }

    /// The registration answer is queued: what was held follows it.
    pub fn release(&mut self, peer: &PeerId) {
        for (seq, msg) in self.held.take().unwrap_or_default() {
            self.send(peer, seq, msg);
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
    /// The epoch of the last admin named (kept when it leaves: an older proof stays refused).
    admin_epoch: u64,
    /// The first worker of an empty room: admin by the mesh's rule, until one announces itself.
    first: Option<PeerId>,
}

impl Room {
    fn tell_others(&mut self, except: &PeerId, msg: &ServerMsg) {
        for (peer, m) in self.members.iter_mut() {
            if peer != except {
                m.out.send(peer, 0, msg.clone());
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

    async fn forward(&self, room_id: &RoomId, from: Sender, to: &PeerId, signal: Signal) -> Result<(), ErrorCode> {
        let mut rooms = self.rooms();
        let target = rooms.get_mut(room_id).and_then(|r| r.members.get_mut(to)).ok_or(ErrorCode::UnknownPeer)?;
        target.out.send(to, 0, ServerMsg::Signal { from: from.peer, signal, key: from.key });
        Ok(())
    }

    async fn workers(&self, room_id: &RoomId) -> Result<Vec<MemberInfo>, ErrorCode> {
        let rooms = self.rooms();
        let members = rooms.get(room_id).map(|r| r.members.values()).into_iter().flatten();
        Ok(members.filter(|m| m.role == Role::Worker).map(|m| m.info.clone()).collect())
    }

    async fn set_admin(&self, room_id: &RoomId, peer: &PeerId, epoch: u64) -> bool {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(room_id) else { return false };
        if room.admin.as_ref() != Some(peer) && epoch < room.admin_epoch {
            return false;
        }
        let changed = room.admin.as_ref() != Some(peer);
        room.admin = Some(peer.clone());
        room.admin_epoch = epoch;
        room.first = None;
        if changed {
            room.tell_others(peer, &ServerMsg::Admin { peer: peer.clone() });
        }
        true
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

#[cfg(test)]
mod tests {
    use super::{Conn, Outbox};
    use crate::protocol::ServerMsg;
    use mesh_core::PeerId;
    use std::sync::Arc;

    fn notice(peer: &str) -> ServerMsg {
        ServerMsg::PeerLeft { peer: PeerId::new(peer).unwrap() }
    }

    #[test]
    fn a_newcomer_gets_its_answer_first_and_only_notices_newer_than_its_registration() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut out = Outbox::registering(Conn { id: 1, tx, lost: Arc::default() });
        let me = PeerId::new("b").unwrap();
        out.send(&me, 3, notice("late")); // published before b registered, arrives after
        out.send(&me, 6, notice("held")); // newer, but b's answer is not queued yet
        out.registered_at(5);
        assert!(rx.try_recv().is_err(), "nothing before the registration answer");
        out.release(&me);
        out.send(&me, 4, notice("stale"));
        out.send(&me, 0, notice("signal"));
        out.send(&me, 7, notice("new"));
        let got: Vec<ServerMsg> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, vec![notice("held"), notice("signal"), notice("new")]);
    }
}
