//! Mesh wire messages: what workers say to each other over their links, as JSON tagged by `type`.
//!
//! This module has no tokio and no transport in it. [`MeshMessage::decode`] is the only way bytes
//! off a link become a message: it enforces the size limit and never panics.

use crate::id::PeerId;
use crate::query::RegistryFilter;
use crate::room::{MemberInfo, WorkerRecord};
use crate::signal::Signal;
use serde::{Deserialize, Serialize};

/// Largest mesh message accepted off a link, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The largest admin epoch taken (integers above 2^53 do not survive every JSON parser; a vote
/// or proof beyond it is refused, so a rogue cannot exhaust the epochs).
pub const MAX_EPOCH: u64 = 1 << 53;

/// Why a relay could not pass an envelope on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayErrorReason {
    /// The relay has no open link to the target.
    NotLinked,
    /// The envelope's `from` was not the peer of the link it came over.
    SpoofedSender,
    /// The envelope was malformed (for example addressed to the relay itself).
    Invalid,
}

/// One worker's signed vote for an admin at an epoch (the admin and epoch are those of the
/// message that carries it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The worker that voted.
    pub voter: PeerId,
    /// Its Ed25519 signature over (room, epoch, admin), as hex (absent only between unsigned test
    /// nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// An admin's proof of its role: votes of the room's workers for it at `epoch`. It is a proof
/// for a node when the votes verify and come from a strict majority of the workers that node
/// knows to be present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The epoch the votes are for.
    pub epoch: u64,
    /// The votes, one per worker.
    pub votes: Vec<Vote>,
}

/// Every message a worker or client sends over a mesh link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MeshMessage {
    /// Admin → newcomer: every other linked worker, and the admin's own record.
    PeerList {
        /// The admin sending the list.
        admin: PeerId,
        /// Workers the newcomer should dial, with their records.
        peers: Vec<MemberInfo>,
    },
    /// A worker joined the room.
    PeerJoined {
        /// The newcomer and its record.
        member: MemberInfo,
    },
    /// A worker left the room (the sender itself when it leaves gracefully).
    PeerLeft {
        /// Who left.
        peer: PeerId,
    },
    /// A signal hopping over a relay's links. Sent to the relay with `from` = the sender; the relay
    /// checks `from` against its link and forwards it unchanged to `to`.
    Relay {
        /// Echoed by [`MeshMessage::RelayAck`] / [`MeshMessage::RelayError`].
        id: u64,
        /// Final recipient.
        to: PeerId,
        /// Original sender, authenticated by the relay.
        from: PeerId,
        /// The signal carried.
        signal: Signal,
    },
    /// The relay handed envelope `id` to the target's link.
    RelayAck {
        /// Echo of the envelope id.
        id: u64,
    },
    /// The relay could not pass envelope `id` on.
    RelayError {
        /// Echo of the envelope id.
        id: u64,
        /// Why.
        reason: RelayErrorReason,
    },
    /// Liveness beat, carrying the sender's view of the admin: settles two admins, and tells a
    /// peer that lost its own link to the admin whether the room still reaches it.
    Heartbeat {
        /// Sender's beat counter.
        seq: u64,
        /// Whom the sender takes for admin.
        admin: Option<PeerId>,
        /// The admin epoch the sender knows (raised by each election a majority makes).
        #[serde(default)]
        epoch: u64,
        /// True when the sender is the admin or holds an open link to it.
        #[serde(default)]
        admin_linked: bool,
        /// Open links the sender holds to present workers (absent from older peers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        links: Option<u32>,
    },
    /// "Are you alive and taking the admin role?" sent to a newly elected peer, with the
    /// asker's signed vote for it at the epoch the asker's election gives.
    AdminVerify {
        /// Echoed by the ack.
        id: u64,
        /// The epoch the vote is for (the asker's, raised by one when its election was made by a
        /// strict majority of the room's workers).
        #[serde(default)]
        epoch: u64,
        /// The asker's vote for the recipient at `epoch` (absent from clients, which do not vote).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vote: Option<String>,
    },
    /// Answer to [`MeshMessage::AdminVerify`]. The asker counts the admin as verified only when
    /// `admin` names the answering peer itself.
    AdminVerifyAck {
        /// Echo of the verify id.
        id: u64,
        /// Whom the answering peer takes for admin now.
        admin: Option<PeerId>,
        /// The admin epoch the answering peer knows.
        #[serde(default)]
        epoch: u64,
        /// When `admin` is the answering peer: its proof, the workers' signed votes for it at
        /// `epoch` (see [`MeshMessage::AdminProof`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        votes: Vec<Vote>,
    },
    /// Follower → its admin: "I follow you at `epoch`", a signed vote (sent once the follower
    /// verified the admin at an epoch it had not voted for).
    AdminVote {
        /// The admin's epoch the vote is for.
        epoch: u64,
        /// The vote: the follower's signature over (room, epoch, admin).
        #[serde(default)]
        sig: Option<String>,
    },
    /// Admin → every linked peer: its proof of the role, the votes it holds at its epoch. A
    /// node raises its epoch only on a proof with votes from a strict majority of the room's
    /// workers. Sent when the epoch rises, on a new link, and to a rival it outweighs.
    AdminProof {
        /// The epoch the votes are for.
        epoch: u64,
        /// The votes, one per worker.
        votes: Vec<Vote>,
    },
    /// A worker's own record, sent when a link opens and whenever it changes (status,
    /// metadata). One record; its wire name is `room_state`.
    #[serde(rename = "room_state")]
    Record {
        /// The record's owner.
        peer: PeerId,
        /// Its new record.
        record: WorkerRecord,
    },
    /// A client (or worker) asks the admin for the workers matching a filter.
    RegistryQuery {
        /// Echoed by the answer.
        id: u64,
        /// Which workers (every field optional; none matches every present worker).
        #[serde(flatten)]
        filter: RegistryFilter,
    },
    /// The admin's answer to a registry query.
    RegistryAnswer {
        /// Echo of the query id.
        id: u64,
        /// Matching workers, highest priority first, then by peer id.
        workers: Vec<MemberInfo>,
        /// Present workers in the room.
        #[serde(default)]
        total_count: usize,
        /// Workers that matched before the `max` cut.
        #[serde(default)]
        matched_count: usize,
        /// As the admin last heard (its own, and each worker's heartbeat): the open links to
        /// other workers of each listed worker. For dashboards; absent from older admins.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        links: std::collections::BTreeMap<PeerId, u32>,
    },
}

/// Why bytes off a link are not a mesh message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the configured limit.
    #[error("message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, an unknown `type`, or a missing or invalid field.
    #[error("malformed mesh message: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl MeshMessage {
    /// Parses one message, refusing anything over `limit` bytes.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge { len: bytes.len(), limit });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Serializes to JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing this enum cannot fail: every field is a plain serde type with string keys.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The `type` tag, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PeerList { .. } => "peer_list",
            Self::PeerJoined { .. } => "peer_joined",
            Self::PeerLeft { .. } => "peer_left",
            Self::Relay { .. } => "relay",
            Self::RelayAck { .. } => "relay_ack",
            Self::RelayError { .. } => "relay_error",
            Self::Heartbeat { .. } => "heartbeat",
            Self::AdminVerify { .. } => "admin_verify",
            Self::AdminVerifyAck { .. } => "admin_verify_ack",
            Self::AdminVote { .. } => "admin_vote",
            Self::AdminProof { .. } => "admin_proof",
            Self::Record { .. } => "room_state",
            Self::RegistryQuery { .. } => "registry_query",
            Self::RegistryAnswer { .. } => "registry_answer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_type() {
        let m = MeshMessage::Heartbeat { seq: 3, admin: None, epoch: 2, admin_linked: false, links: None };
        let text = String::from_utf8(m.encode()).unwrap();
        assert_eq!(text, r#"{"type":"heartbeat","seq":3,"admin":null,"epoch":2,"admin_linked":false}"#);
        assert_eq!(MeshMessage::decode(text.as_bytes(), 1024).unwrap(), m);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"{}",
            br#"{"type":"nope"}"#,
            br#"{"type":"heartbeat"}"#,
            br#"{"type":"peer_left","peer":"bad id!"}"#,
            &[0xff, 0xfe, 0x00],
        ];
        for case in cases {
            assert!(MeshMessage::decode(case, 1024).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
        let big = vec![b' '; 2048];
        assert!(matches!(MeshMessage::decode(&big, 1024), Err(DecodeError::TooLarge { len: 2048, .. })));
    }
}
