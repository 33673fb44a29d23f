//! The `memory` [`Transport`]: offers and answers name a pair slot in the [`MemoryNetwork`]; the
//! answer still travels through signaling, so signaler chains are exercised for real.

use super::link::{End, MemoryLink, Pending};
use super::MemoryNetwork;
use crate::id::PeerId;
use crate::signal::SignalBody;
use crate::transport::{CloseReason, LinkHandle, SignalSink, Transport, TransportError};
use async_trait::async_trait;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Default time an attempt has to open.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads `connect_timeout_ms` from a `[memory]` section.
pub(super) fn connect_timeout(section: &serde_json::Value) -> Result<Duration, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        connect_timeout_ms: Option<u64>,
    }
    if section.is_null() {
        return Ok(DEFAULT_CONNECT_TIMEOUT);
    }
    let s: Section = serde_json::from_value(section.clone()).map_err(|e| e.to_string())?;
    Ok(s.connect_timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_CONNECT_TIMEOUT))
}

/// In-process links between peers of one [`MemoryNetwork`].
pub struct MemoryTransport {
    net: MemoryNetwork,
    me: PeerId,
    connect_timeout: Duration,
}

impl MemoryTransport {
    /// A transport for peer `me` on `net`.
    pub fn new(net: MemoryNetwork, me: PeerId, connect_timeout: Duration) -> Self {
        Self { net, me, connect_timeout }
    }

    /// Fails the attempt if it has not opened within the connect timeout. The task ends when the
    /// attempt opens or closes, or at the timeout, whichever comes first.
    fn arm_timeout(&self, end: &Arc<End>) {
        let (weak, net, timeout): (Weak<End>, _, _) = (Arc::downgrade(end), self.net.clone(), self.connect_timeout);
        let settled = end.settled.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(timeout, settled.notified()).await.is_ok() {
                return;
            }
            if let Some(end) = weak.upgrade() {
                if !end.is_opened() {
                    net.lock().pending.remove(&end.id);
                    end.finish(CloseReason::ConnectTimeout);
                }
            }
        });
    }
}

fn slot(sdp: &str) -> Result<u64, TransportError> {
    sdp.strip_prefix("mem:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| TransportError::BadSignal(format!("not a memory offer: {sdp:.40}")))
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        super::NAME
    }

    async fn dial(&self, peer: &PeerId, signals: SignalSink) -> Result<LinkHandle, TransportError> {
        let id = self.net.next_id();
        let (end, events) = End::new(id, self.me.clone(), peer.clone(), self.net.clone());
        self.net.lock().pending.insert(id, Pending { dialer: end.clone() });
        self.arm_timeout(&end);
        signals
            .send(SignalBody::Offer { sdp: format!("mem:{id}") })
            .await
            .map_err(|_| TransportError::Setup("signal sink closed".into()))?;
        Ok(LinkHandle { link: Arc::new(MemoryLink { end }), events })
    }

    async fn accept(
        &self,
        peer: &PeerId,
        offer: SignalBody,
        signals: SignalSink,
    ) -> Result<LinkHandle, TransportError> {
        let sdp = offer.into_offer_sdp()?;
        let id = slot(&sdp)?;
        let (end, events) = End::new(id, self.me.clone(), peer.clone(), self.net.clone());
        let dialer = self.net.lock().pending.get(&id).map(|p| p.dialer.clone());
        match dialer {
            Some(dialer)
                if &dialer.local == peer && dialer.remote_peer == self.me && !self.net.is_cut(peer, &self.me) =>
            {
                End::pair(&dialer, &end);
                signals
                    .send(SignalBody::Answer { sdp })
                    .await
                    .map_err(|_| TransportError::Setup("signal sink closed".into()))?;
            }
            Some(dialer) if &dialer.local == peer && dialer.remote_peer == self.me => {} // cut: times out
            Some(_) => return Err(TransportError::BadSignal("offer names another pair".into())),
            None => {} // the dialer gave up already; this side times out
        }
        self.arm_timeout(&end);
        Ok(LinkHandle { link: Arc::new(MemoryLink { end }), events })
    }
}
