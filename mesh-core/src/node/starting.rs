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
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals held per starting attempt (an offer's candidates); more are dropped.
const MAX_EARLY_SIGNALS: usize = 64;

/// A finished set-up: the attempt and its link, or why it failed.
pub(super) struct Started {
    pub(super) peer: PeerId,
    pub(super) session: SessionId,
    pub(super) signals_out: (mpsc::Receiver<SignalBody>, crate::PathOrder),
    pub(super) span: tracing::Span,
    pub(super) result: Result<LinkHandle, String>,
}

struct Pending {
    peer: PeerId,
    early: Vec<SignalBody>,
    cancelled: bool,
}

/// Every attempt being set up.
#[derive(Default)]
pub(super) struct Starting {
    tasks: JoinSet<Started>,
    pending: HashMap<SessionId, Pending>,
}

impl Starting {
    /// Starts setting up `session` with `peer`; `attempt` is the transport's dial or accept.
    pub(super) fn start<F>(
        &mut self,
        peer: PeerId,
        session: SessionId,
        signals_out: (mpsc::Receiver<SignalBody>, crate::PathOrder),
        span: tracing::Span,
        attempt: F,
    ) where
        F: Future<Output = Result<LinkHandle, crate::TransportError>> + Send + 'static,
    {
        self.pending.insert(session.clone(), Pending { peer: peer.clone(), early: Vec::new(), cancelled: false });
        let task_span = span.clone();
        self.tasks.spawn(
            async move {
                let result = match tokio::time::timeout(SETUP_TIMEOUT, attempt).await {
                    Ok(Ok(handle)) => Ok(handle),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("transport setup timed out".into()),
                };
                Started { peer, session, signals_out, span, result }
            }
            .instrument(task_span),
        );
    }

    /// True while `session` is being set up.
    pub(super) fn contains(&self, session: &SessionId) -> bool {
        self.pending.contains_key(session)
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

    /// The next finished set-up (pending forever while none is running).
    pub(super) async fn next(&mut self) -> Option<Started> {
        loop {
            match self.tasks.join_next().await? {
                Ok(started) => return Some(started),
                Err(err) => tracing::warn!(error = %err, "a link set-up task ended abnormally"),
            }
        }
    }

    /// True while no set-up runs.
    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Takes the bookkeeping of a finished set-up: the signals held for it, or `None` if the
    /// attempt was closed meanwhile (its link, if any, must then be closed by the caller).
    pub(super) fn finish(&mut self, session: &SessionId) -> Option<Vec<SignalBody>> {
        self.pending.remove(session).filter(|p| !p.cancelled).map(|p| p.early)
    }
}

/// Closes a link whose attempt was abandoned while it was starting.
pub(super) async fn discard(link: Arc<dyn Link>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
}
