//! What applications do over a node besides membership: messages, requests, broadcast,
//! streams and inboxes (the data plane), direct client links, reservations and transfers.

use super::{Command, MeshNode, NodeError, Snapshot};
use crate::data::{DataError, Inbox};
use crate::id::PeerId;
use crate::lease::{Lease, LeaseAsk, LeaseGranted};
use crate::transfer::{BlobId, TransferError};
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::watch;

/// How long a reservation ask waits for the worker's answer.
const LEASE_ASK_TIMEOUT: Duration = Duration::from_secs(10);

impl MeshNode {
    /// Sends `body` to `to` on protocol `proto` over the direct link and waits until `to`'s
    /// node holds it in that protocol's inbox (while the inbox is full, this waits: back-pressure).
    /// Fails with the reason: not linked, the peer left, the link was lost, no acknowledgement
    /// within the configured send timeout, too large, or refused by the receiver.
    pub async fn send(&self, to: &PeerId, proto: &str, body: impl Into<Bytes>) -> Result<(), DataError> {
        let timeout = self.data.config().send_timeout;
        self.data.call(to, proto, body.into(), false, timeout).await.map(|_| ())
    }

    /// Sends request `body` to `to` on `proto` and waits, at most `timeout`, for the response. A
    /// request whose link closes fails at once, with that reason.
    pub async fn request(
        &self,
        to: &PeerId,
        proto: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, DataError> {
        self.data.call(to, proto, body.into(), true, timeout).await
    }

    /// Sends `body` on `proto` to every linked worker at once; each worker's outcome.
    pub async fn broadcast(&self, proto: &str, body: impl Into<Bytes>) -> Vec<(PeerId, Result<(), DataError>)> {
        let body = body.into();
        let workers = self.shared.lock().map(|s| s.linked_workers.clone()).unwrap_or_default();
        let sends = workers.iter().map(|w| self.send(w, proto, body.clone()));
        workers.iter().cloned().zip(futures::future::join_all(sends).await).collect()
    }

    /// Opens a byte stream to `peer` on `proto` (`AsyncRead` + `AsyncWrite`, flow-controlled
    /// per stream); the peer takes it from its inbox of `proto` as [`Incoming::Stream`].
    pub fn open_stream(&self, peer: &PeerId, proto: &str) -> Result<crate::data::Stream, DataError> {
        self.data.open_stream(peer, proto)
    }

    /// Opens the inbox of `proto`: messages and requests sent to this node on it. One inbox per
    /// protocol; dropping it closes the protocol again.
    pub fn listen(&self, proto: &str) -> Result<Inbox, DataError> {
        self.data.listen(proto)
    }

    /// A client links to worker `peer` directly (besides its admin) and keeps the link, retried
    /// if it breaks, until [`MeshNode::disconnect`]; returns once the link is open, at most
    /// `timeout`. A worker takes a limited number of clients (`NodeOptions::max_client_links`).
    pub async fn connect(&self, peer: &PeerId, timeout: Duration) -> Result<(), NodeError> {
        self.commands.send(Command::Connect(peer.clone())).await.map_err(|_| NodeError::Stopped)?;
        let up = |s: &Snapshot| s.health.peers.iter().any(|p| &p.peer == peer && p.state == crate::LinkStatus::Up);
        self.wait_for(timeout, up).await.map(|_| ())
    }

    /// A client closes its direct link to `peer` (its admin's link stays).
    pub async fn disconnect(&self, peer: &PeerId) -> Result<(), NodeError> {
        self.commands.send(Command::Disconnect(peer.clone())).await.map_err(|_| NodeError::Stopped)
    }

    /// Asks `worker` to hold itself for this node for `length` (at most an hour; reserving again
    /// renews). Refused while another peer holds it. The lease ends when it expires, on
    /// [`MeshNode::release`], or when this node's link to the worker closes.
    pub async fn reserve(&self, worker: &PeerId, length: Duration) -> Result<Lease, DataError> {
        let ask = serde_json::to_vec(&LeaseAsk::Reserve { ms: length.as_millis() as u64 }).unwrap_or_default();
        let asked = tokio::time::Instant::now();
        let answer = self.request(worker, crate::lease::PROTOCOL, ask, LEASE_ASK_TIMEOUT).await?;
        let granted: LeaseGranted =
            serde_json::from_slice(&answer).map_err(|e| DataError::Refused(format!("not a lease answer: {e}")))?;
        Ok(Lease { worker: worker.clone(), id: granted.lease, until: asked + Duration::from_millis(granted.ms) })
    }

    /// Gives `lease` back to its worker.
    pub async fn release(&self, lease: &Lease) -> Result<(), DataError> {
        let ask = serde_json::to_vec(&LeaseAsk::Release { lease: lease.id }).unwrap_or_default();
        self.request(&lease.worker, crate::lease::PROTOCOL, ask, LEASE_ASK_TIMEOUT).await.map(|_| ())
    }

    /// Serves the file at `path` to the room under its content id (it is read once to hash it;
    /// it must not change while served).
    pub async fn provide(&self, path: impl Into<std::path::PathBuf>) -> Result<BlobId, TransferError> {
        Ok(self.provided.add(path.into()).await?.0)
    }

    /// Stops serving blob `id`.
    pub fn unprovide(&self, id: &BlobId) {
        self.provided.remove(id);
    }

    /// Fetches blob `id` from `from` into `dest`, verified chunk by chunk; an interrupted fetch
    /// resumes from what `DEST.part` holds, and a `dest` that holds the content already is kept
    /// (nothing is fetched). `progress`, if given, follows it.
    pub async fn fetch(
        &self,
        from: &PeerId,
        id: &BlobId,
        dest: &std::path::Path,
        progress: Option<&watch::Sender<crate::transfer::Progress>>,
    ) -> Result<crate::transfer::FetchReport, TransferError> {
        crate::transfer::fetch(self, from, id, dest, progress).await
    }
}
