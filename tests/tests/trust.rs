//! The attacks of a rogue member on the real stack (real server, WebRTC, signed nodes): a client
//! and a worker of the room, each with a key of its own, try to take or move the admin role, to
//! list themselves, and to link with signals that do not verify. Nothing changes.

use mesh_core::Signaler;
use mesh_core::{MeshConfig, MeshMessage, MeshNode, PeerId, RegistryFilter, Role, Vote, WorkerRecord};
use mesh_examples::stack::Stack;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn id(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

async fn formed(stack: &Stack, names: &[&str]) -> Vec<MeshNode> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(stack.start(name).await.expect("worker starts"));
    }
    for n in &nodes {
        n.wait_links(names.len() - 1, WAIT).await.expect("full mesh");
    }
    nodes
}

fn config() -> MeshConfig {
    MeshConfig {
        room: "real".into(),
        transport: "webrtc".into(),
        signaling: vec!["relay".into(), "ws".into()],
        ..MeshConfig::default()
    }
}

/// Whom the server names admin, as a newcomer's registration answer says.
async fn named_by_server(stack: &Stack) -> Option<PeerId> {
    use mesh_core::{Identity, Inbound, RoomId, SignalerContext, SignalingEvent};
    let signaler = signaling_ws::WsSignaler::new(stack.server_url().unwrap(), None);
    let (inbox, mut rx) = tokio::sync::mpsc::channel::<Inbound>(64);
    let identity = Identity {
        room: RoomId::new("real").unwrap(),
        peer: id("observer"),
        role: Role::Client,
        record: WorkerRecord::new(0, Default::default()),
        key: None,
    };
    let mesh = std::sync::Arc::new(mesh_core::NoLinks);
    signaler.start(SignalerContext { identity, inbox, mesh }).await.expect("registered");
    let admin = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Inbound { event: SignalingEvent::Registered { admin, .. }, .. }) = rx.recv().await {
                return admin;
            }
        }
    })
    .await
    .expect("registered in time");
    signaler.stop().await;
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_a_rogue_client_or_worker_can_take_or_move_no_role_nor_list_itself() {
    for role in [Role::Client, Role::Worker] {
        let stack = Stack::new(config()).await.unwrap();
        let nodes = formed(&stack, &["w0", "w1", "w2"]).await;
        let page_before = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
        let epochs: Vec<u64> = nodes.iter().map(|n| n.snapshot().health.epoch).collect();
        let mesh_tests::Rogue { mut link, signaler, key, tasks: _tasks } = mesh_tests::rogue_link(&stack, role).await;
        let room = mesh_core::RoomId::new("real").unwrap();
        let mut hostile = Vec::new();
        for epoch in [1, 1_000_000_000_000, mesh_core::MAX_EPOCH, u64::MAX] {
            // For itself, for a third party, with a forged proof, and unasked acks.
            for admin in ["rogue", "w2", "w1"] {
                hostile.push(MeshMessage::Heartbeat {
                    seq: 1,
                    admin: Some(id(admin)),
                    epoch,
                    admin_linked: true,
                    links: Some(9),
                });
            }
            let sig = Some(key.sign_vote(&room, epoch, &id("rogue")));
            let votes = ["rogue", "w1", "w2"].iter().map(|v| Vote { voter: id(v), sig: sig.clone() }).collect();
            hostile.push(MeshMessage::AdminProof { epoch, votes });
            hostile.push(MeshMessage::AdminVerifyAck { id: 1, admin: Some(id("rogue")), epoch, votes: vec![] });
            hostile.push(MeshMessage::AdminVote { epoch, sig: None });
        }
        // Its own record at the top of the registry, with a random and with its own signature.
        let mut record = WorkerRecord { version: u64::MAX / 4, ..WorkerRecord::new(1_000_000_000, Default::default()) };
        record.sig = Some("ab".repeat(64));
        hostile.push(MeshMessage::Record { peer: id("rogue"), record: record.clone() });
        record.sig = Some(key.sign_record(&room, &id("rogue"), &record));
        hostile.push(MeshMessage::Record { peer: id("rogue"), record });
        for msg in hostile {
            link.link.send(msg.encode().into()).await.expect("sent");
        }
        // And through the server: an announcement with no proof, then one with forged votes.
        let forged = mesh_core::Proof { epoch: 1_000_000_000_000, votes: vec![] };
        let _ = signaler.announce(mesh_core::Announcement::Admin(forged)).await;
        mesh_tests::read_everything(&mut link).await;
        for n in &nodes {
            let h = n.snapshot().health;
            assert_eq!((h.admin.as_ref().map(|a| a.as_str()), h.admin_verified), (Some("w0"), true), "{role:?}: {h:?}");
        }
        let after: Vec<u64> = nodes.iter().map(|n| n.snapshot().health.epoch).collect();
        assert_eq!(after, epochs, "{role:?}: no epoch taken on the rogue's word");
        assert_eq!(named_by_server(&stack).await, Some(id("w0")), "{role:?}: the server still names w0");
        let page = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
        let honest = |p: &mesh_core::RegistryPage| {
            p.workers.iter().filter(|m| m.peer.as_str() != "rogue").cloned().collect::<Vec<_>>()
        };
        assert_eq!(honest(&page), honest(&page_before), "{role:?}: the honest records are unchanged");
        // A worker may raise its own priority (its record is its own); a client holds no record.
        if role == Role::Client {
            assert_eq!(page.total_count, 3, "a client is never counted: {page:?}");
            assert!(page.workers.iter().all(|m| m.peer.as_str() != "rogue"));
        }
        assert!(nodes[0].snapshot().counters.refused >= 8, "{:?}", nodes[0].snapshot().counters);
        link.link.close().await;
        signaler.stop().await;
        for n in nodes {
            n.leave().await;
        }
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a21_a_client_whose_signals_are_not_signed_gets_no_link() {
    let stack = Stack::new(config()).await.unwrap();
    let nodes = formed(&stack, &["w0", "w1"]).await;
    let (refused, accepts) = (nodes[0].snapshot().counters.refused, nodes[0].snapshot().counters.accepts);
    let rogue = mesh_tests::rogue_dial(&stack, Role::Client, false).await;
    // w0 refuses the unsigned offer: the refusal is counted, and no link to the rogue ever opens.
    let mut watch = nodes[0].watch();
    tokio::time::timeout(WAIT, async {
        while nodes[0].snapshot().counters.refused == refused {
            watch.changed().await.expect("node runs");
        }
    })
    .await
    .expect("the unsigned offer is refused");
    let health = nodes[0].snapshot().health;
    assert!(
        health.peers.iter().all(|p| p.peer.as_str() != "rogue" || p.state != mesh_core::LinkStatus::Up),
        "{health:?}"
    );
    assert_eq!(nodes[0].snapshot().counters.accepts, accepts, "nothing answered");
    rogue.signaler.stop().await;
    for n in nodes {
        n.leave().await;
    }
    stack.shutdown().await;
}
