//! The signaling protocol: JSON text frames tagged by `type`. See `docs/PROTOCOL.md`.

use mesh_core::{MemberInfo, PeerId, Role, RoomId, Signal, WorkerRecord};
use serde::{Deserialize, Serialize};

/// A frame from a peer to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join `room` as `peer`. Must be the first frame.
    Register {
        /// Room to join.
        room: RoomId,
        /// Peer id, unique in the room.
        peer: PeerId,
        /// `worker` or `client`.
        role: Role,
        /// Room access token (if the room or server requires one).
        #[serde(default)]
        token: Option<String>,
        /// The worker's record (metadata, status, priority); defaults to an empty record.
        #[serde(default)]
        record: Option<WorkerRecord>,
        /// True when the peer registers again (the server restarted or the connection broke):
        /// it is already in the room's mesh, so it is never taken for the first worker.
        #[serde(default)]
        rejoin: bool,
    },
    /// Forward `signal` to `to`, a member of the same room.
    Signal {
        /// Recipient.
        to: PeerId,
        /// The signal.
        signal: Signal,
    },
    /// The sender is the room's elected admin.
    AnnounceAdmin,
    /// The sender no longer holds the admin role (it lost to another admin); the server forgets
    /// it as admin if it still names it.
    WithdrawAdmin,
    /// The sender leaves the room; the server closes the connection.
    Leave,
    /// Keep-alive; answered by `pong` with the same id.
    Ping {
        /// Echoed.
        #[serde(default)]
        id: u64,
    },
}

/// Why the server refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON.
    BadJson,
    /// JSON, but not a known message (unknown `type`, missing or invalid field).
    InvalidMessage,
    /// Frame over the size limit.
    TooLarge,
    /// Too many frames per second.
    RateLimited,
    /// A frame other than `register` before registering.
    NotRegistered,
    /// A second `register` on one connection.
    AlreadyRegistered,
    /// The room has its maximum number of workers.
    RoomFull,
    /// Another live connection holds that peer id in the room.
    DuplicatePeer,
    /// Wrong or missing token.
    BadToken,
    /// The signal's recipient is not in the sender's room.
    UnknownPeer,
    /// Only workers may announce themselves admin.
    NotWorker,
}

/// A frame from the server to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Registration accepted: the room's other workers and its admin.
    Registered {
        /// Room joined.
        room: RoomId,
        /// The registered peer.
        peer: PeerId,
        /// Other workers in the room.
        members: Vec<MemberInfo>,
        /// The admin, if one announced itself.
        admin: Option<PeerId>,
    },
    /// A worker joined the room.
    PeerJoined {
        /// The newcomer.
        member: MemberInfo,
    },
    /// A peer left the room.
    PeerLeft {
        /// Who left.
        peer: PeerId,
    },
    /// A signal from another member of the room.
    Signal {
        /// Sender, as registered on its connection.
        from: PeerId,
        /// The signal.
        signal: Signal,
    },
    /// A worker announced itself admin.
    Admin {
        /// The admin.
        peer: PeerId,
    },
    /// Answer to `ping`.
    Pong {
        /// Echo of the ping id.
        id: u64,
    },
    /// A refused frame; the connection stays open unless the error says otherwise.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

impl ServerMsg {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { code, message: message.into() }
    }

    /// As JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a client frame, classifying the failure for the error frame.
pub fn parse_client(text: &str) -> Result<ClientMsg, (ErrorCode, String)> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| (ErrorCode::BadJson, e.to_string()))?;
    serde_json::from_value(value).map_err(|e| (ErrorCode::InvalidMessage, e.to_string()))
}
