//! [`SignalerChain`]: a [`Signaler`] made of signalers, tried in order (docs/BEHAVIOUR.md 11–12).
//!
//! Each member has its own confirmation timeout: the one it declares
//! ([`Signaler::confirm_timeout`], e.g. `relay.timeout_ms`), else the chain's (`timing.signal_timeout_ms`).
//! A member that answers `Unreachable`, errs, or
//! does not confirm in time is counted as a failure for that path, logged, and the next member is
//! tried. Which path carried each signal is counted in [`SignalStats`].

use crate::id::PeerId;
use crate::signal::Signal;
use crate::signaler::{Announcement, SignalError, Signaler, SignalerContext};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters of one signaling path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathCounters {
    /// Signals this path confirmed sending.
    pub sent: u64,
    /// Signals this path failed to send (each one a fallback to the next path, or a loss).
    pub failed: u64,
    /// Signals received by this path.
    pub received: u64,
}

/// Per-path signal counters, shared between a chain, its node and whoever reports on them.
#[derive(Debug, Clone, Default)]
pub struct SignalStats(Arc<Mutex<BTreeMap<String, PathCounters>>>);

impl SignalStats {
    fn update(&self, path: &str, f: impl FnOnce(&mut PathCounters)) {
        if let Ok(mut map) = self.0.lock() {
            f(map.entry(path.to_string()).or_default());
        }
    }
    /// Counts a signal received by `path`.
    pub fn received(&self, path: &str) {
        self.update(path, |c| c.received += 1);
    }
    /// A copy of every path's counters.
    pub fn snapshot(&self) -> BTreeMap<String, PathCounters> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Which paths a signal tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathOrder {
    /// The configured order.
    #[default]
    Configured,
    /// Paths that need no open link (the rendezvous) first, then the others in configured order:
    /// for a peer the rendezvous introduced and this node never linked, which no relay is known
    /// to reach yet (a relay that is not linked to it costs a round trip to find out).
    RendezvousFirst,
}

/// Who signs the chain's signals: the node's key, room and id.
struct Signer {
    key: Arc<crate::identity::NodeKey>,
    room: crate::RoomId,
    me: PeerId,
}

/// Signalers tried in order, each with its confirmation timeout.
pub struct SignalerChain {
    members: Vec<(Arc<dyn Signaler>, Duration)>,
    stats: SignalStats,
    signer: Option<Signer>,
}

impl SignalerChain {
    /// A chain of `members` (tried first to last), each allowed the timeout it declares, else
    /// `timeout`, to confirm.
    pub fn new(members: Vec<Arc<dyn Signaler>>, timeout: Duration) -> Self {
        Self {
            members: members
                .into_iter()
                .map(|s| {
                    let own = s.confirm_timeout().unwrap_or(timeout);
                    (s, own)
                })
                .collect(),
            stats: SignalStats::default(),
            signer: None,
        }
    }

    /// The chain, signing every signal it sends as `me` in `room` with `key`.
    pub fn signed(mut self, key: Arc<crate::identity::NodeKey>, room: crate::RoomId, me: PeerId) -> Self {
        self.signer = Some(Signer { key, room, me });
        self
    }

    /// The chain's counters.
    pub fn stats(&self) -> SignalStats {
        self.stats.clone()
    }

    /// Names of the members, in order.
    pub fn paths(&self) -> Vec<&'static str> {
        self.members.iter().map(|(s, _)| s.name()).collect()
    }

    /// Sends `signal` to `to` by the first path, in `order`, that confirms it.
    pub async fn send_in(&self, order: PathOrder, to: &PeerId, mut signal: Signal) -> Result<(), SignalError> {
        if let Some(s) = &self.signer {
            signal.sig = Some(s.key.sign(&s.room, &s.me, to, &signal));
        }
        let mut members: Vec<&(Arc<dyn Signaler>, Duration)> = self.members.iter().collect();
        if order == PathOrder::RendezvousFirst {
            members.sort_by_key(|(m, _)| m.needs_open_links()); // stable: configured order within
        }
        let mut last = None;
        let queued_us = crate::timeline::unix_us();
        for (i, (member, timeout)) in members.iter().enumerate() {
            let result = match tokio::time::timeout(*timeout, member.send(to, signal.clone())).await {
                Ok(result) => result,
                Err(_) => Err(SignalError::Timeout(*timeout)),
            };
            match result {
                Ok(()) => {
                    self.stats.update(member.name(), |c| c.sent += 1);
                    let (kind, session) = (signal.body.kind(), &signal.session);
                    crate::mark!("signal_out", peer = %to, %session, kind, path = member.name(), queued_us);
                    return Ok(());
                }
                Err(err) => {
                    self.stats.update(member.name(), |c| c.failed += 1);
                    let next = members.get(i + 1).map(|(s, _)| s.name()).unwrap_or("none");
                    tracing::info!(path = member.name(), %to, session = %signal.session, next, error = %err, "signal fallback");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(SignalError::Unreachable { peer: to.clone(), why: "no signaling path configured".into() }))
    }
}

#[async_trait]
impl Signaler for SignalerChain {
    fn name(&self) -> &'static str {
        "chain"
    }

    async fn start(&self, ctx: SignalerContext) -> Result<(), SignalError> {
        if self.members.iter().all(|(m, _)| m.needs_open_links()) {
            let names = self.paths().join(", ");
            return Err(SignalError::Misconfigured(format!(
                "signaling = [{names}] can never open a first link: these paths only carry signals over \
                 links that are already open; add a rendezvous signaler after them, e.g. signaling = [\"relay\", \"ws\"]"
            )));
        }
        for (member, _) in &self.members {
            member.start(ctx.clone()).await?;
        }
        Ok(())
    }

    async fn send(&self, to: &PeerId, signal: Signal) -> Result<(), SignalError> {
        self.send_in(PathOrder::Configured, to, signal).await
    }

    async fn announce(&self, what: Announcement) -> Result<(), SignalError> {
        for (member, timeout) in &self.members {
            match tokio::time::timeout(*timeout, member.announce(what.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(path = member.name(), error = %err, "announcement not delivered"),
                Err(_) => tracing::debug!(path = member.name(), "announcement timed out"),
            }
        }
        Ok(())
    }

    async fn stop(&self) {
        for (member, _) in &self.members {
            member.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{SessionId, SignalBody};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A path that never confirms, or confirms at once and counts.
    struct Path {
        name: &'static str,
        hangs: bool,
        delivered: AtomicU64,
    }

    /// A path that confirms after `takes`, and declares `own` as its confirmation timeout.
    struct Slow {
        takes: Duration,
        own: Option<Duration>,
    }

    #[async_trait]
    impl Signaler for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn confirm_timeout(&self) -> Option<Duration> {
            self.own
        }
        async fn start(&self, _: SignalerContext) -> Result<(), SignalError> {
            Ok(())
        }
        async fn send(&self, _: &PeerId, _: Signal) -> Result<(), SignalError> {
            tokio::time::sleep(self.takes).await;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn b11_a_path_with_a_timeout_of_its_own_gets_it_not_the_chains() {
        let to = PeerId::new("b").unwrap();
        let takes = Duration::from_millis(800);
        let own = Arc::new(Slow { takes, own: Some(Duration::from_secs(1)) });
        let chain = SignalerChain::new(vec![own], Duration::from_millis(500));
        chain.send(&to, signal()).await.expect("confirmed within its own 1 s, past the chain's 500 ms");
        let plain = Arc::new(Slow { takes, own: None });
        let chain = SignalerChain::new(vec![plain], Duration::from_millis(500));
        assert!(chain.send(&to, signal()).await.is_err(), "no timeout of its own: the chain's 500 ms");
    }

    #[async_trait]
    impl Signaler for Path {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn start(&self, _: SignalerContext) -> Result<(), SignalError> {
            Ok(())
        }
        async fn send(&self, _: &PeerId, _: Signal) -> Result<(), SignalError> {
            if self.hangs {
                std::future::pending::<()>().await;
            }
            self.delivered.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn signal() -> Signal {
        let peer = PeerId::new("a").unwrap();
        Signal::new(SessionId { offerer: peer, seq: 1 }, SignalBody::Candidate { candidate: "c".into() })
    }

    #[tokio::test(start_paused = true)]
    async fn b11_unconfirmed_path_falls_back_to_the_next_after_its_timeout() {
        let slow = Arc::new(Path { name: "relay", hangs: true, delivered: AtomicU64::new(0) });
        let fast = Arc::new(Path { name: "ws", hangs: false, delivered: AtomicU64::new(0) });
        let chain = SignalerChain::new(vec![slow.clone(), fast.clone()], Duration::from_millis(500));
        let started = tokio::time::Instant::now();
        chain.send(&PeerId::new("b").unwrap(), signal()).await.expect("second path delivers");
        assert_eq!(started.elapsed(), Duration::from_millis(500), "waited exactly the path timeout");
        assert_eq!(fast.delivered.load(Ordering::SeqCst), 1);
        let stats = chain.stats().snapshot();
        assert_eq!((stats["relay"].failed, stats["relay"].sent), (1, 0));
        assert_eq!((stats["ws"].failed, stats["ws"].sent), (0, 1));
        assert_eq!(chain.paths(), ["relay", "ws"]);
    }

    #[tokio::test(start_paused = true)]
    async fn b12_every_path_failing_is_an_error() {
        let slow = Arc::new(Path { name: "relay", hangs: true, delivered: AtomicU64::new(0) });
        let chain = SignalerChain::new(vec![slow], Duration::from_millis(100));
        let err = chain.send(&PeerId::new("b").unwrap(), signal()).await.unwrap_err();
        assert!(matches!(err, SignalError::Timeout(_)), "{err}");
    }
}
