//! Test harness: start nodes on an explicit in-memory network and wait on their snapshots.
#![allow(dead_code)]

use mesh_core::memory::{MemoryNetwork, MemorySignaler, MemoryTransport};
use mesh_core::node::NodeOptions;
use mesh_core::{MeshNode, PeerId, Role, Signaler, Snapshot};
use std::sync::Arc;
use std::time::Duration;

/// Generous bound for any wait; on paused time it costs nothing.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

pub(crate) fn options(name: &str, role: Role, gpu: u64) -> NodeOptions {
    // Small messages: the rogue tests send one just over the limit.
    NodeOptions { max_message_bytes: 64 * 1024, ..mesh_core::testing::options("room", name, role, gpu) }
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
    mesh_core::testing::wait_links(node, links, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `n` workers (`w0`..) without waiting in between, then waits for the full mesh.
pub(crate) async fn spawn_mesh(net: &MemoryNetwork, n: usize) -> Vec<MeshNode> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start(net, &format!("w{i}")).await);
    }
    mesh_core::testing::wait_full_mesh(&nodes, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    nodes
}

#[allow(unused_imports)] // not every test file counts attempts
pub(crate) use mesh_core::testing::attempts;

pub(crate) fn o_room() -> mesh_core::RoomId {
    options("x", Role::Worker, 0).identity.room
}

/// A rogue peer (`role`, registering `key` if any) that links to w0 by hand, signing its offer
/// with `key`: the open link's handle, and its signaler (its registration lasts as long).
pub(crate) async fn rogue_link(
    net: &MemoryNetwork,
    role: Role,
    key: Option<&mesh_core::identity::NodeKey>,
) -> (mesh_core::LinkHandle, mesh_core::memory::MemorySignaler) {
    use mesh_core::memory::{MemorySignaler, MemoryTransport};
    use mesh_core::{
        Identity, Inbound, NoLinks, SessionId, Signal, Signaler, SignalerContext, SignalingEvent, Transport,
    };
    use std::sync::Arc;
    let (inbox, mut rx) = tokio::sync::mpsc::channel::<Inbound>(64);
    let rogue = MemorySignaler::new(net.clone());
    let o = options("rogue", role, 0);
    let identity = Identity { key: key.map(|k| k.public_hex()), ..o.identity };
    rogue.start(SignalerContext { identity, inbox, mesh: Arc::new(NoLinks) }).await.expect("registered");
    let transport = MemoryTransport::new(net.clone(), peer("rogue"), Duration::from_secs(5));
    let (sink, mut out) = tokio::sync::mpsc::channel(8);
    let mut handle = transport.dial(&peer("w0"), sink).await.unwrap();
    let session = SessionId { offerer: peer("rogue"), seq: 1 };
    let mut signal = Signal::new(session, out.recv().await.unwrap());
    signal.sig = key.map(|k| k.sign(&o_room(), &peer("rogue"), &peer("w0"), &signal));
    rogue.send(&peer("w0"), signal).await.unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Inbound { event: SignalingEvent::Signal { signal, .. }, .. }) = rx.recv().await {
                return signal.body;
            }
        }
    })
    .await
    .expect("answer");
    handle.link.apply_signal(answer).await.unwrap();
    assert_eq!(handle.events.recv().await, Some(mesh_core::LinkEvent::Open));
    (handle, rogue)
}
