//! What a node does with each mesh message that arrives over a link (docs/BEHAVIOUR.md 6, 7, 17, 25).
//!
//! `from` is always the peer of the link the message came over, so a message can never speak for
//! another peer: records are accepted only from their owner, goodbyes only from the leaver, and a
//! relay envelope whose `from` is not its link's peer is refused with `relay_error` (relay.rs).

use super::MeshState;
use crate::id::PeerId;
use crate::query::RegistryPage;
use crate::signal::SessionId;
use crate::signaler::RelayOutcome;
use crate::wire::MeshMessage;
use std::time::Instant;

impl MeshState {
    pub(super) fn on_message(&mut self, now: Instant, from: PeerId, session: &SessionId, msg: MeshMessage) {
        if self.link_session(&from) != Some(session) {
            tracing::debug!(%from, %session, kind = msg.kind(), "message on an attempt that is not the link; dropped");
            return;
        }
        self.heard_from(now, &from);
        match msg {
            MeshMessage::PeerList { admin, peers } if admin == from && self.speaks_for_admin(&from) => {
                self.on_peer_list(now, &from, peers)
            }
            MeshMessage::PeerList { .. } => self.refuse(&from, "peer_list", "only the admin this node follows"),
            MeshMessage::PeerJoined { member } if self.speaks_for_admin(&from) => {
                self.on_peer_joined(now, member, false)
            }
            MeshMessage::PeerJoined { .. } => self.refuse(&from, "peer_joined", "only the admin this node follows"),
            MeshMessage::PeerLeft { peer } if peer == from => self.on_peer_left(now, &peer),
            MeshMessage::PeerLeft { .. } => self.refuse(&from, "peer_left", "only the leaver may say it left"),
            MeshMessage::Relay { id, to, from: origin, signal } => self.on_relay(now, from, id, to, origin, signal),
            MeshMessage::RelayAck { id } => self.on_relay_answer(&from, id, RelayOutcome::Delivered),
            MeshMessage::RelayError { id, reason } => self.on_relay_answer(&from, id, RelayOutcome::Refused(reason)),
            MeshMessage::Heartbeat { admin, epoch, admin_linked, links, .. } => {
                self.on_heartbeat(now, &from, admin, epoch, (admin_linked, links))
            }
            MeshMessage::AdminVerify { id, epoch, vote } => self.on_admin_verify(now, &from, id, (epoch, vote)),
            MeshMessage::AdminVerifyAck { id, admin, epoch, votes } => {
                self.on_admin_verify_ack(now, &from, id, admin, (epoch, votes))
            }
            MeshMessage::AdminVote { epoch, sig } if self.is_present_worker(&from) => {
                self.add_vote(now, &from, epoch, sig.as_deref())
            }
            MeshMessage::AdminVote { .. } => self.refuse(&from, "admin_vote", "only workers vote"),
            MeshMessage::AdminProof { epoch, votes } => self.on_admin_proof(now, &from, epoch, votes),
            MeshMessage::Record { peer, record } if peer == from => {
                self.merge_record(&from, &peer, &record);
            }
            MeshMessage::Record { .. } => self.refuse(&from, "room_state", "only the owner may update a record"),
            MeshMessage::RegistryQuery { id, filter } => {
                let RegistryPage { workers, total_count, matched_count } = filter.apply(&self.room);
                let links =
                    workers.iter().filter_map(|m| self.links_of(&m.peer).map(|n| (m.peer.clone(), n))).collect();
                self.send(&from, MeshMessage::RegistryAnswer { id, workers, total_count, matched_count, links });
            }
            MeshMessage::RegistryAnswer { id, workers, total_count, matched_count, .. } => {
                self.on_registry_answer(&from, id, RegistryPage { workers, total_count, matched_count })
            }
        }
    }

    /// The open links of worker `peer` to other workers, as this node knows them: its own, or
    /// what the peer's latest heartbeat said.
    fn links_of(&self, peer: &PeerId) -> Option<u32> {
        if peer == &self.cfg.me {
            return Some(self.worker_links());
        }
        self.links.peers.get(peer).and_then(|e| e.view.as_ref()).and_then(|v| v.links)
    }
}
