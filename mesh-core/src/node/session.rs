//! The tasks of one link attempt: outgoing signals, incoming signals and link events, and the
//! writer. They live in the session's `JoinSet`; dropping the session ends them.

use crate::chain::SignalerChain;
use crate::id::PeerId;
use crate::signal::{SessionId, Signal, SignalBody};
use crate::transport::{CloseReason, Link, LinkEvent, LinkHandle};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

/// Queue of messages waiting for a link's writer.
const WRITER_QUEUE: usize = 1024;
/// Queue of incoming signals for one attempt.
const SIGNAL_QUEUE: usize = 64;

/// A message for the writer task.
pub(super) enum Outgoing {
    /// Reliable, ordered.
    Reliable(Bytes),
    /// Loss-tolerant (heartbeats).
    Unordered(Bytes),
}

/// One link attempt, from dial/accept to close.
pub(super) struct Session {
    pub(super) peer: PeerId,
    pub(super) link: Arc<dyn Link>,
    pub(super) opened: bool,
    pub(super) signals_in: mpsc::Sender<SignalBody>,
    pub(super) writer: mpsc::Sender<Outgoing>,
    writer_task: Option<JoinHandle<()>>,
    /// Held so that dropping the session aborts its tasks.
    _tasks: JoinSet<()>,
}

impl Session {
    /// Spawns the session's tasks. Link events come back on `events_out` tagged with the session.
    pub(super) fn spawn(
        peer: PeerId,
        session: SessionId,
        handle: LinkHandle,
        (signals_out, order): (mpsc::Receiver<SignalBody>, crate::PathOrder),
        chain: Arc<SignalerChain>,
        events_out: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
        span: tracing::Span,
    ) -> Self {
        let LinkHandle { link, events } = handle;
        let mut tasks = JoinSet::new();
        tasks.spawn(forward_signals(peer.clone(), session.clone(), signals_out, order, chain).instrument(span.clone()));
        let (signals_in, signals_in_rx) = mpsc::channel(SIGNAL_QUEUE);
        tasks.spawn(
            pump(peer.clone(), session, link.clone(), events, signals_in_rx, events_out).instrument(span.clone()),
        );
        let (writer, writer_rx) = mpsc::channel(WRITER_QUEUE);
        let writer_task = tokio::spawn(write(link.clone(), writer_rx).instrument(span));
        Self { peer, link, opened: false, signals_in, writer, writer_task: Some(writer_task), _tasks: tasks }
    }

    /// Flushes queued messages (bounded in time), then closes the link and ends every task.
    pub(super) async fn close(mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed)); // the writer drains its queue, then ends
        if let Some(writer_task) = self.writer_task.take() {
            let abort = writer_task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), writer_task).await.is_err() {
                abort.abort();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.link.close()).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = &self.writer_task {
            task.abort();
        }
    }
}

async fn forward_signals(
    peer: PeerId,
    session: SessionId,
    mut signals: mpsc::Receiver<SignalBody>,
    order: crate::PathOrder,
    chain: Arc<SignalerChain>,
) {
    while let Some(body) = signals.recv().await {
        let signal = Signal::new(session.clone(), body);
        match chain.send_in(order, &peer, signal).await {
            Ok(()) => {}
            Err(crate::SignalError::NotRunning) => tracing::debug!("signal dropped: signaling stopped"),
            Err(err) => tracing::warn!(error = %err, "signal lost: no path delivered it"),
        }
    }
}

async fn pump(
    peer: PeerId,
    session: SessionId,
    link: Arc<dyn Link>,
    mut events: mpsc::Receiver<LinkEvent>,
    mut signals: mpsc::Receiver<SignalBody>,
    out: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
) {
    loop {
        tokio::select! {
            Some(body) = signals.recv() => {
                if let Err(err) = link.apply_signal(body).await {
                    tracing::warn!(error = %err, "signal refused by the transport");
                }
            }
            event = events.recv() => {
                let event = event.unwrap_or(LinkEvent::Closed(CloseReason::Failed("transport ended the link".into())));
                let last = matches!(event, LinkEvent::Closed(_));
                if out.send((peer.clone(), session.clone(), event)).await.is_err() || last {
                    return;
                }
            }
        }
    }
}

async fn write(link: Arc<dyn Link>, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(out) = queue.recv().await {
        let result = match out {
            Outgoing::Reliable(bytes) => link.send(bytes).await,
            Outgoing::Unordered(bytes) => link.send_unordered(bytes).await,
        };
        if let Err(err) = result {
            tracing::debug!(error = %err, "link writer stopped");
            return;
        }
    }
}
