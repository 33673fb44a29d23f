//! Test harness: start nodes on an explicit in-memory network and wait on their snapshots.
#![allow(dead_code)]

use mesh_core::memory::{MemoryNetwork, MemorySignaler, MemoryTransport};
use mesh_core::node::NodeOptions;
use mesh_core::{Identity, MeshNode, Metadata, PeerId, Role, RoomId, Signaler, Snapshot, Timing, WorkerRecord};
use std::sync::Arc;
use std::time::Duration;

/// Generous bound for any wait; on paused time it costs nothing.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

pub(crate) fn options(name: &str, role: Role, gpu: u64) -> NodeOptions {
    let mut metadata = Metadata::new();
    metadata.insert("gpu_memory_mb".into(), gpu.into());
    NodeOptions {
        identity: Identity {
            room: RoomId::new("room").unwrap(),
            peer: peer(name),
            role,
            record: WorkerRecord::new(gpu, metadata),
            key: None,
        },
        timing: Timing::default(),
        signal_timeout: Duration::from_millis(500),
        max_message_bytes: 64 * 1024,
        trust: Default::default(),
    }
}

pub(crate) async fn start_with(net: &MemoryNetwork, options: NodeOptions, extra: Vec<Arc<dyn Signaler>>) -> MeshNode {
    let transport = Arc::new(MemoryTransport::new(net.clone(), options.identity.peer.clone(), Duration::from_secs(5)));
    let mut signalers = extra;
    signalers.push(Arc::new(MemorySignaler::new(net.clone())));
    MeshNode::start(options, transport, signalers).await.expect("node starts")
}

pub(crate) async fn start(net: &MemoryNetwork, name: &str) -> MeshNode {
    start_with(net, options(name, Role::Worker, 0), vec![]).await
}

/// Waits until `node` holds `links` open links to a full room of `links + 1`.
pub(crate) async fn wait_links(node: &MeshNode, links: usize) -> Snapshot {
    node.wait_links(links, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{} did not reach {links} links: {e}; {:?}", node.peer_id(), node.snapshot().health))
}

/// Starts `n` workers (`w0`..) without waiting in between, then waits for the full mesh.
pub(crate) async fn spawn_mesh(net: &MemoryNetwork, n: usize) -> Vec<MeshNode> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start(net, &format!("w{i}")).await);
    }
    for node in &nodes {
        wait_links(node, n - 1).await;
    }
    nodes
}

/// Total link attempts (dials + accepts) across `nodes`.
pub(crate) fn attempts(nodes: &[MeshNode]) -> u64 {
    nodes.iter().map(|n| n.snapshot().counters.attempts()).sum()
}
