//! What each client message does once it passed the connection's limits: registration,
//! signals, admin announcements (their proofs checked), withdrawal and leave.

use super::connection::{Connection, Next};

use crate::protocol::{parse_client, ClientMsg, ErrorCode, ServerMsg};
use crate::store::Conn;
use mesh_core::{MemberInfo, Role, RoomId, WorkerRecord};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Connection {
    pub(super) async fn on_text(&mut self, text: &str, tx: &mpsc::Sender<ServerMsg>) -> Next {
        let reply = |msg: ServerMsg| {
            let _ = tx.try_send(msg);
        };
        let msg = match parse_client(text) {
            Ok(msg) => msg,
            Err((code, message)) => {
                tracing::warn!(?code, %message, "frame rejected");
                reply(ServerMsg::error(code, message));
                return Next::Continue;
            }
        };
        match (msg, self.registered.clone()) {
            (ClientMsg::Register { room, peer, role, token, record, rejoin, key }, None) => {
                if key.as_ref().is_some_and(|k| k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit())) {
                    reply(ServerMsg::error(
                        ErrorCode::InvalidMessage,
                        "key: expected 64 hex digits (an Ed25519 public key)",
                    ));
                    return Next::Continue;
                }
                if !self.token_ok(&room, token.as_deref()) {
                    tracing::warn!(%room, %peer, "bad token");
                    reply(ServerMsg::error(ErrorCode::BadToken, format!("wrong or missing token for room {room}")));
                    return Next::Close(CloseCode::Policy, "bad token");
                }
                let (workers, clients) = (&self.config.allow_workers, &self.config.allow_clients);
                if !crate::trust::allowed(workers, clients, role, key.as_deref()) {
                    tracing::warn!(%room, %peer, ?role, "key not on the allowlist");
                    let message = format!("the key registered is not on this server's allowlist for {role:?}s");
                    reply(ServerMsg::error(ErrorCode::NotAllowed, message));
                    return Next::Close(CloseCode::Policy, "key not allowed");
                }
                let member_key = key.clone();
                let member = MemberInfo {
                    peer: peer.clone(),
                    record: record.unwrap_or_else(|| WorkerRecord::new(0, Default::default())),
                    key,
                };
                let conn = Conn { id: self.id, tx: tx.clone(), lost: self.lost.clone() };
                let t = Instant::now();
                let joined = self.store.join(&room, member, role, rejoin, conn, self.config.max_workers_per_room).await;
                self.metrics.store_op(t.elapsed());
                match joined {
                    Ok((members, admin)) => {
                        self.metrics.registered();
                        tracing::info!(%room, %peer, ?role, "registered");
                        self.registered = Some((room.clone(), peer.clone(), role));
                        self.key = member_key;
                        reply(ServerMsg::Registered { room: room.clone(), peer: peer.clone(), members, admin });
                        self.store.answered(&room, &peer, self.id).await;
                    }
                    Err(code) => {
                        tracing::warn!(%room, %peer, ?code, "registration refused");
                        let message = match code {
                            ErrorCode::RoomFull => {
                                format!("room {room} has its {} workers", self.config.max_workers_per_room)
                            }
                            ErrorCode::DuplicatePeer => format!("peer id {peer} is already registered in room {room}"),
                            ErrorCode::Unavailable => "the room store is unreachable; try again".into(),
                            _ => "registration refused".into(),
                        };
                        reply(ServerMsg::error(code, message));
                    }
                }
            }
            (ClientMsg::Register { .. }, Some(_)) => {
                reply(ServerMsg::error(ErrorCode::AlreadyRegistered, "already registered on this connection"))
            }
            (ClientMsg::Ping { id }, _) => reply(ServerMsg::Pong { id }),
            (_, None) => reply(ServerMsg::error(ErrorCode::NotRegistered, "register first")),
            (ClientMsg::Signal { to, signal }, Some((room, peer, _))) => {
                let t = Instant::now();
                let sender = crate::store::Sender { peer: peer.clone(), key: self.key.clone() };
                let forwarded = self.store.forward(&room, sender, &to, signal).await;
                self.metrics.store_op(t.elapsed());
                if forwarded.is_ok() {
                    self.metrics.forwarded();
                }
                if let Err(code) = forwarded {
                    let message = match code {
                        ErrorCode::Unavailable => "the room store is unreachable; try again".into(),
                        _ => format!("{to} is not in room {room}"),
                    };
                    reply(ServerMsg::error(code, message));
                }
            }
            (ClientMsg::AnnounceAdmin { epoch, votes }, Some((room, peer, role))) => {
                if role != Role::Worker {
                    reply(ServerMsg::error(ErrorCode::NotWorker, "only workers can be admin"));
                    return Next::Continue;
                }
                let t = Instant::now();
                let refusal = match self.store.workers(&room).await {
                    Err(code) => Some((code, "the room store is unreachable; try again".to_string())),
                    Ok(workers) => {
                        let checked = if self.proven.0 == epoch { self.proven.1.clone() } else { Default::default() };
                        match crate::trust::check_admin_proof(&room, &peer, epoch, &votes, &workers, &checked) {
                            Err(why) => Some((ErrorCode::NotProven, why)),
                            Ok(_) if !self.store.set_admin(&room, &peer, epoch).await => {
                                Some((ErrorCode::NotProven, format!("an admin of an epoch above {epoch} is named")))
                            }
                            Ok(voters) => {
                                self.proven = (epoch, voters);
                                None
                            }
                        }
                    }
                };
                self.metrics.store_op(t.elapsed());
                if let Some((code, message)) = refusal {
                    tracing::info!(%room, %peer, epoch, %message, "admin announcement refused");
                    reply(ServerMsg::error(code, message));
                }
            }
            (ClientMsg::WithdrawAdmin, Some((room, peer, _))) => self.store.withdraw_admin(&room, &peer).await,
            (ClientMsg::Leave, Some(_)) => return Next::Close(CloseCode::Normal, "left the room"),
        }
        Next::Continue
    }

    fn token_ok(&self, room: &RoomId, given: Option<&str>) -> bool {
        let expected = self.config.tokens.get(room.as_str()).or(self.config.shared_secret.as_ref());
        match expected {
            None => true,
            Some(expected) => bool::from(expected.as_bytes().ct_eq(given.unwrap_or_default().as_bytes())),
        }
    }
}
