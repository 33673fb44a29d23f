//! Whole stacks over real WebRTC links and the real signaling server on loopback, in one process:
//! formation, the admin leaving and crashing, a join during formation, the relay carrying every
//! link but a newcomer's first, and a server restart while the mesh runs.

use mesh_core::{MeshConfig, MeshNode};
use mesh_examples::stack::Stack;
use serde_json::json;
use signaling_ws::{ServerConfig, SignalingServer};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn base(signaling: &[&str]) -> MeshConfig {
    MeshConfig {
        room: "real".into(),
        transport: "webrtc".into(),
        signaling: signaling.iter().map(|s| s.to_string()).collect(),
        ..MeshConfig::default()
    }
}

async fn start(stack: &Stack, names: &[&str]) -> Vec<MeshNode> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(stack.start(name).await.expect("worker starts"));
    }
    nodes
}

async fn wait_full(nodes: &[MeshNode]) {
    mesh_core::testing::wait_full_mesh(nodes, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
}

async fn leave_all(nodes: Vec<MeshNode>) {
    for n in nodes {
        n.leave().await;
    }
}

use mesh_core::testing::attempts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_and_five_workers_form_a_full_mesh() {
    for n in [3usize, 5] {
        let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        let nodes = start(&stack, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
        wait_full(&nodes).await;
        let opened: u64 = nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
        assert_eq!(opened as usize, n * (n - 1), "one link per pair, seen from both ends");
        leave_all(nodes).await;
        stack.shutdown().await;
    }
}

async fn admin_goes_away(crash: bool) {
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let mut nodes = start(&stack, &["w0", "w1", "w2", "w3", "w4"]).await;
    wait_full(&nodes).await;
    let admin = nodes.remove(0);
    let before = attempts(&nodes);
    if crash {
        admin.abort();
    } else {
        admin.leave().await;
    }
    mesh_core::testing::wait_admin(&nodes, &mesh_core::PeerId::new("w1").unwrap(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for n in &nodes {
        assert_eq!(n.snapshot().health.links_up, 3);
    }
    assert_eq!(attempts(&nodes), before, "survivors kept their links: no new attempts");
    leave_all(nodes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_leaves_and_the_survivors_keep_their_links() {
    admin_goes_away(false).await;
}

/// The admin's node is dropped without a goodbye: its links close as they are dropped (the BYE
/// handshake runs), and the server sees its socket close, as after a SIGKILL. (A SIGKILLed admin
/// process is examples/tests/processes.rs; a silent one, SIGSTOPped or cut off, the lab's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_vanishes_without_a_goodbye_and_the_survivors_keep_their_links() {
    admin_goes_away(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_joining_during_formation_complete_the_mesh() {
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let mut nodes = start(&stack, &["w0", "w1", "w2"]).await;
    nodes.extend(start(&stack, &["w3", "w4"]).await); // no wait: the first three are still forming
    wait_full(&nodes).await;
    leave_all(nodes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_signals_every_first_link_by_the_rendezvous_and_wastes_no_relay_attempt() {
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let mut nodes = Vec::new();
    for name in ["w0", "w1", "w2", "w3"] {
        nodes.extend(start(&stack, &[name]).await);
        wait_full(&nodes).await;
    }
    let relay_failed = |nodes: &[MeshNode]| -> Vec<u64> {
        nodes.iter().map(|n| n.snapshot().signals.get("relay").map(|c| c.failed).unwrap_or(0)).collect()
    };
    let failed_before = relay_failed(&nodes);
    nodes.extend(start(&stack, &["w4"]).await);
    wait_full(&nodes).await;
    let signals = nodes[4].snapshot().signals;
    let (ws, relay) =
        (signals.get("ws").cloned().unwrap_or_default(), signals.get("relay").cloned().unwrap_or_default());
    // Four offers (and their candidates) by the WebSocket, at once; no relay reaches a newcomer.
    assert!(ws.sent >= 4 && ws.failed == 0, "{signals:?}");
    assert_eq!((relay.sent, relay.failed), (0, 0), "{signals:?}");
    assert_eq!(relay_failed(&nodes[..4]), failed_before, "the survivors answered without trying a relay");
    leave_all(nodes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_joiners_forms_the_mesh_without_duplicates() {
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let mut nodes = start(&stack, &["w0", "w1", "w2"]).await;
    wait_full(&nodes).await;
    nodes.extend(start(&stack, &["w3", "w4", "w5", "w6", "w7"]).await); // five at once
    wait_full(&nodes).await;
    let opened: u64 = nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
    assert_eq!(opened, 8 * 7, "28 links, each opened once at both ends");
    let failed: u64 = nodes.iter().map(|n| n.snapshot().signals.get("relay").map(|c| c.failed).unwrap_or(0)).sum();
    assert_eq!(failed, 0, "no signal tried a relay that could not reach its peer");
    leave_all(nodes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_runs_through_a_server_restart_and_takes_a_newcomer_after() {
    let server = SignalingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).await.unwrap();
    let addr = server.local_addr();
    let mut config = base(&["relay", "ws"]);
    config.plugins.insert("ws".into(), json!({ "url": server.url() }));
    let stack = Stack::new(config).await.unwrap();
    assert!(stack.server_url().is_none(), "the configured server is used");
    let mut nodes = start(&stack, &["w0", "w1", "w2"]).await;
    wait_full(&nodes).await;

    server.shutdown().await;
    // The mesh does not need the server: links stay, messages flow.
    let got = mesh_core::testing::deliver(&nodes[1], &nodes[2], b"during the outage", WAIT).await;
    assert_eq!(got.expect("delivered during the outage"), &b"during the outage"[..]);
    assert!(nodes.iter().all(|n| n.snapshot().health.links_up == 2));

    let server = SignalingServer::bind(addr, ServerConfig::default()).await.expect("rebinds the same port");
    nodes.extend(start(&stack, &["w3"]).await);
    wait_full(&nodes).await;
    leave_all(nodes).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_envelope_with_a_spoofed_sender_is_refused_and_never_forwarded() {
    use mesh_core::{LinkEvent, MeshMessage, PeerId, RelayErrorReason, Role, SessionId, Signal, Signaler};
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let nodes = start(&stack, &["w0", "w1", "w2"]).await;
    wait_full(&nodes).await;
    let relayed_to_w1 = |n: &MeshNode| n.snapshot().signals.get("relay").map(|c| c.received).unwrap_or(0);
    let before = relayed_to_w1(&nodes[1]);

    // A rogue client links to the admin w0 by hand over the real server and WebRTC.
    let mesh_tests::Rogue { mut link, signaler, tasks: _tasks, .. } =
        mesh_tests::rogue_link(&stack, Role::Client).await;

    // It asks w0 to forward a signal to w1 "from w2".
    let spoofed = MeshMessage::Relay {
        id: 7,
        to: PeerId::new("w1").unwrap(),
        from: PeerId::new("w2").unwrap(),
        signal: Signal::new(
            SessionId { offerer: PeerId::new("w2").unwrap(), seq: 99 },
            mesh_core::SignalBody::Abort { reason: "forged".into() },
        ),
    };
    link.link.send(spoofed.encode().into()).await.unwrap();
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            match link.events.recv().await {
                Some(LinkEvent::Message(m)) => match MeshMessage::decode(&m, 1 << 20) {
                    Ok(msg @ MeshMessage::RelayError { .. }) => return msg,
                    _ => continue,
                },
                other => panic!("link ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an answer from w0");
    assert_eq!(reply, MeshMessage::RelayError { id: 7, reason: RelayErrorReason::SpoofedSender });
    assert_eq!(relayed_to_w1(&nodes[1]), before, "nothing was forwarded to w1");
    assert_eq!(nodes[1].snapshot().health.links_up, 2, "w1 undisturbed");
    link.link.close().await;
    signaler.stop().await;
    leave_all(nodes).await;
    stack.shutdown().await;
}

/// The admin the server names to a probe client: in its registration answer, or else in the
/// first `admin` notice after it (waited for, bounded).
async fn rendezvous_admin(url: &str, probe: &str) -> Option<mesh_core::PeerId> {
    use mesh_core::{Identity, Inbound, PeerId, Role, RoomId, Signaler, SignalerContext, SignalingEvent, WorkerRecord};
    let signaler = signaling_ws::WsSignaler::new(url, None);
    let (inbox, mut rx) = tokio::sync::mpsc::channel::<Inbound>(64);
    let identity = Identity {
        room: RoomId::new("real").unwrap(),
        peer: PeerId::new(probe).unwrap(),
        role: Role::Client,
        record: WorkerRecord::new(0, Default::default()),
        key: None,
    };
    let ctx = SignalerContext { identity, inbox, mesh: std::sync::Arc::new(mesh_core::NoLinks) };
    signaler.start(ctx).await.expect("probe registered");
    let admin = tokio::time::timeout(WAIT, async {
        while let Some(Inbound { event, .. }) = rx.recv().await {
            match event {
                SignalingEvent::Registered { admin: Some(admin), .. } | SignalingEvent::Admin(admin) => {
                    return Some(admin)
                }
                _ => continue,
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    signaler.stop().await;
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_newcomers_are_pointed_at_the_room_admin() {
    let server = SignalingServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).await.unwrap();
    let (addr, url) = (server.local_addr(), server.url());
    let mut config = base(&["relay", "ws"]);
    config.plugins.insert("ws".into(), json!({ "url": url }));
    let stack = Stack::new(config).await.unwrap();
    let nodes = start(&stack, &["w0", "w1", "w2"]).await;
    wait_full(&nodes).await;
    assert_eq!(rendezvous_admin(&url, "probe-0").await.map(|a| a.to_string()).as_deref(), Some("w0"));

    server.shutdown().await;
    let server = SignalingServer::bind(addr, ServerConfig::default()).await.expect("rebinds the same port");
    // Every worker registers again after its own backoff, in no fixed order; whichever comes
    // first, the admin re-announces itself once it is back, and the probe hears of it.
    let admin = rendezvous_admin(&url, "probe-1").await.expect("the restarted server learned the admin");
    assert_eq!(admin.as_str(), "w0");
    leave_all(nodes).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_queries_at_once_and_again_after_the_admin_leaves() {
    use mesh_core::{RegistryFilter, Role};
    let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
    let mut nodes = start(&stack, &["w0", "w1", "w2"]).await;
    wait_full(&nodes).await;
    let mut cfg = stack.base.clone();
    cfg.peer_id = "reader".into();
    cfg.role = Role::Client;
    let client = MeshNode::from_config(&cfg, &stack.registry).await.expect("client starts");
    // Asked the moment the client exists: the query waits for the admin link.
    let page = client.query_registry(RegistryFilter::default(), WAIT).await.expect("first query");
    assert_eq!(page.total_count, 3);
    nodes.remove(0).leave().await;
    let page = client.query_registry(RegistryFilter::default(), WAIT).await.expect("after the admin left");
    assert_eq!(page.total_count, 2);
    assert_eq!(client.snapshot().health.admin.map(|a| a.to_string()).as_deref(), Some("w1"));
    client.leave().await;
    leave_all(nodes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_client_or_worker_linked_to_the_admin_forges_nothing() {
    use mesh_core::{MeshMessage, PeerId, RegistryFilter, Role, SessionId, Signal, SignalBody, Signaler};
    let id = |s: &str| PeerId::new(s).unwrap();
    for role in [Role::Client, Role::Worker] {
        let stack = Stack::new(base(&["relay", "ws"])).await.unwrap();
        let nodes = start(&stack, &["w0", "w1", "w2"]).await;
        wait_full(&nodes).await;
        let reconnects =
            |nodes: &[MeshNode]| -> Vec<u64> { nodes.iter().map(|n| n.snapshot().counters.reconnects).collect() };
        let before = reconnects(&nodes);
        let page_before = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
        let mesh_tests::Rogue { mut link, signaler, tasks: _tasks, .. } = mesh_tests::rogue_link(&stack, role).await;
        let forged_record: mesh_core::WorkerRecord = serde_json::from_value(
            serde_json::json!({"version": 999_999_999_999_999u64, "status": "leaving", "priority": 1, "metadata": {}}),
        )
        .unwrap();
        let mut hostile = Vec::new();
        // Signals handed to w0 (or through it to w2) in w1's name: every body kind, guessable sessions.
        for seq in 0..3 {
            for offerer in ["w0", "w1"] {
                let session = SessionId { offerer: id(offerer), seq };
                for body in [
                    SignalBody::Abort { reason: "forged".into() },
                    SignalBody::Offer { sdp: "v=0 a tampered fingerprint".into() },
                    SignalBody::Answer { sdp: "v=0".into() },
                    SignalBody::Candidate { candidate: "{}".into() },
                ] {
                    for to in ["w0", "w2"] {
                        let signal = Signal::new(session.clone(), body.clone());
                        hostile.push(MeshMessage::Relay { id: seq, to: id(to), from: id("w1"), signal });
                    }
                }
            }
        }
        let forged = mesh_core::MemberInfo::new(id("w1"), forged_record.clone());
        hostile.push(MeshMessage::PeerJoined { member: forged.clone() });
        hostile.push(MeshMessage::PeerList { admin: id("rogue"), peers: vec![forged.clone()] });
        hostile.push(MeshMessage::PeerList { admin: id("w0"), peers: vec![forged] });
        hostile.push(MeshMessage::PeerLeft { peer: id("w1") });
        hostile.push(MeshMessage::Record { peer: id("w1"), record: forged_record });
        hostile.push(MeshMessage::RegistryAnswer {
            id: 1,
            workers: vec![],
            total_count: 0,
            matched_count: 0,
            links: Default::default(),
        });
        for msg in hostile {
            link.link.send(msg.encode().into()).await.expect("sent");
        }
        mesh_tests::read_everything(&mut link).await;
        for n in &nodes {
            let h = n.snapshot().health;
            let honest = h.peers.iter().filter(|p| p.peer.as_str() != "rogue");
            assert!(honest.clone().all(|p| p.state == mesh_core::LinkStatus::Up), "{:?}: {h:?}", role);
        }
        assert_eq!(reconnects(&nodes), before, "{role:?}: no link was made again");
        assert!(nodes[0].snapshot().counters.refused >= 48, "{:?}", nodes[0].snapshot().counters);
        let page = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
        let honest = |p: &mesh_core::RegistryPage| {
            p.workers.iter().filter(|m| m.peer.as_str() != "rogue").cloned().collect::<Vec<_>>()
        };
        assert_eq!(honest(&page), honest(&page_before), "{role:?}: records unchanged");
        link.link.close().await;
        signaler.stop().await;
        leave_all(nodes).await;
        stack.shutdown().await;
    }
}
