//! What a node does with each mesh message that arrives over a link (docs/BEHAVIOUR.md 6, 7, 17, 25).
//!
//! `from` is always the peer of the link the message came over, so a message can never speak for
//! another peer: records are accepted only from their owner, goodbyes only from the leaver, and a
//! relay envelope whose `from` is not its link's peer is refused with `relay_error`.

use super::{Action, MeshEvent, MeshState};
use crate::id::PeerId;
use crate::query::RegistryPage;
use crate::signal::Signal;
use crate::signaler::RelayOutcome;
use crate::wire::{MeshMessage, RelayErrorReason};
use std::time::Instant;

impl MeshState {
    pub(super) fn on_message(&mut self, now: Instant, from: PeerId, msg: MeshMessage) {
        if !self.is_linked(&from) {
            tracing::debug!(%from, kind = msg.kind(), "message from a peer without an open link; ignored");
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
            MeshMessage::Relay { id, to, from: origin, signal } => self.on_relay(from, id, to, origin, signal),
            MeshMessage::RelayAck { id } => {
                self.push(Action::RelayAnswered { relay: from, id, outcome: RelayOutcome::Delivered })
            }
            MeshMessage::RelayError { id, reason } => {
                self.push(Action::RelayAnswered { relay: from, id, outcome: RelayOutcome::Refused(reason) })
            }
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
            MeshMessage::RoomState { peer, record } if peer == from => {
                self.merge_record(&from, &peer, &record);
            }
            MeshMessage::RoomState { .. } => self.refuse(&from, "room_state", "only the owner may update a record"),
            MeshMessage::RegistryQuery { id, filter } => {
                let RegistryPage { workers, total_count, matched_count } = filter.apply(&self.room);
                let links =
                    workers.iter().filter_map(|m| self.links_of(&m.peer).map(|n| (m.peer.clone(), n))).collect();
                self.send(&from, MeshMessage::RegistryAnswer { id, workers, total_count, matched_count, links });
            }
            MeshMessage::RegistryAnswer { id, workers, total_count, matched_count, .. } => {
                self.on_registry_answer(&from, id, RegistryPage { workers, total_count, matched_count })
            }
            MeshMessage::App { body } => self.emit(MeshEvent::AppMessage { from, body }),
        }
    }

    /// A relay envelope over the link to `link_peer`: either for us, or for us to forward.
    fn on_relay(&mut self, link_peer: PeerId, id: u64, to: PeerId, origin: PeerId, signal: Signal) {
        if to == self.cfg.me {
            if origin == self.cfg.me {
                return self.refuse(&link_peer, "relay", "a relayed signal claiming to come from this node");
            }
            if origin != link_peer && !self.is_present_worker(&link_peer) {
                return self.refuse(&link_peer, "relay", "only workers relay signals of others");
            }
            if !self.accepts_signal(&origin, &signal, Some(&link_peer), None) {
                return;
            }
            self.push(Action::DeliverSignal { from: origin, signal });
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

    /// The open links of worker `peer` to other workers, as this node knows them: its own, or
    /// what the peer's latest heartbeat said.
    fn links_of(&self, peer: &PeerId) -> Option<u32> {
        if peer == &self.cfg.me {
            return Some(self.worker_links());
        }
        self.peers.get(peer).and_then(|e| e.view.as_ref()).and_then(|v| v.links)
    }
}
