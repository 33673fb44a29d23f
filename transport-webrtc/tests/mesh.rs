//! Whole meshes over this transport (signals through the in-memory signaler): the mesh-core tour
//! again on real WebRTC links, and crossing offers settled into one link.

use mesh_core::memory::{MemoryNetwork, MemorySignaler};
use mesh_core::{MeshNode, NodeOptions, PeerId, Role, Timing};
use std::sync::Arc;
use std::time::Duration;
use transport_webrtc::{WebRtcConfig, WebRtcTransport};

const WAIT: Duration = Duration::from_secs(60);

fn options(name: &str, timing: Timing) -> NodeOptions {
    NodeOptions { timing, ..mesh_core::testing::options("room", name, Role::Worker, 0) }
}

async fn start(net: &MemoryNetwork, name: &str, timing: Timing) -> MeshNode {
    start_with(net, name, timing, WebRtcConfig::loopback()).await
}

async fn start_with(net: &MemoryNetwork, name: &str, timing: Timing, config: WebRtcConfig) -> MeshNode {
    let transport = Arc::new(WebRtcTransport::new(config, 1024 * 1024));
    MeshNode::start(options(name, timing), transport, vec![Arc::new(MemorySignaler::new(net.clone()))])
        .await
        .expect("node starts")
}

async fn wait_links(node: &MeshNode, links: usize) {
    mesh_core::testing::wait_links(node, links, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
}

use mesh_core::testing::attempts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_five_workers_admin_leaves_no_reconnects_then_a_newcomer_joins() {
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(&net, &format!("w{i}"), Timing::default()).await);
    }
    for n in &nodes {
        wait_links(n, 4).await;
    }
    let opened: u64 = nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
    assert_eq!(opened, 20, "each of the 10 pairs opened exactly one link, seen from both ends");

    let admin = nodes.remove(0);
    let before = attempts(&nodes);
    admin.leave().await;
    mesh_core::testing::wait_admin(&nodes, &PeerId::new("w1").unwrap(), WAIT).await.expect("new admin verified");
    for n in &nodes {
        assert_eq!(n.snapshot().health.links_up, 3, "{} lost a link to a survivor", n.peer_id());
    }
    assert_eq!(attempts(&nodes), before, "survivors made no new link attempts");
    assert!(nodes.iter().all(|n| n.snapshot().counters.reconnects == 0));

    nodes.push(start(&net, "w5", Timing::default()).await);
    for n in &nodes {
        wait_links(n, 4).await;
    }
    for n in nodes {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_offers_settle_into_one_link() {
    // Signals take longer than the offer wait, so the admin also dials the newcomer that is
    // already dialing it: two offers cross on the wire.
    let net = MemoryNetwork::new();
    let timing = Timing { offer_wait: Duration::from_millis(100), ..Timing::default() };
    let w0 = start(&net, "w0", timing.clone()).await;
    net.delay_signals(Duration::from_millis(400));
    let w1 = start(&net, "w1", timing).await;
    wait_links(&w0, 1).await;
    wait_links(&w1, 1).await;
    let (c0, c1) = (w0.snapshot().counters, w1.snapshot().counters);
    assert!(c0.dials >= 1 && c1.dials >= 1, "both sides dialed: {c0:?} / {c1:?}");
    assert_eq!((c0.links_opened, c1.links_opened), (1, 1), "one link, not two");
    w0.leave().await;
    w1.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_messages_beyond_the_link_queue_wait_instead_of_being_dropped() {
    let net = MemoryNetwork::new();
    // The sender's link takes 64 KiB at a time, so the queue in front of it fills up.
    let narrow = WebRtcConfig { send_buffer_bytes: 64 * 1024, ..WebRtcConfig::loopback() };
    let w0 = start_with(&net, "w0", Timing::default(), narrow).await;
    let w1 = start(&net, "w1", Timing::default()).await;
    wait_links(&w0, 1).await;
    wait_links(&w1, 1).await;
    const N: usize = 3000; // 47 MiB: far more than the 1,024-message queue in front of the link
    let mut inbox = w1.listen("test/bulk").expect("inbox");
    let receiver = tokio::spawn(async move {
        // Every message is seen once: none missing, none twice.
        let mut seen = vec![false; N];
        let mut got = 0usize;
        while got < N {
            let Some(incoming) = inbox.recv().await else { break };
            let n = u32::from_be_bytes(incoming.body()[..4].try_into().unwrap()) as usize;
            assert!(!std::mem::replace(&mut seen[n], true), "message {n} twice");
            got += 1;
        }
        got
    });
    // All at once, as concurrent callers would: the link's queue overflows unless send waits.
    let sends = (0..N as u32).map(|i| {
        let mut body = vec![b'x'; 16 * 1024];
        body[..4].copy_from_slice(&i.to_be_bytes());
        w0.send(w1.peer_id(), "test/bulk", body)
    });
    for result in futures::future::join_all(sends).await {
        result.expect("acknowledged, never dropped");
    }
    let got = tokio::time::timeout(WAIT, receiver).await.expect("all arrive in time").unwrap();
    assert_eq!(got, N);
    w0.leave().await;
    w1.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_leaves_no_link_task_of_its_transport_running() {
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    let mut transports = Vec::new();
    for name in ["w0", "w1", "w2"] {
        let transport = Arc::new(WebRtcTransport::new(WebRtcConfig::loopback(), 1024 * 1024));
        transports.push(transport.clone());
        let signalers: Vec<Arc<dyn mesh_core::Signaler>> = vec![Arc::new(MemorySignaler::new(net.clone()))];
        nodes.push(MeshNode::start(options(name, Timing::default()), transport, signalers).await.expect("starts"));
    }
    for n in &nodes {
        wait_links(n, 2).await;
    }
    assert!(transports.iter().all(|t| t.running_links() >= 2), "each transport runs its links' tasks");
    for (node, transport) in nodes.into_iter().zip(&transports) {
        node.leave().await;
        assert_eq!(transport.running_links(), 0, "the transport's link tasks ended with its node");
    }
}
