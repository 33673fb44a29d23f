//! Node identities: an Ed25519 key pair per node, and the signature every signal carries.
//!
//! The public key travels in `register`; the rendezvous binds it to the peer id and hands it out
//! with the room's members. A signal is signed by its origin over (room, from, to, session, body),
//! so a peer that relays it can drop it but never forge or alter it (the SDP it carries holds the
//! DTLS fingerprint: a relay cannot put itself in the middle of a link either). A worker signs its
//! own record the same way, so a peer list or registry answer cannot alter it.

use crate::id::{PeerId, RoomId};
use crate::room::WorkerRecord;
use crate::signal::Signal;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::path::Path;

/// A node's signing key.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public_hex()) // never the secret
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// The key whose 32-byte secret is stored as hex in `path`, created (readable by the owner
    /// only) if the file does not exist: a stable identity across restarts.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = from_hex(text.trim()).ok_or(format!("{}: not 64 hex digits", path.display()))?;
                let seed: [u8; 32] = bytes.try_into().map_err(|_| format!("{}: not a 32-byte key", path.display()))?;
                Ok(Self(SigningKey::from_bytes(&seed)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(path, &to_hex(key.0.as_bytes())).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The public key, as 64 hex digits (what `register` and member lists carry).
    pub fn public_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// Signs `signal` from `from` to `to` in `room`.
    pub fn sign(&self, room: &RoomId, from: &PeerId, to: &PeerId, signal: &Signal) -> String {
        to_hex(&self.0.sign(&signed_bytes(room, from, to, signal)).to_bytes())
    }

    /// Signs `record` as `owner`'s in `room`.
    pub fn sign_record(&self, room: &RoomId, owner: &PeerId, record: &WorkerRecord) -> String {
        to_hex(&self.0.sign(&record_bytes(room, owner, record)).to_bytes())
    }

    /// Signs this node's vote for `admin` as the admin of `room` at `epoch`.
    pub fn sign_vote(&self, room: &RoomId, epoch: u64, admin: &PeerId) -> String {
        to_hex(&self.0.sign(&vote_bytes(room, epoch, admin)).to_bytes())
    }
}

/// Which keys may be members of a room (`[trust]` in a node's configuration; the same lists in
/// mesh-signal's). No list: any key. With a list, a worker (or client) whose bound key is not on
/// it is refused, whoever introduces it, the rendezvous included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Worker keys allowed (64 hex digits each); none: any.
    pub workers: Option<std::collections::BTreeSet<String>>,
    /// Client keys allowed; none: any.
    pub clients: Option<std::collections::BTreeSet<String>>,
}

impl Allowlist {
    /// True if `key` may be a worker of the room.
    pub fn allows_worker(&self, key: &str) -> bool {
        self.workers.as_ref().is_none_or(|l| l.contains(&key.to_ascii_lowercase()))
    }

    /// True if `key` may be a client of the room (worker keys may be clients too).
    pub fn allows_client(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.clients.as_ref().is_none_or(|l| l.contains(&key))
            || self.workers.as_ref().is_some_and(|l| l.contains(&key))
    }

    /// True if a peer registering as `role` with `key` (none: it registered no key) may join:
    /// without a key, only where that role has no list.
    pub fn admits(&self, role: crate::Role, key: Option<&str>) -> bool {
        match (role, key) {
            (crate::Role::Worker, Some(key)) => self.allows_worker(key),
            (crate::Role::Client, Some(key)) => self.allows_client(key),
            (crate::Role::Worker, None) => self.workers.is_none(),
            (crate::Role::Client, None) => self.clients.is_none(),
        }
    }
}

/// A peer's public key, parsed once (checking a signature then skips the key's decoding).
#[derive(Debug, Clone)]
pub struct PublicKey {
    hex: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses 64 hex digits; `None` if they are not an Ed25519 public key.
    pub fn parse(hex: &str) -> Option<Self> {
        let bytes: [u8; 32] = from_hex(hex)?.try_into().ok()?;
        Some(Self { hex: hex.to_string(), key: VerifyingKey::from_bytes(&bytes).ok()? })
    }

    /// The key as hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// True if `signal` from `from` to `to` in `room` carries this key's valid signature.
    pub fn signed_signal(&self, room: &RoomId, from: &PeerId, to: &PeerId, signal: &Signal) -> bool {
        self.check(signal.sig.as_deref(), &signed_bytes(room, from, to, signal))
    }

    /// True if `record`, as `owner`'s in `room`, carries this key's valid signature.
    pub fn signed_record(&self, room: &RoomId, owner: &PeerId, record: &WorkerRecord) -> bool {
        self.check(record.sig.as_deref(), &record_bytes(room, owner, record))
    }

    /// True if `sig` is this key's vote for `admin` as the admin of `room` at `epoch`.
    pub fn signed_vote(&self, room: &RoomId, epoch: u64, admin: &PeerId, sig: Option<&str>) -> bool {
        self.check(sig, &vote_bytes(room, epoch, admin))
    }

    fn check(&self, sig: Option<&str>, bytes: &[u8]) -> bool {
        match sig.and_then(from_hex).and_then(|b| <[u8; 64]>::try_from(b).ok()) {
            Some(sig) => self.key.verify(bytes, &Signature::from_bytes(&sig)).is_ok(),
            None => false,
        }
    }
}

fn record_bytes(room: &RoomId, owner: &PeerId, r: &WorkerRecord) -> Vec<u8> {
    let value = serde_json::json!([room, owner, r.version, r.status, r.priority, r.metadata]);
    let mut bytes = b"mesh-record-v1\n".to_vec();
    bytes.extend(value.to_string().into_bytes());
    bytes
}

/// What a vote covers: a JSON array (room, epoch, admin), with a domain prefix.
fn vote_bytes(room: &RoomId, epoch: u64, admin: &PeerId) -> Vec<u8> {
    let value = serde_json::json!([room, epoch, admin]);
    let mut bytes = b"mesh-vote-v1\n".to_vec();
    bytes.extend(value.to_string().into_bytes());
    bytes
}

/// What a signature covers: a JSON array (room, from, to, session, body), with a domain prefix.
fn signed_bytes(room: &RoomId, from: &PeerId, to: &PeerId, signal: &Signal) -> Vec<u8> {
    let value = serde_json::json!([room, from, to, signal.session, signal.body]);
    let mut bytes = b"mesh-signal-v1\n".to_vec();
    bytes.extend(value.to_string().into_bytes());
    bytes
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{SessionId, SignalBody};

    fn verify(public_hex: &str, room: &RoomId, from: &PeerId, to: &PeerId, signal: &Signal) -> bool {
        PublicKey::parse(public_hex).is_some_and(|k| k.signed_signal(room, from, to, signal))
    }

    fn ids() -> (RoomId, PeerId, PeerId) {
        (RoomId::new("r").unwrap(), PeerId::new("a").unwrap(), PeerId::new("b").unwrap())
    }

    fn offer() -> Signal {
        let session = SessionId { offerer: PeerId::new("a").unwrap(), seq: 1 };
        Signal { session, body: SignalBody::Offer { sdp: "v=0 fingerprint".into() }, sig: None }
    }

    #[test]
    fn a_signature_verifies_only_for_its_signer_room_ends_and_content() {
        let (room, a, b) = ids();
        let key = NodeKey::generate();
        let mut signal = offer();
        signal.sig = Some(key.sign(&room, &a, &b, &signal));
        assert!(verify(&key.public_hex(), &room, &a, &b, &signal));
        assert!(!verify(&NodeKey::generate().public_hex(), &room, &a, &b, &signal), "another key");
        assert!(!verify(&key.public_hex(), &RoomId::new("other").unwrap(), &a, &b, &signal), "another room");
        assert!(!verify(&key.public_hex(), &room, &b, &a, &signal), "other ends");
        let mut tampered = signal.clone();
        tampered.body = SignalBody::Offer { sdp: "v=0 another fingerprint".into() };
        assert!(!verify(&key.public_hex(), &room, &a, &b, &tampered), "altered body");
        let unsigned = offer();
        assert!(!verify(&key.public_hex(), &room, &a, &b, &unsigned), "no signature");
        let mut garbage = offer();
        garbage.sig = Some("zz".into());
        assert!(!verify("not hex", &room, &a, &b, &garbage));
    }

    #[test]
    fn a_key_file_gives_the_same_identity_every_time() {
        let path = std::env::temp_dir().join(format!("mesh-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = NodeKey::load_or_create(&path).unwrap().public_hex();
        assert_eq!(NodeKey::load_or_create(&path).unwrap().public_hex(), first);
        std::fs::write(&path, "short").unwrap();
        assert!(NodeKey::load_or_create(&path).unwrap_err().contains("hex"));
        let _ = std::fs::remove_file(&path);
    }
}
