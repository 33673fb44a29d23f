//! Registry queries (docs/BEHAVIOUR.md 23): a query waits for a verified, linked admin, is sent to it, is
//! sent again to the next admin if the admin changes before answering (or to the same one when
//! the link to it is lost and made again), and is forgotten at its deadline. Only the admin a
//! query was sent to can answer it.

use super::{MeshEvent, MeshState};
use crate::id::PeerId;
use crate::query::{RegistryFilter, RegistryPage};
use crate::room::MemberInfo;
use crate::wire::MeshMessage;
use std::time::Instant;

/// A query waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct PendingQuery {
    filter: RegistryFilter,
    pub(super) deadline: Instant,
    sent_to: Option<PeerId>,
}

/// Registry queries waiting for, or sent to, the admin.
#[derive(Debug, Default)]
pub(super) struct Queries {
    pub(super) pending: std::collections::BTreeMap<u64, PendingQuery>,
    /// The id of the room-state request sent to the admin after a partition healed.
    pub(super) sync: Option<u64>,
}

impl Queries {
    /// The first query deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|q| q.deadline).min()
    }
}

impl MeshState {
    pub(super) fn on_query_registry(&mut self, now: Instant, id: u64, filter: RegistryFilter, deadline: Instant) {
        self.queries.pending.insert(id, PendingQuery { filter, deadline, sent_to: None });
        self.flush_queries(now);
    }

    /// Drops expired queries and sends the others to the admin once it is verified and linked.
    pub(super) fn flush_queries(&mut self, now: Instant) {
        if self.queries.pending.is_empty() {
            return;
        }
        self.queries.pending.retain(|id, q| {
            let keep = q.deadline > now;
            if !keep {
                tracing::debug!(id, "registry query expired");
            }
            keep
        });
        let Some(admin) = self.election.admin.clone().filter(|_| self.election.admin_verified) else { return };
        if admin == self.cfg.me {
            let answered: Vec<(u64, PendingQuery)> = std::mem::take(&mut self.queries.pending).into_iter().collect();
            for (id, q) in answered {
                let page = q.filter.apply(&self.room);
                self.emit(MeshEvent::Registry { id, page });
            }
            return;
        }
        if !self.is_linked(&admin) {
            return;
        }
        let unsent: Vec<(u64, RegistryFilter)> = self
            .queries
            .pending
            .iter_mut()
            .filter(|(_, q)| q.sent_to.as_ref() != Some(&admin))
            .map(|(id, q)| {
                q.sent_to = Some(admin.clone());
                (*id, q.filter.clone())
            })
            .collect();
        for (id, filter) in unsent {
            self.send(&admin, MeshMessage::RegistryQuery { id, filter });
        }
    }

    /// The link to `peer` is lost: an answer on its way is lost with it, so the queries sent
    /// to it go again once a verified admin is linked (it may be `peer` again).
    pub(super) fn requeue_queries_sent_to(&mut self, peer: &PeerId) {
        for q in self.queries.pending.values_mut().filter(|q| q.sent_to.as_ref() == Some(peer)) {
            q.sent_to = None;
        }
    }

    /// An answer from `from`: accepted only for a query sent to it (or the post-partition sync).
    pub(super) fn on_registry_answer(&mut self, from: &PeerId, id: u64, page: RegistryPage) {
        if self.queries.sync == Some(id) && self.election.admin.as_ref() == Some(from) {
            self.queries.sync = None;
            for MemberInfo { peer, record, .. } in &page.workers {
                self.merge_record(from, peer, record);
            }
            return;
        }
        if self.queries.pending.get(&id).is_some_and(|q| q.sent_to.as_ref() == Some(from)) {
            self.queries.pending.remove(&id);
            // Records their owners did not sign (where the owner's key is known) are left out.
            let mut page = page;
            let (room, before) = (self.cfg.room.clone(), page.workers.len());
            page.workers.retain(|m| match self.authority.keys.get(&m.peer) {
                Some(key) => key.signed_record(&room, &m.peer, &m.record),
                None => true,
            });
            for _ in page.workers.len()..before {
                self.refuse(from, "registry_answer", "a record its owner did not sign");
            }
            self.emit(MeshEvent::Registry { id, page });
        } else {
            self.refuse(from, "registry_answer", "only the peer asked may answer a query");
        }
    }

    /// After a partition heals: ask the admin for the room state (merged, never replaced).
    pub(super) fn sync_room_from_admin(&mut self) {
        let Some(admin) = self.election.admin.clone().filter(|a| a != &self.cfg.me && self.is_linked(a)) else {
            return;
        };
        // Counted down from the top, so it never meets a user's query id (counted up from 1).
        let id = u64::MAX - self.links.next_seq;
        self.links.next_seq += 1;
        self.queries.sync = Some(id);
        self.send(&admin, MeshMessage::RegistryQuery { id, filter: RegistryFilter::default() });
    }
}
