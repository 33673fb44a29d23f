//! A kit for tests and benchmarks of meshes built on this crate: node options with test-sized
//! limits, the waits every test needs (a full mesh, a verified admin everywhere), and counts.
//! Every wait takes a timeout and says, when it runs out, what the node saw instead.

pub mod chain;

use crate::id::{PeerId, RoomId};
use crate::node::{MeshNode, NodeOptions, Snapshot};
use crate::room::{Metadata, WorkerRecord};
use crate::signaler::{Identity, Role};
use crate::state::Timing;
use std::time::Duration;

/// The fenced code blocks of a documentation page whose info string is `json KIND`, as (kind,
/// body): for the tests that parse every example of a protocol page. An unclosed block is skipped.
pub fn json_blocks(doc: &str) -> Vec<(String, String)> {
    doc.split("```json ")
        .skip(1)
        .filter_map(|block| {
            let (header, rest) = block.split_once('\n')?;
            let body = rest.split("```").next()?;
            Some((header.trim().to_string(), body.to_string()))
        })
        .collect()
}

/// The options of `name` in `room`: role, a record whose priority and `gpu_memory_mb` are
/// `gpu`, default timings, 500 ms signal confirmations, 1 MiB messages, any key admitted.
pub fn options(room: &str, name: &str, role: Role, gpu: u64) -> NodeOptions {
    let mut metadata = Metadata::new();
    metadata.insert("gpu_memory_mb".into(), gpu.into());
    NodeOptions {
        identity: Identity {
            room: RoomId::new(room).expect("a valid room id"),
            peer: PeerId::new(name).expect("a valid peer id"),
            role,
            record: WorkerRecord::new(gpu, metadata),
            key: None,
        },
        timing: Timing::default(),
        signal_timeout: Duration::from_millis(500),
        max_message_bytes: 1024 * 1024,
        trust: Default::default(),
        data: Default::default(),
        max_client_links: crate::state::DEFAULT_MAX_CLIENT_LINKS,
    }
}

/// Link attempts (dials and accepts) of `nodes`, summed: what "no new attempts" is checked on.
pub fn attempts(nodes: &[MeshNode]) -> u64 {
    nodes.iter().map(|n| n.snapshot().counters.attempts()).sum()
}

/// Open links among `nodes` (each counted once).
pub fn links(nodes: &[MeshNode]) -> usize {
    nodes.iter().map(|n| n.snapshot().health.links_up).sum::<usize>() / 2
}

/// Waits until `node` holds `links` open links of `links` expected; the error shows its health.
pub async fn wait_links(node: &MeshNode, links: usize, timeout: Duration) -> Result<Snapshot, String> {
    node.wait_links(links, timeout)
        .await
        .map_err(|e| format!("{} did not reach {links} links: {e}; {:?}", node.peer_id(), node.snapshot().health))
}

/// Waits until every one of `nodes` holds a link to every other (a full mesh of them).
pub async fn wait_full_mesh(nodes: &[MeshNode], timeout: Duration) -> Result<(), String> {
    for node in nodes {
        wait_links(node, nodes.len() - 1, timeout).await?;
    }
    Ok(())
}

/// Waits until every one of `nodes` follows `admin`, verified, with every link it expects
/// open (the end of a failover, seen from each survivor).
pub async fn wait_admin(nodes: &[MeshNode], admin: &PeerId, timeout: Duration) -> Result<(), String> {
    for node in nodes {
        let settled = |s: &Snapshot| {
            s.health.admin.as_ref() == Some(admin)
                && s.health.admin_verified
                && s.health.links_up == s.health.links_expected
        };
        node.wait_for(timeout, settled).await.map_err(|e| {
            format!(
                "{} does not follow {admin}, verified, fully linked: {e}; {:?}",
                node.peer_id(),
                node.snapshot().health
            )
        })?;
    }
    Ok(())
}

/// Sends `body` from `from` to `to` as an application message (on a protocol of its own) and
/// returns what `to`'s inbox received, within `timeout`.
pub async fn deliver(from: &MeshNode, to: &MeshNode, body: &[u8], timeout: Duration) -> Result<bytes::Bytes, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let proto = format!("testing/deliver-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut inbox = to.listen(&proto).map_err(|e| e.to_string())?;
    let round = async {
        from.send(to.peer_id(), &proto, bytes::Bytes::copy_from_slice(body)).await.map_err(|e| e.to_string())?;
        let got = inbox.recv().await.ok_or("the receiver stopped")?;
        Ok::<_, String>(got.body().clone())
    };
    tokio::time::timeout(timeout, round).await.map_err(|_| format!("not delivered within {timeout:?}"))?
}
