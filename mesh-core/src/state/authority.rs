//! Who may say what (docs/BEHAVIOUR.md 25). Every message is checked against its sender, the peer
//! of the link it came over: discovery (`peer_list`, `peer_joined`, registry answers) only from the
//! admin this node follows, a record only from its owner, a goodbye only from the leaver, and a
//! relayed signal only through a worker (clients never relay). A refusal changes nothing; it is
//! counted in [`super::Counters::refused`] and logged once per sender and reason (then at DEBUG).

use super::MeshState;
use crate::id::PeerId;

/// Distinct (sender, reason) pairs logged at WARN before further refusals go to DEBUG only.
const MAX_LOGGED: usize = 1024;

impl MeshState {
    /// True if `from` is the admin this node follows (never true for this node itself).
    pub(super) fn speaks_for_admin(&self, from: &PeerId) -> bool {
        from != &self.cfg.me && self.admin.as_ref() == Some(from)
    }

    /// Counts and logs a refused message from `from`; `kind` is the message, `why` the rule.
    pub(super) fn refuse(&mut self, from: &PeerId, kind: &'static str, why: &'static str) {
        self.counters.refused += 1;
        let first = self.refusals_logged.len() < MAX_LOGGED && self.refusals_logged.insert((from.clone(), why));
        if first {
            tracing::warn!(%from, kind, why, "message refused (further ones like it are logged at debug)");
        } else {
            tracing::debug!(%from, kind, why, "message refused");
        }
    }
}
