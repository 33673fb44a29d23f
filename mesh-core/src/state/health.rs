//! Heartbeats, loss detection, the partition flag and the health record (BEHAVIOUR 19, 20, 22).
//!
//! The partition flag is recomputed after every event, *before* anything else is emitted for
//! that change: the `PartitionDetected` event and the health record that follows it both read the
//! flag already set (the bug of the origin system was the reverse order).
//!
//! Partitioned means: this node lost the admin (it cannot reach an admin other than itself, or its
//! link to the admin died while the admin was still in the room) and it reaches fewer than half of
//! the other present workers it has been linked with. It stays partitioned until it reaches half
//! again: an admin elected inside a cut-off minority does not make that minority healthy.

use super::{LinkState, MeshEvent, MeshState};
use crate::id::{PeerId, RoomId};
use crate::signaler::Role;
use crate::wire::MeshMessage;
use serde::Serialize;
use std::time::Instant;

/// One peer's line in a health record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerHealth {
    /// The peer.
    pub peer: PeerId,
    /// `up`, `dialing`, `accepting`, `waiting` or `retrying`.
    pub state: &'static str,
    /// Retries so far since the link was last up.
    pub retry_attempt: u32,
}

/// What a worker reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthRecord {
    /// The room.
    pub room: RoomId,
    /// This peer.
    pub peer: PeerId,
    /// `admin`, `worker` or `client`.
    pub role: &'static str,
    /// The admin as this node sees it.
    pub admin: Option<PeerId>,
    /// True once the admin is this node or answered `admin_verify`.
    pub admin_verified: bool,
    /// Open links to workers (a client counts its link to the admin).
    pub links_up: usize,
    /// Links this node should hold: every other present worker (1 for a client).
    pub links_expected: usize,
    /// The partition flag.
    pub partitioned: bool,
    /// Per-peer link state.
    pub peers: Vec<PeerHealth>,
}

impl HealthRecord {
    /// `Healthy` or `PARTITIONED`, as printed in logs.
    pub fn status(&self) -> &'static str {
        if self.partitioned {
            "PARTITIONED"
        } else {
            "Healthy"
        }
    }
}

impl MeshState {
    pub(super) fn on_tick(&mut self, now: Instant) {
        self.fire_heartbeats(now);
        self.detect_silence(now);
        self.fire_link_timers(now);
        self.fire_verify_timer(now);
        if self.next_health.is_some_and(|t| t <= now) {
            self.next_health = Some(now + self.cfg.timing.health_interval);
            let record = self.health_record();
            self.emit(MeshEvent::Health(record));
        }
    }

    fn fire_heartbeats(&mut self, now: Instant) {
        let Some(due) = self.next_heartbeat else { return };
        if due > now {
            return;
        }
        self.next_heartbeat = Some(now + self.cfg.timing.heartbeat_interval);
        self.heartbeat_seq += 1;
        for peer in self.linked_peers() {
            let msg = MeshMessage::Heartbeat { seq: self.heartbeat_seq, admin: self.admin.clone() };
            self.send(&peer, msg);
        }
    }

    fn detect_silence(&mut self, now: Instant) {
        let timeout = self.cfg.timing.heartbeat_timeout;
        let silent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(
                |(_, e)| matches!(e.link, LinkState::Up { last_seen, .. } if now.duration_since(last_seen) >= timeout),
            )
            .map(|(p, _)| p.clone())
            .collect();
        for peer in silent {
            self.drop_link(now, &peer, "heartbeat timeout");
        }
    }

    /// Notes that `peer` was heard from.
    pub(super) fn heard_from(&mut self, now: Instant, peer: &PeerId) {
        if let Some(LinkState::Up { last_seen, .. }) = self.peers.get_mut(peer).map(|e| &mut e.link) {
            *last_seen = now;
        }
    }

    /// Recomputes the partition flag; on a change, sets it first, then emits.
    pub(super) fn update_partition(&mut self, _now: Instant) {
        if self.cfg.role == Role::Client || !self.registered || self.leaving {
            return;
        }
        let mut known = 0usize;
        let mut reachable = 0usize;
        for (peer, entry) in &self.peers {
            if entry.ever_linked && self.is_present_worker(peer) {
                known += 1;
                reachable += matches!(entry.link, LinkState::Up { .. }) as usize;
            }
        }
        let minority = reachable * 2 < known;
        if !minority {
            self.admin_lost = false;
        }
        let partitioned = minority && (self.admin_lost || !self.admin_reachable());
        if partitioned == self.partitioned {
            return;
        }
        self.partitioned = partitioned;
        if partitioned {
            tracing::warn!(reachable, known, "partition detected");
            self.emit(MeshEvent::PartitionDetected);
        } else {
            tracing::info!(reachable, known, "partition healed");
            self.emit(MeshEvent::PartitionHealed);
        }
        let record = self.health_record();
        self.emit(MeshEvent::Health(record));
    }

    /// The current health record.
    pub fn health_record(&self) -> HealthRecord {
        let role = match self.cfg.role {
            Role::Client => "client",
            Role::Worker if self.is_admin() => "admin",
            Role::Worker => "worker",
        };
        let peers: Vec<PeerHealth> = self
            .peers
            .iter()
            .map(|(peer, e)| PeerHealth {
                peer: peer.clone(),
                state: match e.link {
                    LinkState::Up { .. } => "up",
                    LinkState::Dialing { .. } => "dialing",
                    LinkState::Accepting { .. } => "accepting",
                    LinkState::Waiting { .. } => "waiting",
                    LinkState::Retrying { .. } => "retrying",
                },
                retry_attempt: e.retry_attempt,
            })
            .collect();
        let links_expected = match self.cfg.role {
            Role::Client => 1,
            Role::Worker => self.room.present().filter(|(p, _)| **p != self.cfg.me).count(),
        };
        HealthRecord {
            room: self.cfg.room.clone(),
            peer: self.cfg.me.clone(),
            role,
            admin: self.admin.clone(),
            admin_verified: self.admin_verified,
            links_up: peers
                .iter()
                .filter(|p| p.state == "up" && (self.cfg.role == Role::Client || self.is_present_worker(&p.peer)))
                .count(),
            links_expected,
            partitioned: self.partitioned,
            peers,
        }
    }
}
