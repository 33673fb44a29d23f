//! Leases: each server instance holds a lease in Redis, refreshed three times per lease; the
//! members of an instance whose lease expired two leases ago are swept (their rooms told), and
//! an instance that finds its own lease expired closes its connections so they register again.

use super::{scripts, Notice, RedisRoomStore};
use mesh_core::{PeerId, RoomId};
use std::sync::atomic::Ordering;
use std::sync::Weak;

/// Refreshes the lease and sweeps, three times per lease, while the store lives.
pub(super) async fn lease_loop(store: Weak<RedisRoomStore>) {
    loop {
        let Some(s) = store.upgrade() else { return };
        let every = s.lease / 3;
        s.refresh_lease(true).await;
        s.sweep().await;
        drop(s);
        tokio::time::sleep(every).await;
    }
}

impl RedisRoomStore {
    /// Refreshes this instance's lease. If it had expired (`check`), this instance's members
    /// may have been swept by another: every local connection is closed to register again.
    pub(super) async fn refresh_lease(&self, check: bool) {
        let key = format!("mesh:inst:{}", self.inst);
        let mut c = self.conn();
        let ttl = self.lease.as_millis() as u64;
        let res: redis::RedisResult<(Option<String>, i64)> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg("1")
            .arg("PX")
            .arg(ttl)
            .arg("GET")
            .cmd("SADD")
            .arg("mesh:insts")
            .arg(&self.inst)
            .query_async(&mut c)
            .await;
        match res {
            Ok((previous, _)) => {
                let was = self.healthy.swap(true, Ordering::Relaxed);
                if check && previous.is_none() {
                    tracing::warn!(inst = %self.inst, "this server's lease had expired; its peers register again");
                    self.drop_local();
                } else if !was {
                    tracing::info!("redis reachable again");
                }
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unreachable");
                }
            }
        }
    }

    /// Closes every local connection (their registrations are no longer in the store).
    pub(super) fn drop_local(&self) {
        let rooms = std::mem::take(&mut *self.local());
        for l in rooms.into_values().flat_map(|r| r.into_values()) {
            l.conn.lost.notify_one();
        }
    }

    /// Removes the members of instances whose lease expired two leases ago (time for their
    /// peers to register elsewhere), and tells their rooms.
    pub(super) async fn sweep(&self) {
        let mut c = self.conn();
        let Ok(insts) = redis::cmd("SMEMBERS").arg("mesh:insts").query_async::<Vec<String>>(&mut c).await else {
            return;
        };
        for inst in insts.into_iter().filter(|i| i != &self.inst) {
            let alive: bool =
                redis::cmd("EXISTS").arg(format!("mesh:inst:{inst}")).query_async(&mut c).await.unwrap_or(true);
            let since = {
                let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
                if alive {
                    dead.remove(&inst);
                    continue;
                }
                *dead.entry(inst.clone()).or_insert_with(tokio::time::Instant::now)
            };
            if since.elapsed() < self.lease * 2 {
                continue;
            }
            self.dead.lock().unwrap_or_else(|p| p.into_inner()).remove(&inst);
            let set = format!("mesh:inst:{inst}:m");
            let entries: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query_async(&mut c).await.unwrap_or_default();
            for entry in &entries {
                let mut parts = entry.splitn(3, '\n');
                let (Some(room), Some(peer), Some(conn)) = (parts.next(), parts.next(), parts.next()) else { continue };
                let (Ok(room), Ok(peer)) = (RoomId::new(room), PeerId::new(peer)) else { continue };
                if let Some(seq) = scripts::leave(&mut c, &room, &peer, &inst, conn).await {
                    tracing::info!(%room, %peer, %inst, "the lease of its server expired; peer left");
                    self.notify(&room, seq, Notice::Left { peer }).await;
                }
            }
            let _: redis::RedisResult<()> =
                redis::pipe().cmd("DEL").arg(&set).cmd("SREM").arg("mesh:insts").arg(&inst).query_async(&mut c).await;
        }
    }
}
