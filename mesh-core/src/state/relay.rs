//! Relay envelopes (docs/BEHAVIOUR.md 25, docs/LINK.md): signals carried over mesh links.
//!
//! - **Out**: the relay signaler asks, through [`super::Event::Relay`], for a signal to go by
//!   `via`; the envelope is written on that link and its id waits for `relay_ack` or
//!   `relay_error` from `via` alone. The link closing, or [`RELAY_FORGET`] passing, answers it
//!   [`RelayOutcome::RelayGone`]. An answer nobody waits for is refused.
//! - **Through**: an envelope to forward must come from its sender (else `spoofed_sender`) and
//!   go to a linked peer other than the link's (else `not_linked` / `invalid`).
//! - **In**: an envelope for this node is a signal like any other: checked against its
//!   sender's key (and relayed only through a worker), then handled in this same `handle`.

use super::{MeshState, SignalingOp};
use crate::id::PeerId;
use crate::signal::{SessionId, Signal};
use crate::signaler::RelayOutcome;
use crate::wire::{MeshMessage, RelayErrorReason};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an envelope's id waits for its answer before it is forgotten (the relay signaler
/// itself gives up much sooner, at its own timeout).
pub const RELAY_FORGET: Duration = Duration::from_secs(10);
/// Envelopes waiting at once; more are answered `RelayGone` at once (flood guard).
const MAX_PENDING: usize = 1024;

/// An envelope of this node waiting for its relay's answer.
#[derive(Debug, Clone)]
struct Pending {
    via: PeerId,
    session: SessionId,
    forget_at: Instant,
}

/// This node's envelopes in flight, by id.
#[derive(Debug, Default)]
pub(super) struct Relays {
    pending: BTreeMap<u64, Pending>,
}

impl Relays {
    /// When the oldest envelope is forgotten.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.forget_at).min()
    }
}

impl MeshState {
    /// The relay signaler asks for `signal` to reach `to` through the open link to `via`.
    pub(super) fn on_relay_request(&mut self, now: Instant, id: u64, via: PeerId, to: PeerId, signal: Signal) {
        let session = self.link_session(&via).cloned();
        let (Some(session), true) = (session, self.relays.pending.len() < MAX_PENDING) else {
            return self.answer_relay(id, RelayOutcome::RelayGone);
        };
        let envelope = MeshMessage::Relay { id, to, from: self.cfg.me.clone(), signal };
        self.send(&via, envelope);
        self.relays.pending.insert(id, Pending { via, session, forget_at: now + RELAY_FORGET });
    }

    /// `relay_ack` or `relay_error` from `from`: only the relay an envelope went to answers it.
    pub(super) fn on_relay_answer(&mut self, from: &PeerId, id: u64, outcome: RelayOutcome) {
        if self.relays.pending.get(&id).is_some_and(|p| &p.via == from) {
            self.relays.pending.remove(&id);
            self.answer_relay(id, outcome);
        } else {
            self.refuse(from, "relay_ack", "an answer to no envelope waiting for one by this relay");
        }
    }

    /// The link `session` closed: the envelopes sent on it will never be answered.
    pub(super) fn fail_relays_on(&mut self, session: &SessionId) {
        let gone: Vec<u64> =
            self.relays.pending.iter().filter(|(_, p)| &p.session == session).map(|(id, _)| *id).collect();
        for id in gone {
            self.relays.pending.remove(&id);
            self.answer_relay(id, RelayOutcome::RelayGone);
        }
    }

    /// Forgets envelopes that waited [`RELAY_FORGET`].
    pub(super) fn expire_relays(&mut self, now: Instant) {
        let old: Vec<u64> = self.relays.pending.iter().filter(|(_, p)| p.forget_at <= now).map(|(id, _)| *id).collect();
        for id in old {
            self.relays.pending.remove(&id);
            self.answer_relay(id, RelayOutcome::RelayGone);
        }
    }

    fn answer_relay(&mut self, id: u64, outcome: RelayOutcome) {
        self.out.signaling.push_back(SignalingOp::RelayAnswered { id, outcome });
    }

    /// A relay envelope over the link to `link_peer`: either for us, or for us to forward.
    pub(super) fn on_relay(
        &mut self,
        now: Instant,
        link_peer: PeerId,
        id: u64,
        to: PeerId,
        origin: PeerId,
        signal: Signal,
    ) {
        if to == self.cfg.me {
            if origin == self.cfg.me {
                return self.refuse(&link_peer, "relay", "a relayed signal claiming to come from this node");
            }
            if origin != link_peer && !self.is_present_worker(&link_peer) {
                return self.refuse(&link_peer, "relay", "only workers relay signals of others");
            }
            if self.accepts_signal(&origin, &signal, Some(&link_peer), None) {
                let (kind, session) = (signal.body.kind(), &signal.session);
                crate::mark!("signal_in", peer = %origin, %session, kind, path = "relay");
                self.take_signal(now, origin, signal);
            }
            return;
        }
        let reason = if origin != link_peer {
            self.refuse(&link_peer, "relay", "an envelope to forward must come from its sender");
            Some(RelayErrorReason::SpoofedSender)
        } else if to == link_peer {
            Some(RelayErrorReason::Invalid)
        } else if !self.is_linked(&to) {
            Some(RelayErrorReason::NotLinked)
        } else {
            None
        };
        match reason {
            Some(reason) => self.send(&link_peer, MeshMessage::RelayError { id, reason }),
            None => {
                self.send(&to, MeshMessage::Relay { id, to: to.clone(), from: origin, signal });
                self.send(&link_peer, MeshMessage::RelayAck { id });
            }
        }
    }
}
