//! The tasks of one link attempt: outgoing signals, incoming signals and link events, and the
//! writer. They live in the session's `JoinSet`; dropping the session ends them.

use crate::chain::SignalerChain;
use crate::data::frame::Frame;
use crate::data::{DataPlane, Queues};
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

/// What every session of a node is connected to.
#[derive(Clone)]
pub(super) struct Plumbing {
    /// The signaler chain, for the attempt's own signals.
    pub(super) chain: Arc<SignalerChain>,
    /// The driver's inlet for link events, tagged with the session.
    pub(super) events: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
    /// Where application frames go.
    pub(super) data: DataPlane,
}

/// One link attempt, from dial/accept to close.
pub(super) struct Session {
    pub(super) peer: PeerId,
    pub(super) link: Arc<dyn Link>,
    pub(super) opened: bool,
    pub(super) signals_in: mpsc::Sender<SignalBody>,
    pub(super) writer: mpsc::Sender<Outgoing>,
    writer_task: Option<JoinHandle<()>>,
    /// Told when the session ends, however it ends (its pump may be aborted first).
    data: DataPlane,
    session: SessionId,
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
        Plumbing { chain, events: events_out, data }: Plumbing,
        span: tracing::Span,
    ) -> Self {
        let LinkHandle { link, events } = handle;
        let mut tasks = JoinSet::new();
        tasks.spawn(forward_signals(peer.clone(), session.clone(), signals_out, order, chain).instrument(span.clone()));
        let (signals_in, signals_in_rx) = mpsc::channel(SIGNAL_QUEUE);
        let (replies, replies_rx) = mpsc::unbounded_channel();
        tasks.spawn(write_replies(link.clone(), replies_rx, false).instrument(span.clone()));
        let (bulk, bulk_rx) = mpsc::unbounded_channel();
        tasks.spawn(write_replies(link.clone(), bulk_rx, true).instrument(span.clone()));
        let ends = Ends {
            peer: peer.clone(),
            session: session.clone(),
            link: link.clone(),
            data: data.clone(),
            replies,
            bulk,
        };
        tasks.spawn(pump(ends, events, signals_in_rx, events_out).instrument(span.clone()));
        let (writer, writer_rx) = mpsc::channel(WRITER_QUEUE);
        let writer_task = tokio::spawn(write(link.clone(), writer_rx).instrument(span));
        Self {
            peer,
            link,
            opened: false,
            signals_in,
            writer,
            writer_task: Some(writer_task),
            data,
            session,
            _tasks: tasks,
        }
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
        // What waits on this link fails now, not at its timeout (a no-op if the pump saw it close).
        self.data.link_closed(&self.peer, &self.session, &CloseReason::Local);
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

/// What a session's pump needs to know of its link.
struct Ends {
    peer: PeerId,
    session: SessionId,
    link: Arc<dyn Link>,
    data: DataPlane,
    replies: mpsc::UnboundedSender<Bytes>,
    bulk: mpsc::UnboundedSender<Bytes>,
}

/// Applies incoming signals and passes link events on: application frames to the data plane
/// (never through the driver), everything else to the driver.
async fn pump(
    ends: Ends,
    mut events: mpsc::Receiver<LinkEvent>,
    mut signals: mpsc::Receiver<SignalBody>,
    out: mpsc::Sender<(PeerId, SessionId, LinkEvent)>,
) {
    let Ends { peer, session, link, data, replies, bulk } = ends;
    loop {
        tokio::select! {
            Some(body) = signals.recv() => {
                if let Err(err) = link.apply_signal(body).await {
                    tracing::warn!(error = %err, "signal refused by the transport");
                }
            }
            event = events.recv() => {
                let event = event.unwrap_or(LinkEvent::Closed(CloseReason::Failed("transport ended the link".into())));
                match &event {
                    LinkEvent::Message(bytes) if Frame::is_data(bytes) => {
                        data.on_bytes(&peer, &session, bytes);
                        continue;
                    }
                    LinkEvent::Open => {
                        let queues = Queues { replies: replies.clone(), bulk: bulk.clone() };
                        data.link_open(&session, link.clone(), queues)
                    }
                    LinkEvent::Closed(reason) => data.link_closed(&peer, &session, reason),
                    _ => {}
                }
                let last = matches!(event, LinkEvent::Closed(_));
                if out.send((peer.clone(), session.clone(), event)).await.is_err() || last {
                    return;
                }
            }
        }
    }
}

/// Writes one of the data plane's queues for a link: acknowledgements, refusals and stream
/// credit as control, or stream frames as `bulk`.
async fn write_replies(link: Arc<dyn Link>, mut queue: mpsc::UnboundedReceiver<Bytes>, bulk: bool) {
    while let Some(bytes) = queue.recv().await {
        let sent = if bulk { link.send_bulk(bytes).await } else { link.send(bytes).await };
        if sent.is_err() {
            return;
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
