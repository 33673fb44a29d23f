//! Test helpers: a pair of links joined by an in-process signal ferry, and waits with timeouts.
#![allow(dead_code)]

use mesh_core::{LinkEvent, LinkHandle, PeerId};
use std::time::Duration;
use tokio::sync::mpsc;
use transport_webrtc::{WebRtcConfig, WebRtcTransport};

/// Generous bound for any single wait.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// A loopback transport with the mesh's default message limit.
pub(crate) fn transport() -> WebRtcTransport {
    WebRtcTransport::new(WebRtcConfig::loopback(), 1024 * 1024)
}

/// Dials from `a` and accepts on `b`; returns both handles (not yet open).
pub(crate) async fn pair(a: &WebRtcTransport, b: &WebRtcTransport) -> (LinkHandle, LinkHandle) {
    transport_webrtc::testing::pair(a, b).await.expect("dial and accept")
}

/// Dials, accepts and waits until both sides report `Open`.
pub(crate) async fn open_pair(a: &WebRtcTransport, b: &WebRtcTransport) -> (LinkHandle, LinkHandle) {
    let (mut x, mut y) = pair(a, b).await;
    assert_eq!(next(&mut x.events).await, LinkEvent::Open);
    assert_eq!(next(&mut y.events).await, LinkEvent::Open);
    (x, y)
}

/// The next link event, or a panic after [`WAIT`].
pub(crate) async fn next(events: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(WAIT, events.recv()).await.expect("a link event in time").expect("event stream open")
}

/// The next message, skipping nothing: any other event is a failure.
pub(crate) async fn message(events: &mut mpsc::Receiver<LinkEvent>) -> bytes::Bytes {
    match next(events).await {
        LinkEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub(crate) async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Logs to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
