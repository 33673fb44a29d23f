//! Who may say what (docs/BEHAVIOUR.md 25). Every message is checked against its sender, the peer
//! of the link it came over: discovery (`peer_list`, `peer_joined`, registry answers) only from the
//! admin this node follows, a record only from its owner, a goodbye only from the leaver, and a
//! relayed signal only through a worker (clients never relay). A refusal changes nothing; it is
//! counted in [`super::Counters::refused`] and logged once per sender and reason (then at DEBUG).

use super::{MeshEvent, MeshState};
use crate::id::PeerId;

/// Distinct (sender, reason) pairs logged at WARN before further refusals go to DEBUG only.
const MAX_LOGGED: usize = 1024;
/// Client keys remembered (the oldest-named are forgotten first beyond this).
const MAX_CLIENT_KEYS: usize = 4096;
/// Departed peers remembered (the oldest-named are forgotten first beyond this).
const MAX_DEPARTED: usize = 1024;

/// Who this node knows to be who, who left, and which refusals it has logged.
#[derive(Debug, Default)]
pub(super) struct Authority {
    /// Public keys of workers, as the rendezvous bound them (or the admin's peer list told).
    pub(super) keys: std::collections::BTreeMap<PeerId, crate::identity::PublicKey>,
    /// Public keys of clients, as the rendezvous bound them (it hands them out with each
    /// client's signals). A client is never a worker: its records and votes are refused.
    pub(super) client_keys: std::collections::BTreeMap<PeerId, crate::identity::PublicKey>,
    /// Peers that left (the rendezvous or the peer itself said so): a record of theirs in a
    /// snapshot sent before they left (a peer list, a sync answer) must not bring them back.
    /// Cleared when the rendezvous introduces the peer again.
    pub(super) departed: std::collections::BTreeSet<PeerId>,
    /// Refusals already logged at WARN, by sender and reason.
    pub(super) refusals_logged: std::collections::BTreeSet<(PeerId, &'static str)>,
}

impl MeshState {
    /// True if `from` is the admin this node follows (never true for this node itself).
    pub(super) fn speaks_for_admin(&self, from: &PeerId) -> bool {
        from != &self.cfg.me && self.election.admin.as_ref() == Some(from)
    }

    /// Remembers worker `peer`'s public key: the rendezvous' binding (`authoritative`) replaces
    /// any, the admin's word only fills a gap. False if the key is refused (not an Ed25519 key,
    /// or not on the room's allowlist of worker keys): the peer is then not taken in.
    pub(super) fn learn_key(&mut self, peer: &PeerId, key: Option<&String>, authoritative: bool) -> bool {
        let Some(key) = key else { return true };
        if !self.cfg.trust.allows_worker(key) {
            self.refuse(peer, "member", "a worker key not on the room's allowlist");
            return false;
        }
        if authoritative || !self.authority.keys.contains_key(peer) {
            match crate::identity::PublicKey::parse(key) {
                Some(key) => {
                    self.authority.keys.insert(peer.clone(), key);
                }
                None => {
                    self.refuse(peer, "member", "a member's key that is not an Ed25519 public key");
                    return false;
                }
            }
        }
        true
    }

    /// Notes that `peer` left: records of it from others' snapshots are ignored from now on.
    pub(super) fn note_departed(&mut self, peer: &PeerId) {
        if self.authority.departed.len() >= MAX_DEPARTED {
            self.authority.departed.pop_first();
        }
        self.authority.departed.insert(peer.clone());
    }

    /// The rendezvous introduces `peer` (or a link to it opened): it is back.
    pub(super) fn note_present(&mut self, peer: &PeerId) {
        self.authority.departed.remove(peer);
    }

    /// Merges `record` as `owner`'s if its owner signed it (when `owner`'s key is known; a
    /// peer without a known key cannot be checked). A record that does not verify is refused.
    pub(super) fn merge_record(&mut self, from: &PeerId, owner: &PeerId, record: &crate::WorkerRecord) -> bool {
        if self.authority.departed.contains(owner) || !self.room.would_take(owner, record) {
            return false; // gone, or nothing new: no need to check it
        }
        match self.authority.keys.get(owner) {
            Some(key) if !key.signed_record(&self.cfg.room, owner, record) => {
                self.refuse(from, "record", "a record its owner did not sign");
                return false;
            }
            // A signing node takes records only of workers whose key it knows: a client (whose
            // key comes with its signals) or a peer that registered no key never holds one.
            None if self.cfg.key.is_some() => {
                self.refuse(from, "record", "a record of a peer with no known worker key");
                return false;
            }
            _ => {}
        }
        let joined = self.room.get(owner).is_none();
        let changed = self.room.merge(owner, record);
        if changed {
            self.emit(MeshEvent::WorkerChanged { peer: owner.clone(), record: record.clone(), joined });
        }
        changed
    }

    /// Forgets worker `peer`'s record; the application hears that it left.
    pub(super) fn forget_worker(&mut self, peer: &PeerId) {
        if self.room.remove(peer).is_some() {
            self.emit(MeshEvent::WorkerLeft { peer: peer.clone() });
        }
    }

    /// Checks the signature of a signal from `from` to this node, handed over by `via` (the peer
    /// of a relay link) or by the rendezvous with `bound`, the key it bound to `from` (how a
    /// client's key reaches the workers it dials). It must verify against `from`'s worker key,
    /// else its client key, else `bound`; a signing node refuses a signal it cannot check. A
    /// refusal is counted and logged.
    pub(super) fn accepts_signal(
        &mut self,
        from: &PeerId,
        signal: &crate::Signal,
        via: Option<&PeerId>,
        bound: Option<&str>,
    ) -> bool {
        let blame = via.unwrap_or(from).clone();
        if !self.authority.keys.contains_key(from) && via.is_none() {
            if let Some(bound) = bound {
                if !self.learn_client_key(from, bound) {
                    return false;
                }
            }
        }
        let (room, me) = (self.cfg.room.clone(), self.cfg.me.clone());
        match self.authority.keys.get(from).or_else(|| self.authority.client_keys.get(from)) {
            Some(key) if key.signed_signal(&room, from, &me, signal) => true,
            Some(_) => {
                self.refuse(&blame, "signal", "a signature that does not verify");
                false
            }
            // A node that signs nothing checks nothing (tests and simulations only).
            None if self.cfg.key.is_none() => true,
            None if via.is_some_and(|v| v != from) => {
                self.refuse(&blame, "relay", "a relayed signal from a peer with no known key");
                false
            }
            None => {
                self.refuse(&blame, "signal", "a signal from a peer with no known key");
                false
            }
        }
    }

    /// Remembers the key the rendezvous bound to `peer`, a client (not a known worker). False if
    /// it is refused: not an Ed25519 key, or not on the room's allowlist of client keys.
    fn learn_client_key(&mut self, peer: &PeerId, key: &str) -> bool {
        if !self.cfg.trust.allows_client(key) {
            self.refuse(peer, "signal", "a client key not on the room's allowlist");
            return false;
        }
        let Some(key) = crate::identity::PublicKey::parse(key) else {
            self.refuse(peer, "signal", "a bound key that is not an Ed25519 public key");
            return false;
        };
        if self.authority.client_keys.len() >= MAX_CLIENT_KEYS && !self.authority.client_keys.contains_key(peer) {
            self.authority.client_keys.pop_first();
        }
        self.authority.client_keys.insert(peer.clone(), key);
        true
    }

    /// Counts and logs a refused message from `from`; `kind` is the message, `why` the rule.
    pub(super) fn refuse(&mut self, from: &PeerId, kind: &'static str, why: &'static str) {
        self.counters.refused += 1;
        let first = self.authority.refusals_logged.len() < MAX_LOGGED
            && self.authority.refusals_logged.insert((from.clone(), why));
        if first {
            tracing::warn!(%from, kind, why, "message refused (further ones like it are logged at debug)");
        } else {
            tracing::debug!(%from, kind, why, "message refused");
        }
    }
}
