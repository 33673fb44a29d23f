//! The `ws` signaler with real nodes: in-memory links, signaling through the real server.

use mesh_core::memory::{MemoryNetwork, MemoryTransport};
use mesh_core::node::NodeOptions;
use mesh_core::{MeshNode, PeerId, Role};
use signaling_ws::{ServerConfig, SignalingServer, WsSignaler};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Starts worker `name` in room `lab`: in-memory links, signaling through the server at `url`.
async fn try_node(net: &MemoryNetwork, url: &str, name: &str) -> Result<MeshNode, mesh_core::NodeError> {
    let peer = PeerId::new(name).unwrap();
    let options =
        NodeOptions { max_message_bytes: 64 * 1024, ..mesh_core::testing::options("lab", name, Role::Worker, 0) };
    let transport = Arc::new(MemoryTransport::new(net.clone(), peer, Duration::from_secs(5)));
    MeshNode::start(options, transport, vec![Arc::new(WsSignaler::new(url, None))]).await
}

async fn node(net: &MemoryNetwork, url: &str, name: &str) -> MeshNode {
    try_node(net, url, name).await.expect("registers")
}

async fn full(nodes: &[MeshNode]) {
    let n = nodes.len() - 1;
    for node in nodes {
        node.wait_for(WAIT, |s| s.health.links_up == n && s.health.links_expected == n)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}: {:?}", node.peer_id(), node.snapshot().health));
    }
}

#[tokio::test]
async fn mesh_forms_with_signals_through_the_server() {
    let server = SignalingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).await.unwrap();
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(node(&net, &server.url(), &format!("w{i}")).await);
    }
    full(&nodes).await;
    let ws_sent: u64 = nodes.iter().map(|n| n.snapshot().signals.get("ws").map(|c| c.sent).unwrap_or(0)).sum();
    assert!(ws_sent >= 20, "10 links, an offer and an answer each: {ws_sent}");
    for n in nodes {
        n.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn b13_server_restart_leaves_the_mesh_undisturbed_and_workers_re_register() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = SignalingServer::bind(addr, ServerConfig::default()).await.unwrap();
    let (addr, url) = (server.local_addr(), server.url());
    let net = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(node(&net, &url, &format!("w{i}")).await);
    }
    full(&nodes).await;
    let before: Vec<u64> = nodes.iter().map(|n| n.snapshot().counters.links_opened).collect();
    server.shutdown().await;
    // The mesh keeps working while the server is away.
    let got = mesh_core::testing::deliver(&nodes[0], &nodes[1], b"still here", WAIT).await;
    assert_eq!(got.expect("app message over the mesh without a server"), &b"still here"[..]);
    let server = SignalingServer::bind(addr, ServerConfig::default()).await.expect("same port again");
    // Everyone re-registers: a newcomer then finds all three through the new server.
    nodes.push(node(&net, &url, "w3").await);
    full(&nodes).await;
    for (n, b) in nodes.iter().zip(before) {
        assert_eq!(n.snapshot().counters.links_opened, b + 1, "{}: only the newcomer's link is new", n.peer_id());
    }
    for n in nodes {
        n.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn registration_refusal_is_an_error_at_start() {
    let server = SignalingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).await.unwrap();
    let net = MemoryNetwork::new();
    let _a = node(&net, &server.url(), "same").await;
    let err = try_node(&net, &server.url(), "same").await.err().expect("refused");
    assert!(err.to_string().contains("already registered"), "{err}");
}
