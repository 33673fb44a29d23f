//! Signals, from any path (docs/BEHAVIOUR.md 5, 25b): a signal delivered by a signaler, or one
//! that came in a relay envelope, is checked against its sender's key and then handled here.
//! An offer goes to the link rules (answered or refused at once); an abort ends its attempt;
//! an answer or a candidate goes to its attempt, if it is the current one with that peer.

use super::{LinkOp, MeshState};
use crate::id::PeerId;
use crate::signal::{Signal, SignalBody};
use std::time::Instant;

impl MeshState {
    /// A signal a signaler delivered: `key` is the one the rendezvous bound to `from`, if it says.
    pub(super) fn on_signal(&mut self, now: Instant, from: PeerId, signal: Signal, key: Option<String>) {
        if self.accepts_signal(&from, &signal, None, key.as_deref()) {
            self.take_signal(now, from, signal);
        }
    }

    /// A signal from `from` whose signature was checked.
    pub(super) fn take_signal(&mut self, now: Instant, from: PeerId, signal: Signal) {
        let Signal { session, body, .. } = signal;
        if session.offerer != from && session.offerer != self.cfg.me {
            tracing::warn!(%from, %session, "signal for a session between other peers; dropped");
            return;
        }
        let current = self.links.peers.get(&from).and_then(|e| super::links::session_of(&e.link)) == Some(&session);
        match body {
            SignalBody::Offer { .. } if session.offerer == from => {
                // The current attempt's offer, too, was handled before.
                if !self.links.first_offer(&session) {
                    tracing::debug!(%from, %session, "an offer handled before (it came by two paths); dropped");
                    return;
                }
                self.on_offer(now, from, session, body);
            }
            SignalBody::Abort { .. } => self.on_aborted(now, &from, &session),
            body if current => {
                if matches!(body, SignalBody::Answer { .. }) && session.offerer == self.cfg.me {
                    self.on_answer(&from, &session);
                }
                self.link_op(LinkOp::Signal { peer: from, session, body });
            }
            _ => tracing::debug!(%from, %session, "signal for no current attempt; dropped"),
        }
    }
}
