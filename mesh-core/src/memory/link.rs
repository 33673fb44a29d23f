//! One end of an in-memory link pair.

use super::MemoryNetwork;
use crate::id::PeerId;
use crate::signal::SignalBody;
use crate::transport::{CloseReason, Link, LinkEvent, TransportError};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Capacity of a link's event queue: a full queue slows the sender down.
pub(super) const LINK_QUEUE: usize = 256;

/// A dial waiting for its answer.
pub(super) struct Pending {
    pub(super) dialer: Arc<End>,
}

#[derive(Default)]
struct EndState {
    remote: Option<Weak<End>>,
    opened: bool,
    closed: bool,
}

/// One side of a pair.
pub(super) struct End {
    pub(super) id: u64,
    pub(super) local: PeerId,
    pub(super) remote_peer: PeerId,
    net: MemoryNetwork,
    events: mpsc::Sender<LinkEvent>,
    state: Mutex<EndState>,
    /// Wakes the connect-timeout task once the attempt opened or closed.
    pub(super) settled: Arc<tokio::sync::Notify>,
}

impl End {
    pub(super) fn new(
        id: u64,
        local: PeerId,
        remote_peer: PeerId,
        net: MemoryNetwork,
    ) -> (Arc<Self>, mpsc::Receiver<LinkEvent>) {
        let (events, rx) = mpsc::channel(LINK_QUEUE);
        let settled = Arc::new(tokio::sync::Notify::new());
        let end = Arc::new(Self { id, local, remote_peer, net: net.clone(), events, state: Mutex::default(), settled });
        net.lock().live.push(Arc::downgrade(&end));
        (end, rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, EndState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn connects(&self, a: &PeerId, b: &PeerId) -> bool {
        (&self.local == a && &self.remote_peer == b) || (&self.local == b && &self.remote_peer == a)
    }

    pub(super) fn pair(a: &Arc<End>, b: &Arc<End>) {
        a.state().remote = Some(Arc::downgrade(b));
        b.state().remote = Some(Arc::downgrade(a));
    }

    fn remote(&self) -> Option<Arc<End>> {
        self.state().remote.as_ref().and_then(Weak::upgrade)
    }

    pub(super) fn is_opened(&self) -> bool {
        self.state().opened
    }

    pub(super) fn open(&self) {
        let mut st = self.state();
        if !st.opened && !st.closed {
            st.opened = true;
            let _ = self.events.try_send(LinkEvent::Open);
            self.settled.notify_one();
        }
    }

    /// Ends this side with `reason`; true if it was still open.
    pub(super) fn finish(&self, reason: CloseReason) -> bool {
        let mut st = self.state();
        if st.closed {
            return false;
        }
        st.closed = true;
        self.settled.notify_one();
        let events = self.events.clone();
        drop(st);
        if events.try_send(LinkEvent::Closed(reason.clone())).is_err() {
            // Queue full: deliver the close without blocking the caller.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = events.send(LinkEvent::Closed(reason)).await;
                });
            }
        }
        true
    }

    pub(super) fn close_both(&self, why: &str) {
        if self.finish(CloseReason::Failed(why.into())) {
            if let Some(remote) = self.remote() {
                remote.finish(CloseReason::Failed(why.into()));
            }
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        // The owner vanished without closing (a crash): the other side sees the link fail at once,
        // unless the owner went silent first (then nothing of it gets through, this neither).
        let closed = self.state().closed;
        if !closed && !self.net.is_silenced(&self.local) {
            if let Some(remote) = self.remote() {
                remote.finish(CloseReason::Failed("peer vanished".into()));
            }
        }
    }
}

/// A [`Link`] over an in-memory pair.
pub struct MemoryLink {
    pub(super) end: Arc<End>,
}

#[async_trait]
impl Link for MemoryLink {
    async fn apply_signal(&self, body: SignalBody) -> Result<(), TransportError> {
        match body {
            SignalBody::Answer { sdp } if sdp == format!("mem:{}", self.end.id) => {
                let pending = self.end.net.lock().pending.remove(&self.end.id);
                if pending.is_some() {
                    if let Some(remote) = self.end.remote() {
                        self.end.open();
                        remote.open();
                    }
                }
                Ok(())
            }
            SignalBody::Abort { reason } => {
                self.end.finish(CloseReason::Failed(format!("aborted by peer: {reason}")));
                Ok(())
            }
            SignalBody::Candidate { .. } => Ok(()),
            other => Err(TransportError::BadSignal(format!("unexpected {other:?}"))),
        }
    }

    async fn send(&self, data: Bytes) -> Result<(), TransportError> {
        let (opened, closed) = {
            let st = self.end.state();
            (st.opened, st.closed)
        };
        if !opened || closed {
            return Err(TransportError::Closed);
        }
        let remote = self.end.remote().ok_or(TransportError::Closed)?;
        if self.end.net.is_cut(&self.end.local, &self.end.remote_peer) {
            return Ok(()); // a black hole: the bytes are lost on the wire
        }
        remote.events.send(LinkEvent::Message(data)).await.map_err(|_| TransportError::Closed)
    }

    async fn close(&self) {
        if self.end.finish(CloseReason::Local) {
            if let Some(remote) = self.end.remote() {
                remote.finish(CloseReason::Remote);
            }
        }
        self.end.net.lock().pending.remove(&self.end.id);
    }
}
