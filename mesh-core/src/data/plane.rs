//! [`DataPlane`]: the async shell of [`DataCore`]. It writes frames on links, wakes the tasks that
//! wait on answers, inboxes and windows, and runs the core's deadlines. One per node, shared by
//! the node's handle, its link sessions and its driver.

use super::core::{DataCore, DataOutput, Sent};
use super::frame::{Fail, Frame};
use super::inbox::Inbox;
use super::{DataConfig, DataError};
use crate::id::PeerId;
use crate::signal::SessionId;
use crate::transport::{CloseReason, Link};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// One open link as the data plane sees it.
pub(super) struct LinkEntry {
    link: Arc<dyn Link>,
    /// Acknowledgements, refusals and stream credit, written by the session's reply task.
    pub(super) replies: mpsc::UnboundedSender<Bytes>,
    /// Stream frames, in order, written as bulk by the session's bulk task.
    pub(super) bulk: mpsc::UnboundedSender<Bytes>,
}

/// The sender ends of a link's two write queues (replies: control; bulk: stream data).
pub(crate) struct Queues {
    /// Written with `Link::send`.
    pub(crate) replies: mpsc::UnboundedSender<Bytes>,
    /// Written with `Link::send_bulk`.
    pub(crate) bulk: mpsc::UnboundedSender<Bytes>,
}

pub(super) struct State {
    core: DataCore,
    pub(super) streams: super::streams::Streams,
    /// Who waits on each stream (readers and writers).
    pub(super) stream_wakers: HashMap<super::streams::StreamKey, Vec<std::task::Waker>>,
    /// Streams opened to this node, waiting for their protocol's inbox to take them.
    pub(super) stream_arrivals: HashMap<String, std::collections::VecDeque<(PeerId, super::streams::StreamKey)>>,
    pub(super) links: HashMap<SessionId, LinkEntry>,
    waiters: HashMap<u64, oneshot::Sender<Result<Bytes, DataError>>>,
    ready: HashMap<String, Arc<Notify>>,
    windows: HashMap<PeerId, Arc<Notify>>,
    stopped: bool,
}

struct Inner {
    state: Mutex<State>,
    /// A deadline may have moved earlier: the timer looks again.
    timer: Notify,
}

/// The data plane of one node (cheap to clone).
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataPlane")
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl DataPlane {
    /// A data plane with `config` and no links.
    pub fn new(config: DataConfig) -> Self {
        let state = State {
            core: DataCore::new(config),
            streams: Default::default(),
            stream_wakers: HashMap::new(),
            stream_arrivals: HashMap::new(),
            links: HashMap::new(),
            waiters: HashMap::new(),
            ready: HashMap::new(),
            windows: HashMap::new(),
            stopped: false,
        };
        Self { inner: Arc::new(Inner { state: Mutex::new(state), timer: Notify::new() }) }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the core, then carries out what it queued.
    fn with_core<R>(&self, f: impl FnOnce(&mut DataCore) -> R) -> R {
        self.with_state(|state| f(&mut state.core))
    }

    /// Runs `f` on the whole state under one lock, then carries out what the core queued.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state);
        while let Some(out) = state.core.poll() {
            match out {
                DataOutput::Write { session, frames } => {
                    if let Some(entry) = state.links.get(&session) {
                        for frame in frames {
                            let _ = entry.replies.send(frame.encode());
                        }
                    }
                }
                DataOutput::Done { id, result } => {
                    if let Some(tx) = state.waiters.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                DataOutput::Ready(proto) => {
                    if let Some(n) = state.ready.get(&proto) {
                        n.notify_one();
                    }
                }
                DataOutput::WindowOpen(peer) => {
                    if let Some(n) = state.windows.get(&peer) {
                        n.notify_waiters();
                    }
                }
            }
        }
        result
    }

    /// The limits in force.
    pub fn config(&self) -> DataConfig {
        self.lock().core.config().clone()
    }

    /// A link of `peer` opened; `replies` is written by its session's reply task.
    pub(crate) fn link_open(&self, session: &SessionId, link: Arc<dyn Link>, queues: Queues) {
        let Queues { replies, bulk } = queues;
        self.lock().links.insert(session.clone(), LinkEntry { link, replies, bulk });
    }

    /// A link closed: what waited on it fails at once.
    pub(crate) fn link_closed(&self, peer: &PeerId, session: &SessionId, reason: &CloseReason) {
        self.with_state(|state| {
            state.core.link_closed(peer, session, reason);
            state.links.remove(session);
            state.streams.link_closed(session);
            super::stream::carry_out(state);
        });
    }

    /// The links the state machine uses, one per linked peer.
    pub(crate) fn set_links<'a>(&self, links: impl Iterator<Item = (&'a PeerId, Option<&'a SessionId>)>) {
        let mut state = self.lock();
        for (peer, session) in links {
            // A link whose session task saw it close is not used, whatever the driver thinks yet.
            let open = session.filter(|s| state.links.contains_key(*s));
            state.core.set_current(peer, open);
        }
    }

    /// An application frame from `from` over `session`; bytes that are not a frame are dropped
    /// with a log (the sender is the peer the link authenticates).
    pub(crate) fn on_bytes(&self, from: &PeerId, session: &SessionId, bytes: &Bytes) {
        match Frame::decode(bytes) {
            Ok(frame) if frame.kind.is_stream() => {
                let mut state = self.lock();
                state.streams.on_frame(from, session, frame);
                super::stream::carry_out(&mut state);
            }
            Ok(frame) => self.with_core(|core| core.on_frame(from, session, frame)),
            Err(err) => tracing::info!(%from, error = %err, "malformed application frame dropped"),
        }
    }

    /// Sends a message (or a request) and waits for its answer: the acknowledgement (or the
    /// response), or why it failed.
    pub(crate) async fn call(
        &self,
        peer: &PeerId,
        proto: &str,
        body: Bytes,
        request: bool,
        timeout: Duration,
    ) -> Result<Bytes, DataError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (id, link, frames, rx) = loop {
            let window = {
                let mut state = self.lock();
                if state.stopped {
                    return Err(DataError::Stopped);
                }
                state.windows.entry(peer.clone()).or_default().clone()
            };
            let waiting = window.notified();
            tokio::pin!(waiting);
            waiting.as_mut().enable();
            // The waiter is in place under the same lock that starts the call, so an answer (or
            // the link's close) that comes at once finds it.
            let started =
                self.with_state(|state| match state.core.send(now(), peer, proto, body.clone(), request, timeout) {
                    Ok(Sent::Started { id, session, frames }) => {
                        let (tx, rx) = oneshot::channel();
                        state.waiters.insert(id, tx);
                        let link = state.links.get(&session).map(|e| e.link.clone());
                        Ok(Some((id, link, frames, rx)))
                    }
                    Ok(Sent::Wait) => Ok(None),
                    Err(err) => Err(err),
                })?;
            match started {
                Some(call) => {
                    self.inner.timer.notify_one();
                    break call;
                }
                None => {
                    if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                        return Err(DataError::TimedOut);
                    }
                }
            }
        };
        let cancel = Cancel { plane: self, id: Some(id) };
        let Some(link) = link else { return Err(DataError::LinkLost(peer.clone())) }; // closed meanwhile
        for frame in frames {
            if link.send_bulk(frame.encode()).await.is_err() {
                break; // the link is closing: its close fails the call
            }
        }
        let result = rx.await.unwrap_or(Err(DataError::Stopped));
        cancel.done();
        result
    }

    /// Answers request `id` that came over `session`.
    pub(crate) async fn respond(&self, session: &SessionId, id: u64, result: Result<Bytes, (Fail, String)>) {
        let (link, frames) = {
            let state = self.lock();
            (state.links.get(session).map(|e| e.link.clone()), state.core.respond(id, result))
        };
        let Some(link) = link else { return tracing::debug!(%session, id, "link gone; answer not sent") };
        for frame in frames {
            if link.send_bulk(frame.encode()).await.is_err() {
                return;
            }
        }
    }

    /// Answers request `id` with a failure without waiting (a responder dropped unanswered).
    pub(crate) fn refuse_later(&self, session: &SessionId, id: u64, why: Fail, text: &str) {
        let state = self.lock();
        if let Some(entry) = state.links.get(session) {
            let _ = entry.replies.send(Frame::fail(id, why, text).encode());
        }
    }

    /// Opens the inbox of `proto`.
    pub fn listen(&self, proto: &str) -> Result<Inbox, DataError> {
        if !super::frame::valid_proto(proto) {
            return Err(DataError::BadProtocol(proto.to_string()));
        }
        let mut state = self.lock();
        if state.stopped {
            return Err(DataError::Stopped);
        }
        if !state.core.open_inbox(proto) {
            return Err(DataError::InUse(proto.to_string()));
        }
        let ready = Arc::new(Notify::new());
        state.ready.insert(proto.to_string(), ready.clone());
        Ok(Inbox::new(self.clone(), proto.to_string(), ready))
    }

    /// Takes the next arrival of `proto`; `Err` once the node stopped.
    pub(crate) fn pop(&self, proto: &str) -> Result<Option<super::Arrival>, DataError> {
        if self.lock().stopped {
            return Err(DataError::Stopped);
        }
        Ok(self.with_core(|core| core.pop(proto)))
    }

    /// Closes the inbox of `proto`; streams waiting for it are reset.
    pub(crate) fn unlisten(&self, proto: &str) {
        self.with_core(|core| core.close_inbox(proto));
        let mut state = self.lock();
        state.ready.remove(proto);
        for (_, key) in state.stream_arrivals.remove(proto).unwrap_or_default() {
            state.streams.reset(&key, "its protocol closed");
        }
        super::stream::carry_out(&mut state);
    }

    /// True when `proto` has an inbox open.
    pub(super) fn has_inbox(state: &State, proto: &str) -> bool {
        state.ready.contains_key(proto)
    }

    /// Wakes the reader of `proto`'s inbox (a stream arrived for it).
    pub(super) fn ready(state: &State, proto: &str) -> bool {
        state.ready.get(proto).map(|n| n.notify_one()).is_some()
    }

    /// The stopped flag and the current link of `peer`, for opening a stream.
    pub(super) fn current_link(state: &State, peer: &PeerId) -> Option<SessionId> {
        if state.stopped {
            return None;
        }
        state.core.current(peer).filter(|s| state.links.contains_key(*s)).cloned()
    }

    /// Runs the core's deadlines until the node stops.
    pub(crate) async fn run_timer(self) {
        loop {
            let next = self.lock().core.next_deadline().map(tokio::time::Instant::from_std);
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = tokio::time::sleep_until(next.unwrap_or(far)) => self.with_core(|core| core.tick(now())),
                _ = self.inner.timer.notified() => {}
            }
        }
    }

    /// Fails every waiting call and wakes every reader: the node stopped.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        for (_, tx) in state.waiters.drain() {
            let _ = tx.send(Err(DataError::Stopped));
        }
        for n in state.ready.values() {
            n.notify_one();
        }
        for n in state.windows.values() {
            n.notify_waiters();
        }
        for w in state.stream_wakers.drain().flat_map(|(_, w)| w) {
            w.wake();
        }
        state.links.clear();
    }
}

/// Forgets a call whose caller went away before its answer.
struct Cancel<'a> {
    plane: &'a DataPlane,
    id: Option<u64>,
}

impl Cancel<'_> {
    fn done(mut self) {
        self.id = None;
    }
}

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.plane.with_core(|core| core.cancel(id));
            self.plane.lock().waiters.remove(&id);
        }
    }
}
