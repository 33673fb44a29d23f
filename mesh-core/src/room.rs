//! The replicated room state: every worker's metadata and status, with a version, merged
//! deterministically so all workers converge whatever order updates arrive in (docs/BEHAVIOUR.md 4).
//!
//! Each worker owns its own record and bumps the version when it changes it. Merging keeps, per
//! peer, the record with the higher version; equal versions with different contents are settled by
//! comparing the records themselves, so merge is commutative, associative and idempotent.

use crate::id::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Free-form worker metadata (for example `gpu_memory_mb`), as JSON values.
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// Whether a worker takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Ready for work.
    Available,
    /// Doing work.
    Busy,
    /// Held for someone.
    Reserved,
    /// On its way out of the room; a tombstone once the peer has gone.
    Leaving,
}

/// One worker's entry in the room state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Version, bumped by the owning worker on every change.
    pub version: u64,
    /// Current status.
    pub status: WorkerStatus,
    /// Election priority (by default the `gpu_memory_mb` metadata value).
    pub priority: u64,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// The owner's Ed25519 signature over (room, owner, version, status, priority, metadata), as
    /// hex (`crate::identity`): no other member can forge or alter the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl WorkerRecord {
    /// A first-version record for a worker that just joined (unsigned).
    pub fn new(priority: u64, metadata: Metadata) -> Self {
        Self { version: 1, status: WorkerStatus::Available, priority, metadata, sig: None }
    }
}

/// A peer id with its record, as carried in peer lists and registry answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The worker.
    pub peer: PeerId,
    /// Its record.
    pub record: WorkerRecord,
    /// Its public key (hex), as the rendezvous bound it at registration; absent if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl MemberInfo {
    /// A member without a known key.
    pub fn new(peer: PeerId, record: WorkerRecord) -> Self {
        Self { peer, record, key: None }
    }
}

/// The replicated state of one room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    workers: BTreeMap<PeerId, WorkerRecord>,
}

impl RoomState {
    /// Merges one record; returns true if the state changed.
    pub fn merge(&mut self, peer: &PeerId, record: &WorkerRecord) -> bool {
        match self.workers.get(peer) {
            Some(current) if !wins(record, current) => false,
            _ => {
                self.workers.insert(peer.clone(), record.clone());
                true
            }
        }
    }

    /// True if [`RoomState::merge`] would take `record` for `peer` (it is newer than the one held).
    pub fn would_take(&self, peer: &PeerId, record: &WorkerRecord) -> bool {
        self.workers.get(peer).is_none_or(|current| wins(record, current))
    }

    /// Merges every record of `other`.
    pub fn merge_all(&mut self, other: &RoomState) {
        for (peer, record) in &other.workers {
            self.merge(peer, record);
        }
    }

    /// The record of `peer`, if known.
    pub fn get(&self, peer: &PeerId) -> Option<&WorkerRecord> {
        self.workers.get(peer)
    }

    /// Forgets `peer` entirely (it left the room; its tombstone is no longer needed).
    pub fn remove(&mut self, peer: &PeerId) -> Option<WorkerRecord> {
        self.workers.remove(peer)
    }

    /// Workers that are present (any status but `Leaving`).
    pub fn present(&self) -> impl Iterator<Item = (&PeerId, &WorkerRecord)> {
        self.workers.iter().filter(|(_, r)| r.status != WorkerStatus::Leaving)
    }

    /// Number of records (tombstones included).
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// True when no worker is known.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

/// Does `new` replace `current`? Higher version wins; at equal versions the greater record wins
/// (status, then priority, then the metadata's canonical JSON text: maps serialize sorted).
fn wins(new: &WorkerRecord, current: &WorkerRecord) -> bool {
    let key =
        |r: &WorkerRecord| (r.version, r.status, r.priority, serde_json::to_string(&r.metadata).unwrap_or_default());
    key(new) > key(current)
}

/// Deterministic election: highest priority, then the lowest peer id. `None` for no candidates.
pub fn elect<'a>(candidates: impl IntoIterator<Item = (&'a PeerId, u64)>) -> Option<PeerId> {
    candidates.into_iter().max_by(|(pa, a), (pb, b)| a.cmp(b).then_with(|| pb.cmp(pa))).map(|(peer, _)| peer.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    #[test]
    fn election_prefers_priority_then_lowest_peer_id() {
        let (a, b, c) = (peer("a"), peer("b"), peer("c"));
        assert_eq!(elect([(&a, 8), (&b, 24), (&c, 24)]), Some(b.clone()));
        assert_eq!(elect([(&c, 1), (&a, 1)]), Some(a.clone()));
        assert_eq!(elect(std::iter::empty()), None);
    }

    #[test]
    fn newer_version_replaces_older_and_not_the_reverse() {
        let mut s = RoomState::default();
        let p = peer("w");
        let mut busy = WorkerRecord::new(1, Metadata::new());
        busy.version = 2;
        busy.status = WorkerStatus::Busy;
        assert!(s.merge(&p, &busy));
        assert!(!s.merge(&p, &WorkerRecord::new(1, Metadata::new())));
        assert_eq!(s.get(&p).unwrap().status, WorkerStatus::Busy);
    }

    fn arb_record() -> impl Strategy<Value = WorkerRecord> {
        (0u64..4, 0usize..4, 0u64..3, 0i64..3).prop_map(|(version, status, priority, m)| {
            let status =
                [WorkerStatus::Available, WorkerStatus::Busy, WorkerStatus::Reserved, WorkerStatus::Leaving][status];
            let mut metadata = Metadata::new();
            metadata.insert("m".into(), m.into());
            WorkerRecord { version, status, priority, metadata, sig: None }
        })
    }

    proptest! {
        /// docs/BEHAVIOUR.md 4: any two workers that see the same updates in different orders agree.
        #[test]
        fn room_state_merge_converges_in_any_order(
            updates in proptest::collection::vec((0usize..3, arb_record()), 0..24),
            seed in any::<u64>(),
        ) {
            let peers = [peer("a"), peer("b"), peer("c")];
            let mut forward = RoomState::default();
            for (p, r) in &updates {
                forward.merge(&peers[*p], r);
            }
            let mut shuffled = updates.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut other = RoomState::default();
            for (p, r) in &shuffled {
                other.merge(&peers[*p], r);
                other.merge(&peers[*p], r); // idempotent
            }
            prop_assert_eq!(&forward, &other);
            let mut merged = RoomState::default();
            merged.merge_all(&other);
            prop_assert_eq!(forward, merged);
        }
    }
}
