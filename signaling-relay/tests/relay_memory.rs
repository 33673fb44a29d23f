//! The `relay` signaler ahead of a rendezvous path, on in-memory plugins (paused time): the
//! `memory` signaler stands in for the WebSocket here; `tests/` repeats the key case on the real
//! stack.

use mesh_core::memory::{MemoryNetwork, MemorySignaler, MemoryTransport};
use mesh_core::{MeshNode, NodeOptions, PathCounters, PeerId, Role, Signaler};
use signaling_relay::{RelayConfig, RelaySignaler};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// The options of worker `name` in room `room`.
fn options(name: &str) -> NodeOptions {
    NodeOptions { max_message_bytes: 64 * 1024, ..mesh_core::testing::options("room", name, Role::Worker, 0) }
}

async fn start(net: &MemoryNetwork, name: &str, relay: bool) -> MeshNode {
    let options = options(name);
    let transport = Arc::new(MemoryTransport::new(net.clone(), peer(name), Duration::from_secs(5)));
    let mut signalers: Vec<Arc<dyn Signaler>> = Vec::new();
    if relay {
        signalers.push(Arc::new(RelaySignaler::new(RelayConfig::default())));
    }
    signalers.push(Arc::new(MemorySignaler::new(net.clone())));
    MeshNode::start(options, transport, signalers).await.expect("node starts")
}

async fn wait_links(node: &MeshNode, links: usize) {
    node.wait_links(links, WAIT).await.unwrap_or_else(|e| {
        panic!("{} did not reach {links} links: {e}; {:?}", node.peer_id(), node.snapshot().health)
    });
}

fn path(node: &MeshNode, name: &str) -> PathCounters {
    node.snapshot().signals.get(name).cloned().unwrap_or_default()
}

async fn mesh(net: &MemoryNetwork, n: usize) -> Vec<MeshNode> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start(net, &format!("w{i}"), true).await);
        wait_links(&nodes[i], i).await; // one at a time
    }
    for node in &nodes {
        wait_links(node, n - 1).await;
    }
    nodes
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_signals_its_first_links_by_the_rendezvous_that_introduced_them() {
    let net = MemoryNetwork::new();
    let mut nodes = mesh(&net, 4).await;
    let before: Vec<(PathCounters, PathCounters)> =
        nodes.iter().map(|n| (path(n, "memory"), path(n, "relay"))).collect();
    nodes.push(start(&net, "w4", true).await);
    for node in &nodes {
        wait_links(node, 4).await;
    }
    // No relay is linked to a newcomer yet: trying one first would only cost a round trip.
    let newcomer = &nodes[4];
    assert!(
        path(newcomer, "memory").sent >= 4,
        "offers to w0..w3 by the rendezvous: {:?}",
        newcomer.snapshot().signals
    );
    assert_eq!(path(newcomer, "relay"), PathCounters::default(), "no relay tried, none failed");
    for (n, (memory, relay)) in nodes.iter().zip(before) {
        assert!(path(n, "memory").sent > memory.sent, "{} answered by the rendezvous", n.peer_id());
        assert_eq!(path(n, "relay").failed, relay.failed, "{}: no relay attempt failed", n.peer_id());
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_link_is_made_again_by_relay_through_the_admin() {
    let net = MemoryNetwork::new();
    let nodes = mesh(&net, 4).await;
    let (w1, w2) = (&nodes[1], &nodes[2]);
    let (memory_before, relay_before) = (path(w1, "memory").sent + path(w2, "memory").sent, path(w1, "relay").sent);
    net.cut(&peer("w1"), &peer("w2"));
    w1.wait_for(WAIT, |s| s.health.links_up == 2).await.expect("w1 lost its link to w2");
    net.heal();
    wait_links(w1, 3).await;
    wait_links(w2, 3).await;
    // The two were linked before, and the admin is linked to both: the relay carries it all.
    assert!(path(w1, "relay").sent > relay_before, "{:?}", w1.snapshot().signals);
    assert_eq!(path(w1, "memory").sent + path(w2, "memory").sent, memory_before, "the rendezvous was not needed");
}

#[tokio::test(start_paused = true)]
async fn with_the_admin_cut_off_mid_formation_the_rendezvous_takes_over() {
    let net = MemoryNetwork::new();
    let mut nodes = mesh(&net, 4).await;
    for other in ["w1", "w2", "w3"] {
        net.cut(&peer("w0"), &peer(other)); // relays through the admin now vanish
    }
    nodes.push(start(&net, "w4", true).await);
    for node in &nodes[1..] {
        node.wait_for(WAIT, |s| {
            ["w1", "w2", "w3", "w4"]
                .iter()
                .filter(|w| **w != s.health.peer.as_str())
                .all(|w| s.health.peers.iter().any(|p| p.peer.as_str() == *w && p.state == mesh_core::LinkStatus::Up))
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}; {:?}", node.peer_id(), node.snapshot().health));
    }
    let newcomer = path(&nodes[4], "memory");
    assert!(newcomer.sent > 1, "the rendezvous carried more than the first link: {:?}", nodes[4].snapshot().signals);
}

#[tokio::test(start_paused = true)]
async fn without_the_relay_the_rendezvous_alone_forms_the_mesh() {
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(&net, &format!("w{i}"), false).await);
    }
    for node in &nodes {
        wait_links(node, 4).await;
        assert!(!node.snapshot().signals.contains_key("relay"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_relay_storm_of_joiners_forms_the_mesh_without_duplicates() {
    let net = MemoryNetwork::new();
    let mut nodes = mesh(&net, 3).await;
    for i in 3..9 {
        nodes.push(start(&net, &format!("w{i}"), true).await); // six at once, no waiting
    }
    for node in &nodes {
        wait_links(node, 8).await;
    }
    let opened: u64 = nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
    assert_eq!(opened, 9 * 8, "36 links, each opened once at both ends");
    let failed: u64 = nodes.iter().map(|n| path(n, "relay").failed).sum();
    assert_eq!(failed, 0, "no signal tried a relay that could not reach its peer");
}

#[tokio::test]
async fn a_chain_of_the_relay_alone_is_refused_at_start_saying_why() {
    let net = MemoryNetwork::new();
    let options = options("w0");
    let transport = Arc::new(MemoryTransport::new(net.clone(), peer("w0"), Duration::from_secs(5)));
    let relay: Arc<dyn Signaler> = Arc::new(RelaySignaler::new(RelayConfig::default()));
    let err = match MeshNode::start(options, transport, vec![relay]).await {
        Ok(_) => panic!("a relay-only chain must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("can never open a first link") && err.contains("\"ws\""), "{err}");
}
