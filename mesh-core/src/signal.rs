//! The signaling payload: what a [`crate::Transport`] needs carried to the other side to open a link.
//!
//! Signalers never look inside a [`Signal`]; they only carry it. Every signal belongs to one
//! [`SessionId`], chosen by the offering side, so answers and candidates for an abandoned attempt
//! (for example the losing side of two crossing offers) are recognised and dropped.

use crate::id::PeerId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One link attempt: who offered it and the offerer's sequence number for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId {
    /// The peer that sent the offer.
    pub offerer: PeerId,
    /// Sequence number, unique per offerer process.
    pub seq: u64,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.offerer, self.seq)
    }
}

/// What one signal says. The text fields are opaque to everything but the transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalBody {
    /// The offering side's session description.
    Offer {
        /// Transport-specific description (SDP for WebRTC).
        sdp: String,
    },
    /// The answering side's session description.
    Answer {
        /// Transport-specific description (SDP for WebRTC).
        sdp: String,
    },
    /// One trickled connectivity candidate.
    Candidate {
        /// Transport-specific candidate (ICE candidate JSON for WebRTC).
        candidate: String,
    },
    /// The sender abandons this session (lost a crossing, gave up, or closed).
    Abort {
        /// Human-readable reason, for logs.
        reason: String,
    },
}

impl SignalBody {
    /// The SDP of an offer; what an answering transport takes (anything else is refused with
    /// why).
    pub fn into_offer_sdp(self) -> Result<String, crate::TransportError> {
        match self {
            SignalBody::Offer { sdp } => Ok(sdp),
            other => Err(crate::TransportError::BadSignal(format!("accept needs an offer, got a {}", other.kind()))),
        }
    }

    /// The body's kind, for logs and timeline marks: `offer`, `answer`, `candidate` or `abort`.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalBody::Offer { .. } => "offer",
            SignalBody::Answer { .. } => "answer",
            SignalBody::Candidate { .. } => "candidate",
            SignalBody::Abort { .. } => "abort",
        }
    }
}

/// A signal: a body and the session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The link attempt this signal belongs to.
    pub session: SessionId,
    /// What it says.
    pub body: SignalBody,
    /// The origin's Ed25519 signature over (room, from, to, session, body), as hex
    /// (`crate::identity`). Absent only from peers that have no key (tests, tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl Signal {
    /// An unsigned signal (the node's signaler chain signs it on the way out).
    pub fn new(session: SessionId, body: SignalBody) -> Self {
        Self { session, body, sig: None }
    }

    /// True for the first signal of a session.
    pub fn is_offer(&self) -> bool {
        matches!(self.body, SignalBody::Offer { .. })
    }
}
