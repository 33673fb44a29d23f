//! The signaling protocol: JSON text frames tagged by `type`. See `docs/PROTOCOL.md`.

use mesh_core::{MemberInfo, PeerId, Role, RoomId, Signal, Vote, WorkerRecord};
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
        /// The peer's Ed25519 public key (64 hex digits). The server binds it to the peer id and
        /// hands it out with the member, so others can check the peer's signed signals.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Forward `signal` to `to`, a member of the same room.
    Signal {
        /// Recipient.
        to: PeerId,
        /// The signal.
        signal: Signal,
    },
    /// The sender is the room's elected admin, and these are its proof: the workers' signed
    /// votes for it at `epoch`. The server names it only if the votes that verify against the
    /// keys it bound come from a strict majority of the room's workers, and no admin of a higher
    /// epoch is named.
    AnnounceAdmin {
        /// The epoch of the votes.
        #[serde(default)]
        epoch: u64,
        /// The votes.
        #[serde(default)]
        votes: Vec<Vote>,
    },
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
    /// An `announce_admin` whose votes are not a strict majority's, or older than the named
    /// admin's epoch.
    NotProven,
    /// The registering key is not on the server's allowlist for that role.
    NotAllowed,
    /// The room store is unreachable (a cluster's Redis); try again.
    Unavailable,
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
        /// The key the sender registered (the server's binding): how a client's key reaches the
        /// workers it dials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
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

/// Request header of the WebSocket upgrade that may carry the `register` message, so the server
/// answers `registered` right after the upgrade: one round trip less than a first frame.
pub const REGISTER_HEADER: &str = "x-mesh-register";
/// Response header by which the server says it took the `register` of [`REGISTER_HEADER`]
/// (absent: an older server; the client then sends `register` as its first frame).
pub const REGISTER_TAKEN_HEADER: &str = "x-mesh-register-taken";
/// Largest `register` carried in the header; a larger one (a big record) goes as a frame.
pub const MAX_HEADER_REGISTER: usize = 4096;

/// Encodes text for a header value: `%XX` for `%`, control characters and every non-ASCII byte.
pub fn header_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b == b'%' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Decodes [`header_encode`]; `None` for a malformed escape or a result that is not UTF-8.
pub fn header_decode(value: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            let hex = std::str::from_utf8(value.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_round_trips_any_unicode_and_refuses_bad_escapes() {
        let text = r#"{"type":"register","room":"r","peer":"w1","record":{"name":"café 100% ☃"}}"#;
        let encoded = header_encode(text);
        assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)), "{encoded}");
        assert_eq!(header_decode(encoded.as_bytes()).as_deref(), Some(text));
        assert_eq!(header_decode(b"%zz"), None);
        assert_eq!(header_decode(b"%4"), None);
        assert_eq!(header_decode(b"%FF%FE"), None, "not UTF-8");
    }
}
