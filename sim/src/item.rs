//! What the world's queue holds: an [`Item`] due at a virtual time, earliest first.

use mesh_core::{Event, MeshMessage, PeerId, SessionId};
use std::cmp::Ordering;

/// Something due at a time.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Input {
        to: PeerId,
        inc: u32,
        event: Event,
    },
    LinkMsg {
        to: PeerId,
        inc: u32,
        from: PeerId,
        session: SessionId,
        msg: MeshMessage,
    },
    Tick {
        to: PeerId,
        inc: u32,
    },
    Connect(SessionId),
    SetupTimeout {
        to: PeerId,
        inc: u32,
        session: SessionId,
    },
    Register {
        to: PeerId,
        inc: u32,
    },
    /// The server notices `peer`'s connection is gone (closed, or idle while frozen).
    ServerLost {
        peer: PeerId,
        inc: u32,
        freeze_gen: Option<u32>,
    },
    Unflap(PeerId, PeerId),
    /// Deliver what is due on the ordered stream from one node to another.
    Pump(PeerId, PeerId),
    /// The relay signaler's timeout for a relayed signal.
    RelayTimeout(u64),
}

pub(crate) struct Queued {
    pub(crate) t: u64,
    pub(crate) seq: u64,
    pub(crate) item: Item,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq)) // earliest first
    }
}
