//! Support for tests and benchmarks: two links of this transport joined by an in-process signal
//! ferry, the way a signaler would join them; ([`wire`]) two of the stack's sans-IO peer
//! connections on a simulated wire in virtual time; and ([`shared`]) many of them on one real
//! socket, driven by one thread.

pub mod shared;
pub mod wire;

use mesh_core::{Link, LinkHandle, PeerId, SignalBody, Transport, TransportError};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// Carries one side's signals to the other side's link until either ends.
async fn ferry(mut signals: mpsc::Receiver<SignalBody>, to: Weak<dyn Link>) {
    while let Some(body) = signals.recv().await {
        let Some(link) = to.upgrade() else { return };
        if let Err(err) = link.apply_signal(body).await {
            tracing::warn!(error = %err, "ferried signal refused");
        }
    }
}

/// Dials from `a` (as peer `a`) and accepts on `b` (as peer `b`); returns both handles, not yet
/// open. The ferry tasks end when the links do.
pub async fn pair(a: &dyn Transport, b: &dyn Transport) -> Result<(LinkHandle, LinkHandle), TransportError> {
    let (peer_a, peer_b) = (PeerId::new("a").expect("valid id"), PeerId::new("b").expect("valid id"));
    let (a_tx, mut a_rx) = mpsc::channel(64);
    let (b_tx, b_rx) = mpsc::channel(64);
    let dialer = a.dial(&peer_b, a_tx).await?;
    let offer = a_rx.recv().await.ok_or_else(|| TransportError::Setup("no offer".into()))?;
    let acceptor = b.accept(&peer_a, offer, b_tx).await?;
    tokio::spawn(ferry(a_rx, Arc::downgrade(&acceptor.link)));
    tokio::spawn(ferry(b_rx, Arc::downgrade(&dialer.link)));
    Ok((dialer, acceptor))
}
