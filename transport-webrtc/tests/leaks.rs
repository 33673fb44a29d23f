//! Opening and closing many links returns tasks and file descriptors to their baseline.
//! Alone in its binary: file descriptors are counted process-wide.

mod common;

use common::*;
use mesh_core::{CloseReason, LinkEvent};
use std::time::Duration;
use transport_webrtc::WebRtcTransport;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

async fn open_and_close(a: &WebRtcTransport, b: &WebRtcTransport) {
    let (mut x, mut y) = open_pair(a, b).await;
    x.link.send(bytes::Bytes::from_static(b"hi")).await.unwrap();
    assert_eq!(message(&mut y.events).await, bytes::Bytes::from_static(b"hi"));
    x.link.close().await;
    assert_eq!(next(&mut x.events).await, LinkEvent::Closed(CloseReason::Local));
    assert_eq!(next(&mut y.events).await, LinkEvent::Closed(CloseReason::Remote));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_links_opened_and_closed_leave_no_tasks_or_sockets() {
    let (a, b) = (transport(), transport());
    open_and_close(&a, &b).await; // warm-up: lazily created process-wide state
    let metrics = tokio::runtime::Handle::current().metrics();
    let (tasks, fds) = (metrics.num_alive_tasks(), open_fds());
    for _ in 0..200 {
        open_and_close(&a, &b).await;
    }
    let settled = eventually(Duration::from_secs(10), || metrics.num_alive_tasks() <= tasks && open_fds() <= fds).await;
    assert!(
        settled,
        "after 200 links: {} tasks (baseline {tasks}), {} fds (baseline {fds})",
        metrics.num_alive_tasks(),
        open_fds()
    );
}
