//! Heartbeats, loss detection, the partition flag and the health record (docs/BEHAVIOUR.md 19, 20,
//! 22).
//!
//! The partition flag is recomputed after every event, *before* anything else is emitted for
//! that change: the `PartitionDetected` event and the health record that follows it both read the
//! flag already set (the bug of the origin system was the reverse order).
//!
//! The rule: a worker is partitioned iff its admin is neither itself nor linked, and
//! `(1 + linked present workers) / (present workers, itself included) < 1/2`. A worker whose
//! first link attempt is still in flight is not counted yet (a joiner forming its links is not cut
//! off); once an attempt failed it is. A partitioned worker is read-only: it elects no admin,
//! queues its own record changes, and on heal sends them and merges the room state from the admin.

use super::{LinkState, MeshEvent, MeshState};
use crate::id::{PeerId, RoomId};
use crate::signaler::Role;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The state of the link to one peer, as a health record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// Open.
    Up,
    /// This node offered; not open yet.
    Dialing,
    /// This node answered the peer's offer; not open yet.
    Accepting,
    /// Known; waiting for the peer's offer before dialing it.
    Waiting,
    /// Lost; a retry is scheduled.
    Retrying,
}

impl LinkStatus {
    /// The name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Dialing => "dialing",
            Self::Accepting => "accepting",
            Self::Waiting => "waiting",
            Self::Retrying => "retrying",
        }
    }
}

impl std::fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node is in its room, as a health record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// The worker holding the admin role.
    Admin,
    /// Any other worker.
    Worker,
    /// A client.
    Client,
}

impl NodeRole {
    /// The name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Worker => "worker",
            Self::Client => "client",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One peer's line in a health record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerHealth {
    /// The peer.
    pub peer: PeerId,
    /// The link's state.
    pub state: LinkStatus,
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
    /// Admin, worker or client.
    pub role: NodeRole,
    /// The admin as this node sees it.
    pub admin: Option<PeerId>,
    /// True once the admin is this node or answered `admin_verify`.
    pub admin_verified: bool,
    /// The admin epoch this node holds (raised only on a proof: docs/BEHAVIOUR.md 17a).
    pub epoch: u64,
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

/// Heartbeats, the health record's pace and the partition flag.
#[derive(Debug, Default)]
pub(super) struct Health {
    pub(super) partitioned: bool,
    /// A record change made while partitioned, sent when the partition heals.
    pub(super) pending_record: Option<crate::WorkerRecord>,
    pub(super) heartbeat_seq: u64,
    pub(super) next_heartbeat: Option<Instant>,
    pub(super) next_health: Option<Instant>,
}

impl Health {
    /// The next heartbeat or health record due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.next_heartbeat.into_iter().chain(self.next_health).min()
    }
}

impl MeshState {
    pub(super) fn on_tick(&mut self, now: Instant) {
        self.detect_silence(now);
        self.fire_heartbeats(now);
        self.fire_link_timers(now);
        self.fire_verify_timer(now);
        self.expire_relays(now);
        if self.health.next_health.is_some_and(|t| t <= now) {
            self.health.next_health = Some(now + self.cfg.timing.health_interval);
            let record = self.health_record();
            self.emit(MeshEvent::Health(record));
        }
    }

    fn fire_heartbeats(&mut self, now: Instant) {
        let Some(due) = self.health.next_heartbeat else { return };
        if due > now {
            return;
        }
        self.health.next_heartbeat = Some(self.next_beat(now));
        self.broadcast_view();
    }

    /// When the heartbeat after `now` is due: the next point of the phase's grid, or one
    /// interval from now without a phase.
    pub(super) fn next_beat(&self, now: Instant) -> Instant {
        let interval = self.cfg.timing.heartbeat_interval;
        let Some(phase) = self.cfg.heartbeat_phase else { return now + interval };
        let step = interval.as_nanos().max(1);
        if phase > now {
            return phase.min(now + interval);
        }
        let beats = now.duration_since(phase).as_nanos() / step + 1;
        u64::try_from(beats * step).map_or(now + interval, |ns| phase + Duration::from_nanos(ns))
    }

    fn detect_silence(&mut self, now: Instant) {
        let timeout = self.cfg.timing.heartbeat_timeout;
        let silent: Vec<PeerId> = self
            .links
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
        if let Some(LinkState::Up { last_seen, .. }) = self.links.peers.get_mut(peer).map(|e| &mut e.link) {
            *last_seen = now;
        }
    }

    /// Workers this node reaches (itself included) and present workers (itself included),
    /// leaving out workers whose first link attempt is still in flight.
    pub(super) fn reach(&self) -> (usize, usize) {
        let (mut reached, mut present) = (1usize, 1usize);
        for (peer, _) in self.room.present() {
            if peer == &self.cfg.me {
                continue;
            }
            let forming = self.links.peers.get(peer).is_none_or(|e| {
                !e.ever_linked
                    && e.retry_attempt == 0
                    && matches!(
                        e.link,
                        LinkState::Waiting { .. } | LinkState::Dialing { .. } | LinkState::Accepting { .. }
                    )
            });
            if forming {
                continue;
            }
            present += 1;
            reached += self.is_linked(peer) as usize;
        }
        (reached, present)
    }

    /// The partition rule, computed now.
    pub(super) fn partition_now(&self) -> bool {
        if self.cfg.role == Role::Client || !self.registered || self.leaving || self.admin_linked() {
            return false;
        }
        let (reached, present) = self.reach();
        reached * 2 < present
    }

    /// Recomputes the partition flag; on a change, sets it first, then emits.
    pub(super) fn update_partition(&mut self, now: Instant) {
        if self.cfg.role == Role::Client || !self.registered || self.leaving {
            return;
        }
        let partitioned = self.partition_now();
        if partitioned == self.health.partitioned {
            return;
        }
        self.health.partitioned = partitioned;
        let (reached, present) = self.reach();
        if partitioned {
            tracing::warn!(reached, present, "partition detected");
            self.emit(MeshEvent::PartitionDetected);
        } else {
            tracing::info!(reached, present, "partition healed");
            self.emit(MeshEvent::PartitionHealed);
        }
        let record = self.health_record();
        self.emit(MeshEvent::Health(record));
        if !partitioned {
            if let Some(record) = self.health.pending_record.take() {
                self.publish_record(record);
            }
            self.sync_room_from_admin();
            if self.election.admin.as_ref().is_none_or(|a| a != &self.cfg.me && !self.is_present_worker(a)) {
                self.elect_admin(now);
            }
        }
    }

    /// The current health record.
    pub fn health_record(&self) -> HealthRecord {
        let role = match self.cfg.role {
            Role::Client => NodeRole::Client,
            Role::Worker if self.is_admin() => NodeRole::Admin,
            Role::Worker => NodeRole::Worker,
        };
        let peers: Vec<PeerHealth> = self
            .links
            .peers
            .iter()
            .map(|(peer, e)| PeerHealth {
                peer: peer.clone(),
                state: match e.link {
                    LinkState::Up { .. } => LinkStatus::Up,
                    LinkState::Dialing { .. } => LinkStatus::Dialing,
                    LinkState::Accepting { .. } => LinkStatus::Accepting,
                    LinkState::Waiting { .. } => LinkStatus::Waiting,
                    LinkState::Retrying { .. } => LinkStatus::Retrying,
                },
                retry_attempt: e.retry_attempt,
            })
            .collect();
        let links_expected = match self.cfg.role {
            // Its admin, and the workers it chose besides.
            Role::Client => 1 + self.links.chosen.iter().filter(|p| self.election.admin.as_ref() != Some(*p)).count(),
            Role::Worker => self.room.present().filter(|(p, _)| **p != self.cfg.me).count(),
        };
        HealthRecord {
            room: self.cfg.room.clone(),
            peer: self.cfg.me.clone(),
            role,
            admin: self.election.admin.clone(),
            admin_verified: self.election.admin_verified,
            epoch: self.election.epoch,
            links_up: peers
                .iter()
                .filter(|p| {
                    p.state == LinkStatus::Up && (self.cfg.role == Role::Client || self.is_present_worker(&p.peer))
                })
                .count(),
            links_expected,
            partitioned: self.health.partitioned,
            peers,
        }
    }
}
