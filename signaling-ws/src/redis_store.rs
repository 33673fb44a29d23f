//! [`RedisRoomStore`]: rooms shared by every `mesh-signal` instance on one Redis.
//!
//! - **State** (atomic Lua scripts): per room a hash of members (`mesh:r:{room}:m`: peer → its
//!   info, role, instance and connection), the set of its workers (the room limit is checked in
//!   the same script that adds a member, so it holds under concurrent registrations anywhere),
//!   the admin and the first worker; the set of rooms.
//! - **Delivery** (pub/sub): each instance holds its own connections. Join, leave and admin
//!   notices go out on `mesh:r:{room}:ev` and every instance hands them to its local members; a
//!   signal for a peer on another instance goes to that instance's channel `mesh:to:{instance}`.
//!   Every change to a room takes the next number of the room's sequence (`mesh:r:{room}:seq`),
//!   in the same script; a notice reaches only members registered before its change, so a late
//!   one cannot contradict a newcomer's registration answer.
//! - **Leases**: each instance refreshes `mesh:inst:{id}` (expiring after `lease_ms`) and lists
//!   its members in `mesh:inst:{id}:m`. Once an instance's lease has expired, its peers may
//!   register again on another instance, taking their registrations over (they never left, so
//!   nobody is told they did, and their mesh links are untouched). Those that have not come back
//!   another two leases later are removed by the sweep of any instance, and `peer_left` goes out
//!   for them. An instance that finds its own lease gone (Redis restarted, or it was cut off long
//!   enough to be swept) closes its connections, so their peers register again.

mod lease;
mod scripts;

use crate::protocol::{ErrorCode, ServerMsg};
use crate::store::{Conn, Outbox, RoomStore, Sender};
use mesh_core::{MemberInfo, PeerId, Role, RoomId, Signal};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A member as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    info: MemberInfo,
    role: Role,
    inst: String,
    conn: String,
}

/// A room notice.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Notice {
    Joined { member: MemberInfo },
    Left { peer: PeerId },
    Admin { peer: PeerId },
}

/// A notice as published to every instance, with the room's sequence number of the change it
/// tells (a member registered at or after it is not told: its registration answer says so).
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    seq: u64,
    #[serde(flatten)]
    notice: Notice,
}

/// A signal for a peer held by another instance.
#[derive(Debug, Serialize, Deserialize)]
struct Forward {
    room: RoomId,
    from: PeerId,
    to: PeerId,
    signal: Signal,
    #[serde(default)]
    key: Option<String>,
}

fn room_key(room: &RoomId, what: &str) -> String {
    format!("mesh:r:{room}:{what}")
}

/// Rooms on a Redis shared by several servers.
pub struct RedisRoomStore {
    inst: String,
    redis: ConnectionManager,
    client: redis::Client,
    local: Mutex<HashMap<RoomId, BTreeMap<PeerId, Outbox>>>,
    healthy: AtomicBool,
    lease: Duration,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Instances seen without a lease, and since when: swept two leases later.
    dead: Mutex<HashMap<String, tokio::time::Instant>>,
}

impl RedisRoomStore {
    /// Connects to `url` (`redis://host:port`) and starts this instance's lease, sweeper and
    /// subscriber; `lease` is how long a silent instance keeps its members.
    pub async fn connect(url: &str, lease: Duration) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url}: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let redis = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| format!("redis {url}: no connection within 5 s"))?
            .map_err(|e| format!("redis {url}: {e}"))?;
        let inst = format!("{:016x}", rand::random::<u64>());
        let store = Arc::new(Self {
            inst,
            redis,
            client,
            local: Mutex::new(HashMap::new()),
            healthy: AtomicBool::new(true),
            lease,
            tasks: Mutex::new(Vec::new()),
            dead: Mutex::new(HashMap::new()),
        });
        store.refresh_lease(false).await;
        let tasks = vec![
            tokio::spawn(lease::lease_loop(Arc::downgrade(&store))),
            tokio::spawn(subscribe_loop(Arc::downgrade(&store))),
        ];
        *store.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        tracing::info!(inst = %store.inst, %url, "room store on redis");
        Ok(store)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, BTreeMap<PeerId, Outbox>>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    async fn publish(&self, channel: String, payload: String) {
        let res: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut self.conn()).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "redis publish failed");
        }
    }

    async fn notify(&self, room: &RoomId, seq: u64, notice: Notice) {
        let Ok(payload) = serde_json::to_string(&Published { seq, notice }) else { return };
        self.publish(room_key(room, "ev"), payload).await;
    }

    /// Hands a notice to this instance's members of `room` (all but the peer it is about).
    fn deliver(&self, room: &RoomId, Published { seq, notice }: Published) {
        let (about, msg) = match notice {
            Notice::Joined { member } => (member.peer.clone(), ServerMsg::PeerJoined { member }),
            Notice::Left { peer } => (peer.clone(), ServerMsg::PeerLeft { peer }),
            Notice::Admin { peer } => (peer.clone(), ServerMsg::Admin { peer }),
        };
        let mut local = self.local();
        for (peer, l) in local.get_mut(room).into_iter().flatten() {
            if peer != &about {
                l.send(peer, seq, msg.clone());
            }
        }
    }

    fn deliver_signal(&self, f: Forward) {
        let mut local = self.local();
        if let Some(l) = local.get_mut(&f.room).and_then(|r| r.get_mut(&f.to)) {
            l.send(&f.to, 0, ServerMsg::Signal { from: f.from, signal: f.signal, key: f.key });
        }
    }

    fn stop(&self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

impl Drop for RedisRoomStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Receives notices and forwarded signals; subscribes again (with backoff) when Redis goes away.
async fn subscribe_loop(store: Weak<RedisRoomStore>) {
    use futures::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = store.upgrade() else { return };
        let (client, own) = (s.client.clone(), format!("mesh:to:{}", s.inst));
        drop(s);
        let subscribed = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&own).await?;
            ps.psubscribe("mesh:r:*:ev").await?;
            redis::RedisResult::Ok(ps)
        };
        let mut ps = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(ps)) => ps,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Some(s) = store.upgrade() else { return };
            let Ok(payload) = msg.get_payload::<String>() else { continue };
            let channel = msg.get_channel_name();
            if channel == own {
                match serde_json::from_str::<Forward>(&payload) {
                    Ok(f) => s.deliver_signal(f),
                    Err(e) => tracing::warn!(error = %e, "malformed forwarded signal ignored"),
                }
            } else if let Some(room) = channel.strip_prefix("mesh:r:").and_then(|r| r.strip_suffix(":ev")) {
                match (RoomId::new(room), serde_json::from_str::<Published>(&payload)) {
                    (Ok(room), Ok(notice)) => s.deliver(&room, notice),
                    _ => tracing::warn!(channel, "malformed room notice ignored"),
                }
            }
        }
        tracing::warn!("redis subscription lost; subscribing again");
    }
}

#[async_trait::async_trait]
impl RoomStore for RedisRoomStore {
    async fn join(
        &self,
        room: &RoomId,
        member: MemberInfo,
        role: Role,
        rejoin: bool,
        conn: Conn,
        max_workers: usize,
    ) -> Result<(Vec<MemberInfo>, Option<PeerId>), ErrorCode> {
        let entry = Entry { info: member.clone(), role, inst: self.inst.clone(), conn: conn.id.to_string() };
        let entry = serde_json::to_string(&entry).map_err(|_| ErrorCode::InvalidMessage)?;
        let peer = member.peer.clone();
        // Held locally first: a notice published meanwhile must not miss the newcomer. It waits
        // for the registration answer, which must be the newcomer's first frame.
        let out = Outbox::registering(conn.clone());
        self.local().entry(room.clone()).or_default().insert(peer.clone(), out);
        let joined =
            scripts::join(&mut self.conn(), room, &peer, &entry, role, rejoin, max_workers, &self.inst, conn.id).await;
        let (members, admin, seq) = match joined {
            Ok(Ok(answer)) => answer,
            Ok(Err(code)) | Err(code) => {
                let mut local = self.local();
                if let Some(r) = local.get_mut(room) {
                    if r.get(&peer).is_some_and(|l| l.conn.id == conn.id) {
                        r.remove(&peer);
                    }
                }
                return Err(code);
            }
        };
        if let Some(out) = self.local().get_mut(room).and_then(|r| r.get_mut(&peer)).filter(|l| l.conn.id == conn.id) {
            out.registered_at(seq);
        }
        if role == Role::Worker {
            self.notify(room, seq, Notice::Joined { member }).await;
        }
        Ok((members, admin))
    }

    async fn answered(&self, room: &RoomId, peer: &PeerId, conn_id: u64) {
        let mut local = self.local();
        if let Some(l) = local.get_mut(room).and_then(|r| r.get_mut(peer)).filter(|l| l.conn.id == conn_id) {
            l.release(peer);
        }
    }

    async fn leave(&self, room: &RoomId, peer: &PeerId, conn_id: u64) {
        {
            let mut local = self.local();
            if let Some(r) = local.get_mut(room) {
                if r.get(peer).is_some_and(|l| l.conn.id == conn_id) {
                    r.remove(peer);
                }
                if r.is_empty() {
                    local.remove(room);
                }
            }
        }
        if let Some(seq) = scripts::leave(&mut self.conn(), room, peer, &self.inst, &conn_id.to_string()).await {
            self.notify(room, seq, Notice::Left { peer: peer.clone() }).await;
        }
    }

    async fn forward(&self, room: &RoomId, from: Sender, to: &PeerId, signal: Signal) -> Result<(), ErrorCode> {
        let entry: Option<String> = redis::cmd("HGET")
            .arg(room_key(room, "m"))
            .arg(to.as_str())
            .query_async(&mut self.conn())
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        let entry: Entry = entry.and_then(|e| serde_json::from_str(&e).ok()).ok_or(ErrorCode::UnknownPeer)?;
        let f = Forward { room: room.clone(), from: from.peer, to: to.clone(), signal, key: from.key };
        if entry.inst == self.inst {
            self.deliver_signal(f);
        } else if let Ok(payload) = serde_json::to_string(&f) {
            self.publish(format!("mesh:to:{}", entry.inst), payload).await;
        }
        Ok(())
    }

    async fn workers(&self, room: &RoomId) -> Result<Vec<MemberInfo>, ErrorCode> {
        let entries: Vec<String> = redis::cmd("HVALS")
            .arg(room_key(room, "m"))
            .query_async(&mut self.conn())
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        let entries = entries.iter().filter_map(|e| serde_json::from_str::<Entry>(e).ok());
        Ok(entries.filter(|e| e.role == Role::Worker).map(|e| e.info).collect())
    }

    async fn set_admin(&self, room: &RoomId, peer: &PeerId, epoch: u64) -> bool {
        match scripts::set_admin(&mut self.conn(), room, peer, epoch).await {
            scripts::AdminSet::Changed(seq) => {
                self.notify(room, seq, Notice::Admin { peer: peer.clone() }).await;
                true
            }
            scripts::AdminSet::Same => true,
            scripts::AdminSet::Refused => false,
        }
    }

    async fn withdraw_admin(&self, room: &RoomId, peer: &PeerId) {
        scripts::withdraw_admin(&mut self.conn(), room, peer).await;
    }

    async fn room_count(&self) -> usize {
        redis::cmd("SCARD").arg("mesh:rooms").query_async(&mut self.conn()).await.unwrap_or(0)
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}
