//! Rogue members on the in-memory plugins (paused time): a client and a worker linked to the admin
//! send hostile bytes and forged messages; the room stays as it was (docs/BEHAVIOUR.md 25, 25a).

mod harness;

use harness::*;
use mesh_core::memory::MemoryNetwork;
use mesh_core::{RegistryFilter, Role};

#[tokio::test(start_paused = true)]
async fn b25_hostile_bytes_on_a_link_are_dropped_and_the_mesh_keeps_working() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    // A rogue peer registers as a client, with a key of its own, and opens a link to w0 by hand.
    let key = mesh_core::identity::NodeKey::generate();
    let (mut handle, _rogue) = rogue_link(&net, Role::Client, Some(&key)).await;
    let hostile: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        br#"{"type":"unknown"}"#.to_vec(),
        br#"{"type":"peer_left","peer":"w1"}"#.to_vec(),
        br#"{"type":"room_state","peer":"w1","record":{"version":99,"status":"leaving","priority":1,"metadata":{}}}"#.to_vec(),
        br#"{"type":"relay","id":1,"to":"w1","from":"w1","signal":{"session":{"offerer":"w1","seq":1},"body":{"kind":"abort","reason":"x"}}}"#.to_vec(),
        vec![b'x'; 70 * 1024],
        vec![0xff; 10],
    ];
    // The attack of issue 13: signals handed to w0 in w1's name (aborts for guessable sessions),
    // and discovery a client may not speak: a newer, leaving record for w1, w1 gone, a peer list.
    let forged_record = r#"{"version":999999999999999,"status":"leaving","priority":1,"metadata":{}}"#;
    let mut hostile = hostile;
    for seq in 0..4 {
        for offerer in ["w0", "w1"] {
            let relay = format!(
                r#"{{"type":"relay","id":{seq},"to":"w0","from":"w1","signal":{{"session":{{"offerer":"{offerer}","seq":{seq}}},"body":{{"kind":"abort","reason":"x"}}}}}}"#
            );
            hostile.push(relay.into_bytes());
        }
    }
    hostile.push(format!(r#"{{"type":"peer_joined","member":{{"peer":"w1","record":{forged_record}}}}}"#).into_bytes());
    hostile.push(
        format!(r#"{{"type":"peer_list","admin":"rogue","peers":[{{"peer":"w1","record":{forged_record}}}]}}"#)
            .into_bytes(),
    );
    hostile.push(br#"{"type":"registry_answer","id":1,"workers":[],"total_count":0,"matched_count":0}"#.to_vec());
    let attempts_before = nodes[0].snapshot().counters.attempts() + nodes[1].snapshot().counters.attempts();
    let page_before = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
    for bytes in hostile {
        handle.link.send(bytes.into()).await.expect("sent");
    }
    // The relay error for the spoofed envelope proves w0 read everything above and kept going.
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(mesh_core::LinkEvent::Message(m)) = handle.events.recv().await {
                let m = mesh_core::MeshMessage::decode(&m, 1 << 20).unwrap();
                if matches!(m, mesh_core::MeshMessage::RelayError { .. }) {
                    return m;
                }
            }
        }
    })
    .await
    .expect("relay error");
    assert_eq!(reply, mesh_core::MeshMessage::RelayError { id: 1, reason: mesh_core::RelayErrorReason::SpoofedSender });
    let s = nodes[0].snapshot();
    assert_eq!(s.health.links_expected, 1, "w1 is still in w0's room state");
    assert!(s.health.peers.iter().any(|p| p.peer.as_str() == "w1" && p.state == mesh_core::LinkStatus::Up));
    assert!(s.counters.refused >= 12, "each forgery refused and counted: {:?}", s.counters);
    let attempts_after = s.counters.attempts() + nodes[1].snapshot().counters.attempts();
    assert_eq!(attempts_after, attempts_before, "no link torn down and dialed again");
    let page = nodes[1].query_registry(RegistryFilter::default(), WAIT).await.expect("registry");
    let w1 = page.workers.iter().find(|m| m.peer.as_str() == "w1").expect("w1 in the registry");
    assert_eq!(page.total_count, 2);
    assert_eq!(Some(w1), page_before.workers.iter().find(|m| m.peer.as_str() == "w1"), "w1's record unchanged");
    let got = mesh_core::testing::deliver(&nodes[0], &nodes[1], b"hello", WAIT).await.expect("message");
    assert_eq!(&got[..], b"hello", "the link still carries application data");
}

#[tokio::test(start_paused = true)]
async fn b25_a_rogue_worker_cannot_hand_over_signals_in_another_workers_name() {
    use mesh_core::identity::NodeKey;
    use mesh_core::{MeshMessage, SessionId, Signal, SignalBody};
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let before: Vec<_> = nodes.iter().map(|n| n.snapshot().counters).collect();
    // A worker with its own key joins and links to w0 as any newcomer would.
    let key = NodeKey::generate();
    let (mut handle, _rogue) = rogue_link(&net, Role::Worker, Some(&key)).await;
    let room = o_room();
    // It hands w0 aborts "from w1" for every guessable session: unsigned, and signed by itself.
    for seq in 0..4 {
        for offerer in ["w0", "w1"] {
            let mut forged =
                Signal::new(SessionId { offerer: peer(offerer), seq }, SignalBody::Abort { reason: "forged".into() });
            for sig in [None, Some(key.sign(&room, &peer("w1"), &peer("w0"), &forged))] {
                forged.sig = sig;
                let msg = MeshMessage::Relay { id: seq, to: peer("w0"), from: peer("w1"), signal: forged.clone() };
                handle.link.send(msg.encode().into()).await.expect("sent");
            }
        }
    }
    // A ping-pong over the same link proves w0 read all of the above first.
    let query = MeshMessage::RegistryQuery { id: 99, filter: RegistryFilter::default() };
    handle.link.send(query.encode().into()).await.expect("sent");
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(mesh_core::LinkEvent::Message(m)) = handle.events.recv().await {
                if matches!(MeshMessage::decode(&m, 1 << 20), Ok(MeshMessage::RegistryAnswer { id: 99, .. })) {
                    return;
                }
            }
        }
    })
    .await
    .expect("registry answer");
    let s = nodes[0].snapshot();
    assert!(
        s.health.peers.iter().any(|p| p.peer.as_str() == "w1" && p.state == mesh_core::LinkStatus::Up),
        "{:?}",
        s.health
    );
    assert!(s.counters.refused >= 16, "every forgery refused and counted: {:?}", s.counters);
    for (n, b) in nodes.iter().zip(before) {
        assert_eq!(n.snapshot().counters.reconnects, b.reconnects, "{}: no link was made again", n.peer_id());
    }
}

#[tokio::test(start_paused = true)]
async fn a21_every_refusal_is_counted_parse_failures_and_unasked_acks_included() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let key = mesh_core::identity::NodeKey::generate();
    let (handle, _rogue) = rogue_link(&net, Role::Client, Some(&key)).await;
    let refused = |n: &mesh_core::MeshNode| n.snapshot().counters.refused;
    let before = refused(&nodes[0]);
    let hostile: Vec<&[u8]> = vec![
        b"not json",
        br#"{"type":"launch"}"#,
        br#"{"type":"heartbeat","seq":"x"}"#,
        br#"{"type":"relay_ack","id":12345}"#,
        br#"{"type":"relay_error","id":54321,"reason":"not_linked"}"#,
        br#"{"type":"admin_verify_ack","id":999,"admin":"rogue","epoch":7}"#,
        br#"{"type":"admin_vote","epoch":0,"sig":"00"}"#,
    ];
    let sent = hostile.len() as u64;
    for bytes in hostile {
        handle.link.send(bytes.to_vec().into()).await.expect("sent");
    }
    let mut watch = nodes[0].watch();
    tokio::time::timeout(WAIT, async {
        while refused(&nodes[0]) < before + sent {
            watch.changed().await.expect("node runs");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {sent} refusals counted", refused(&nodes[0]) - before));
    assert_eq!(refused(&nodes[0]), before + sent, "each counted once");
}

/// A signaler that delivers whatever the test puts in the node's inbox, under any path name.
#[derive(Default)]
struct Inject(std::sync::Mutex<Option<mesh_core::SignalerContext>>);

#[mesh_core::async_trait]
impl mesh_core::Signaler for Inject {
    fn name(&self) -> &'static str {
        "inject"
    }
    fn needs_open_links(&self) -> bool {
        true
    }
    async fn start(&self, ctx: mesh_core::SignalerContext) -> Result<(), mesh_core::SignalError> {
        *self.0.lock().unwrap() = Some(ctx);
        Ok(())
    }
    async fn send(&self, to: &mesh_core::PeerId, _: mesh_core::Signal) -> Result<(), mesh_core::SignalError> {
        Err(mesh_core::SignalError::Unreachable { peer: to.clone(), why: "inject only".into() })
    }
}

#[tokio::test(start_paused = true)]
async fn b25_a_signal_tagged_relay_by_its_signaler_is_still_checked() {
    use mesh_core::{Inbound, Signal, SignalBody, SignalingEvent};
    let net = MemoryNetwork::new();
    let w0 = start(&net, "w0").await;
    let inject = std::sync::Arc::new(Inject::default());
    let w1 = start_with(&net, options("w1", Role::Worker, 0), vec![inject.clone()]).await;
    wait_links(&w1, 1).await;
    let before = w1.snapshot().counters;
    // An unsigned offer "from w0", newer than the link, handed over under the path name "relay".
    let session = mesh_core::SessionId { offerer: peer("w0"), seq: u64::MAX / 2 };
    let signal = Signal::new(session, SignalBody::Offer { sdp: "v=0".into() });
    let event = SignalingEvent::Signal { from: peer("w0"), signal, key: None };
    let inbox = inject.0.lock().unwrap().as_ref().expect("started").inbox.clone();
    inbox.send(Inbound { path: "relay", event }).await.expect("delivered");
    let after = w1.wait_for(WAIT, |s| s.counters.refused > before.refused).await.expect("refused");
    assert_eq!(after.counters.accepts, before.accepts, "the forged offer was not answered");
    assert_eq!(after.health.links_up, 1, "the link to w0 stands");
    drop(w0);
}
