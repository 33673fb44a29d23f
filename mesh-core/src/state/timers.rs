//! The link timers (docs/BEHAVIOUR.md 8, 12a, 21): retries with exponential backoff and jitter,
//! the wait for the answer to an offer the rendezvous carried, the wait for a known joiner's
//! offer, and forgetting a peer the restarted rendezvous stopped listing.

use super::links::LinkState;
use super::{MeshEvent, MeshState};
use crate::id::PeerId;
use crate::signal::SessionId;
use std::time::{Duration, Instant};

/// How long a peer the restarted rendezvous left out has to register again (its reconnect
/// backoff is at most 10 s) before this node, unable to reach it, forgets it.
pub(super) const UNLISTED_GRACE: Duration = Duration::from_secs(15);

/// Base delay of retry `attempt` (0-based): initial · 2^attempt, capped.
pub(super) fn retry_base(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial.saturating_mul(1u32 << attempt.min(20)).min(max)
}

impl MeshState {
    pub(super) fn schedule_retry(&mut self, now: Instant, peer: &PeerId) {
        let (initial, max) = (self.cfg.timing.retry_initial, self.cfg.timing.retry_max);
        let jitter = self.next_random();
        let Some(entry) = self.links.peers.get_mut(peer) else { return };
        let attempt = entry.retry_attempt;
        let base = retry_base(initial, max, attempt);
        let delay = base - base.mul_f64(0.2 * jitter);
        entry.retry_attempt = attempt.saturating_add(1);
        entry.link = LinkState::Retrying { due: now + delay };
        self.emit(MeshEvent::RetryScheduled { peer: peer.clone(), attempt, delay });
    }

    /// The answer to our offer for `session` arrived: the rendezvous reached the peer.
    pub(super) fn on_answer(&mut self, from: &PeerId, session: &SessionId) {
        if let Some(entry) = self.links.peers.get_mut(from) {
            if matches!(&entry.link, LinkState::Dialing { session: s } if s == session) {
                entry.answer_due = None;
            }
        }
    }

    /// Offers sent by the rendezvous and still unanswered at their due time: the peer may be
    /// cut off from the rendezvous, so the attempt is made again at once, by relay first.
    pub(super) fn fire_answer_waits(&mut self, now: Instant) {
        let unanswered: Vec<(PeerId, SessionId)> = self
            .links
            .peers
            .iter()
            .filter_map(|(p, e)| match &e.link {
                LinkState::Dialing { session } if e.answer_due.is_some_and(|t| t <= now) => {
                    Some((p.clone(), session.clone()))
                }
                _ => None,
            })
            .collect();
        for (peer, session) in unanswered {
            tracing::info!(%peer, after = ?self.cfg.timing.answer_wait, "no answer by the rendezvous; asking again by relay");
            let reason = "no answer by the rendezvous; dialing again by relay".to_string();
            self.close(&peer, &session, reason);
            if let Some(entry) = self.links.peers.get_mut(&peer) {
                entry.relay_first = true;
                entry.answer_due = None;
            }
            self.dial(now, &peer, "answer_wait");
        }
    }

    /// Dials every peer whose retry or offer wait is due.
    pub(super) fn fire_link_timers(&mut self, now: Instant) {
        self.fire_answer_waits(now);
        let due: Vec<(PeerId, &'static str)> = self
            .links
            .peers
            .iter()
            .filter_map(|(p, e)| match e.link {
                LinkState::Waiting { dial_at } if dial_at <= now => Some((p.clone(), "offer_wait")),
                LinkState::Retrying { due } if due <= now => Some((p.clone(), "retry")),
                _ => None,
            })
            .collect();
        for (peer, why) in due {
            let grace = UNLISTED_GRACE;
            if self.links.peers.get(&peer).and_then(|e| e.unlisted_since).is_some_and(|t| now >= t + grace) {
                tracing::info!(%peer, "an unreachable peer the rendezvous does not list (it restarted, or never named it); forgetting it");
                self.on_peer_left(now, &peer);
                continue;
            }
            self.dial(now, &peer, why);
        }
    }

    /// xorshift64, seeded by configuration: jitter in [0, 1).
    pub(super) fn next_random(&mut self) -> f64 {
        let mut x = self.links.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.links.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
