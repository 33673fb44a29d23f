//! Link attempts whose transport is still being set up (building a peer connection, creating the
//! offer or answer). They run side by side, off the driver loop: a newcomer dialing nine workers
//! sends nine offers at once instead of one after another. Signals that arrive for an attempt
//! still starting are held and handed over when it starts; an attempt closed meanwhile is torn
//! down as soon as its transport is ready.

use crate::id::PeerId;
use crate::signal::{SessionId, SignalBody};
use crate::transport::{Link, LinkHandle};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Longest a transport may take to start an attempt.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals held per starting attempt (an offer's candidates); more are dropped.
const MAX_EARLY_SIGNALS: usize = 64;

/// Where an attempt's outgoing signals come from, and how they travel.
pub(super) type SignalsOut = (mpsc::Receiver<SignalBody>, crate::PathOrder);

/// A set-up that ended: ready (its link, its signals, its span and the signals that arrived
/// meanwhile), or why not.
pub(super) struct Started {
    pub(super) peer: PeerId,
    pub(super) session: SessionId,
    pub(super) result: Result<(LinkHandle, SignalsOut, tracing::Span, Vec<SignalBody>), Failed>,
}

/// Why a set-up gave no attempt to run.
pub(super) enum Failed {
    /// The attempt was closed while it started; its link, if it got one, must be closed.
    Cancelled(Option<Arc<dyn Link>>),
    /// The transport failed, timed out, or its task panicked.
    Error(String),
}

struct Pending {
    peer: PeerId,
    early: Vec<SignalBody>,
    cancelled: bool,
    signals_out: SignalsOut,
    span: tracing::Span,
}

/// Every attempt being set up.
#[derive(Default)]
pub(super) struct Starting {
    tasks: JoinSet<(SessionId, Result<LinkHandle, String>)>,
    /// Which attempt each task sets up, so a task that panics still ends its attempt.
    by_task: HashMap<tokio::task::Id, SessionId>,
    pending: HashMap<SessionId, Pending>,
}

impl Starting {
    /// Starts setting up `session` with `peer`; `attempt` is the transport's dial or accept.
    pub(super) fn start<F>(
        &mut self,
        peer: PeerId,
        session: SessionId,
        signals_out: SignalsOut,
        span: tracing::Span,
        attempt: F,
    ) where
        F: Future<Output = Result<LinkHandle, crate::TransportError>> + Send + 'static,
    {
        let task_span = span.clone();
        let pending = Pending { peer, early: Vec::new(), cancelled: false, signals_out, span };
        self.pending.insert(session.clone(), pending);
        let id = session.clone();
        let task = self.tasks.spawn(
            async move {
                let result = match tokio::time::timeout(SETUP_TIMEOUT, attempt).await {
                    Ok(Ok(handle)) => Ok(handle),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("transport setup timed out".into()),
                };
                (id, result)
            }
            .instrument(task_span),
        );
        self.by_task.insert(task.id(), session);
    }

    /// Holds a signal from `from` for a starting `session`; false if there is no such attempt.
    pub(super) fn hold(&mut self, session: &SessionId, from: &PeerId, body: SignalBody) -> bool {
        match self.pending.get_mut(session) {
            Some(p) if &p.peer == from => {
                if p.early.len() < MAX_EARLY_SIGNALS {
                    p.early.push(body);
                } else {
                    tracing::warn!(%from, %session, "too many signals for an attempt still starting; dropped");
                }
                true
            }
            _ => false,
        }
    }

    /// Marks a starting attempt closed: its link is closed once ready. False if not starting.
    pub(super) fn cancel(&mut self, session: &SessionId) -> bool {
        match self.pending.get_mut(session) {
            Some(p) => {
                p.cancelled = true;
                true
            }
            None => false,
        }
    }

    /// The next set-up that ended; `None` when none is running (the caller polls this only
    /// while [`Starting::is_empty`] is false).
    pub(super) async fn next(&mut self) -> Option<Started> {
        loop {
            let (session, result) = match self.tasks.join_next_with_id().await? {
                Ok((id, (session, result))) => {
                    self.by_task.remove(&id);
                    (session, result)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a link set-up task ended abnormally");
                    let Some(session) = self.by_task.remove(&err.id()) else { continue };
                    (session, Err(format!("link set-up task ended abnormally: {err}")))
                }
            };
            let Some(p) = self.pending.remove(&session) else { continue };
            let peer = p.peer.clone();
            let result = match (result, p.cancelled) {
                (Ok(handle), false) => Ok((handle, p.signals_out, p.span, p.early)),
                (Ok(handle), true) => Err(Failed::Cancelled(Some(handle.link))),
                (Err(_), true) => Err(Failed::Cancelled(None)),
                (Err(reason), false) => Err(Failed::Error(reason)),
            };
            return Some(Started { peer, session, result });
        }
    }

    /// True while no set-up runs.
    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Ends every set-up still running.
    pub(super) async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
        self.pending.clear();
        self.by_task.clear();
    }
}

/// Closes a link whose attempt was abandoned while it was starting.
pub(super) async fn discard(link: Arc<dyn Link>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
}
