//! The `memory` [`Signaler`]: registers with the [`MemoryNetwork`]'s rendezvous and forwards
//! signals within the room. Dropping it (a crashed process) deregisters it, as a server would
//! notice a closed connection.

use super::{MemoryNetwork, NAME};
use crate::id::{PeerId, RoomId};
use crate::room::MemberInfo;
use crate::signal::Signal;
use crate::signaler::{Announcement, Inbound, SignalError, Signaler, SignalerContext, SignalingEvent};
use async_trait::async_trait;
use std::sync::Mutex;

/// Signaling through a [`MemoryNetwork`].
pub struct MemorySignaler {
    net: MemoryNetwork,
    registered: Mutex<Option<(RoomId, PeerId)>>,
}

impl MemorySignaler {
    /// A signaler on `net`.
    pub fn new(net: MemoryNetwork) -> Self {
        Self { net, registered: Mutex::new(None) }
    }

    fn who(&self) -> Option<(RoomId, PeerId)> {
        self.registered.lock().ok().and_then(|r| r.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

#[async_trait]
impl Signaler for MemorySignaler {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError> {
        let id = ctx.identity;
        let info = MemberInfo { key: id.key.clone(), ..MemberInfo::new(id.peer.clone(), id.record.clone()) };
        let (members, admin) = self
            .net
            .register(&id.room, id.role, info, ctx.inbox.clone())
            .map_err(|e| SignalError::Other(Box::new(Refused(e))))?;
        if let Ok(mut r) = self.registered.lock() {
            *r = Some((id.room.clone(), id.peer.clone()));
        }
        let event = SignalingEvent::Registered { members, admin };
        ctx.inbox.send(Inbound { path: NAME, event }).await.map_err(|_| SignalError::NotRunning)
    }

    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError> {
        let (room, me) = self.who().ok_or(SignalError::NotRunning)?;
        if self.net.forward(&room, &me, to, signal) {
            Ok(())
        } else {
            Err(SignalError::Unreachable { peer: to.clone(), why: "not registered in this room".into() })
        }
    }

    async fn announce(&self, what: Announcement) -> Result<(), SignalError> {
        let (room, me) = self.who().ok_or(SignalError::NotRunning)?;
        match what {
            // A test rendezvous: it takes the announcement without checking the proof.
            Announcement::Admin(_) => self.net.set_admin(&room, &me),
            Announcement::Leaving => self.net.deregister(&room, &me),
            Announcement::Withdraw => self.net.withdraw_admin(&room, &me),
        }
        Ok(())
    }

    async fn stop(&self) {
        if let Some((room, me)) = self.registered.lock().ok().and_then(|mut r| r.take()) {
            self.net.deregister(&room, &me);
        }
    }
}

impl Drop for MemorySignaler {
    fn drop(&mut self) {
        // A silenced peer's connection goes quiet rather than closed: the rendezvous keeps it.
        if let Some((room, me)) = self.who().filter(|(_, me)| !self.net.is_silenced(me)) {
            self.net.deregister(&room, &me);
        }
    }
}
