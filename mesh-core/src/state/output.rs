//! What the state machine asks of its driver: four queues, one per consumer, in the manner of
//! quinn-proto's `poll_transmit` / `poll`. The driver drains them after every
//! [`super::MeshState::handle`], in the order [`super::MeshState::drain`] gives: transmits
//! first (a goodbye goes out before its link is closed), then link operations, then the
//! signalers, then the application.

use super::MeshEvent;
use crate::id::PeerId;
use crate::signal::{SessionId, SignalBody};
use crate::signaler::{Announcement, RelayOutcome};
use crate::wire::MeshMessage;
use std::collections::VecDeque;

/// A mesh message to write on the open link `session` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// The recipient.
    pub to: PeerId,
    /// The link it goes on (the one open when the message was queued).
    pub session: SessionId,
    /// What to write.
    pub msg: MeshMessage,
}

/// What to do with a transport: start, answer, refuse or close an attempt, or hand it a signal.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkOp {
    /// Start a link attempt to `peer` as the offering side.
    Dial {
        /// Peer to dial.
        peer: PeerId,
        /// Session of the new attempt.
        session: SessionId,
        /// How the attempt's signals travel.
        order: crate::PathOrder,
    },
    /// Answer `offer`, the offer of `session`.
    Accept {
        /// Offerer.
        peer: PeerId,
        /// Session.
        session: SessionId,
        /// The offer (its body, as the offerer sent it).
        offer: SignalBody,
        /// How the attempt's signals travel.
        order: crate::PathOrder,
    },
    /// Refuse the offer of `session`: tell the offerer why.
    Reject {
        /// Offerer.
        peer: PeerId,
        /// Session.
        session: SessionId,
        /// Why, sent along and logged.
        reason: String,
    },
    /// Close a link or abandon an attempt (an attempt not yet open is aborted at the peer).
    Close {
        /// Peer.
        peer: PeerId,
        /// Session.
        session: SessionId,
        /// Why, for logs.
        reason: String,
    },
    /// Hand a checked signal (an answer or a candidate) to the attempt `session` with `peer`.
    Signal {
        /// The peer that sent it.
        peer: PeerId,
        /// Its session.
        session: SessionId,
        /// What it carries.
        body: SignalBody,
    },
}

/// What to tell the signalers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalingOp {
    /// Tell the rendezvous something about this node (admin role, leaving).
    Announce(Announcement),
    /// One of this node's relay envelopes (see [`super::Event::Relay`]) was answered, or never
    /// will be.
    RelayAnswered {
        /// The envelope's id.
        id: u64,
        /// What became of it.
        outcome: RelayOutcome,
    },
}

/// A driver of the state machine: what each output queue is handed to.
pub trait Drive {
    /// Write a mesh message on a link.
    fn transmit(&mut self, transmit: Transmit);
    /// Operate a transport.
    fn link_op(&mut self, op: LinkOp);
    /// Tell the signalers.
    fn signaling(&mut self, op: SignalingOp);
    /// Tell the application.
    fn event(&mut self, event: MeshEvent);
}

/// Any one output: the four queues in one list, in [`super::MeshState::drain`]'s order (for
/// simulators and tests that look at everything a step produced).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A [`Transmit`].
    Send(Transmit),
    /// A [`LinkOp`].
    Link(LinkOp),
    /// A [`SignalingOp`].
    Signaling(SignalingOp),
    /// A [`MeshEvent`].
    Emit(MeshEvent),
}

impl Drive for Vec<Output> {
    fn transmit(&mut self, t: Transmit) {
        self.push(Output::Send(t));
    }
    fn link_op(&mut self, op: LinkOp) {
        self.push(Output::Link(op));
    }
    fn signaling(&mut self, op: SignalingOp) {
        self.push(Output::Signaling(op));
    }
    fn event(&mut self, event: MeshEvent) {
        self.push(Output::Emit(event));
    }
}

/// The four queues.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) link_ops: VecDeque<LinkOp>,
    pub(super) signaling: VecDeque<SignalingOp>,
    pub(super) events: VecDeque<MeshEvent>,
}

impl super::MeshState {
    /// The next mesh message to write on a link.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next transport operation.
    pub fn poll_link_op(&mut self) -> Option<LinkOp> {
        self.out.link_ops.pop_front()
    }

    /// The next thing to tell the signalers.
    pub fn poll_signaling(&mut self) -> Option<SignalingOp> {
        self.out.signaling.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<MeshEvent> {
        self.out.events.pop_front()
    }

    /// Hands every queued output to `driver`: transmits, then link operations, then signaling,
    /// then application events (the order every driver and simulator must keep).
    pub fn drain(&mut self, driver: &mut impl Drive) {
        while let Some(t) = self.poll_transmit() {
            driver.transmit(t);
        }
        while let Some(op) = self.poll_link_op() {
            driver.link_op(op);
        }
        while let Some(op) = self.poll_signaling() {
            driver.signaling(op);
        }
        while let Some(e) = self.poll_event() {
            driver.event(e);
        }
    }

    /// Every queued output, in [`Self::drain`]'s order.
    pub fn drain_all(&mut self) -> Vec<Output> {
        let mut all = Vec::new();
        self.drain(&mut all);
        all
    }

    pub(super) fn link_op(&mut self, op: LinkOp) {
        self.out.link_ops.push_back(op);
    }

    pub(super) fn emit(&mut self, event: MeshEvent) {
        self.out.events.push_back(event);
    }

    pub(super) fn announce(&mut self, what: Announcement) {
        self.out.signaling.push_back(SignalingOp::Announce(what));
    }

    /// Queues `msg` for the open link to `to`; dropped (and logged) when there is none.
    pub(super) fn send(&mut self, to: &PeerId, msg: MeshMessage) {
        match self.link_session(to).cloned() {
            Some(session) => self.out.transmits.push_back(Transmit { to: to.clone(), session, msg }),
            None => tracing::debug!(%to, kind = msg.kind(), "no open link; mesh message not sent"),
        }
    }
}
