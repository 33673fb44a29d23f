//! The data plane on the in-memory plugins (paused time): acknowledged messages, inboxes that
//! slow their senders, requests that fail at once with their reason, and rogue frames.

mod harness;

use bytes::Bytes;
use harness::*;
use mesh_core::data::frame::{Frame, Kind};
use mesh_core::memory::MemoryNetwork;
use mesh_core::{DataConfig, DataError, Incoming, MeshEvent, Role, WorkerStatus};
use std::time::Duration;
use tokio::time::Instant;

/// Two workers whose inboxes hold `inbox` messages.
async fn pair(net: &MemoryNetwork, inbox: usize) -> Vec<mesh_core::MeshNode> {
    let mut nodes = Vec::new();
    for name in ["w0", "w1"] {
        let data = DataConfig { inbox_messages: inbox, ..DataConfig::default() };
        nodes.push(start_with(net, mesh_core::NodeOptions { data, ..options(name, Role::Worker, 0) }, vec![]).await);
    }
    mesh_core::testing::wait_full_mesh(&nodes, WAIT).await.unwrap();
    nodes
}

#[tokio::test(start_paused = true)]
async fn a_message_returns_once_the_peer_holds_it_and_a_request_gets_its_response() {
    let net = MemoryNetwork::new();
    let nodes = pair(&net, 64).await;
    let mut inbox = nodes[1].listen("jobs/1").unwrap();
    let big = Bytes::from(vec![5u8; 3 * 1024 * 1024]); // many frames
    nodes[0].send(&peer("w1"), "jobs/1", big.clone()).await.expect("acknowledged");
    let got = inbox.recv().await.unwrap();
    assert_eq!((got.from().as_str(), got.body()), ("w0", &big));
    let responder = tokio::spawn(async move {
        while let Some(Incoming::Request(req)) = inbox.recv().await {
            let mut answer = req.body.to_vec();
            answer.reverse();
            req.respond(answer).await;
        }
    });
    let answer = nodes[0].request(&peer("w1"), "jobs/1", &b"abc"[..], WAIT).await.expect("answered");
    assert_eq!(&answer[..], b"cba");
    responder.abort();
}

#[tokio::test(start_paused = true)]
async fn a_full_inbox_slows_its_sender_and_nothing_is_lost() {
    let net = MemoryNetwork::new();
    let nodes = pair(&net, 4).await;
    let mut inbox = nodes[1].listen("p").unwrap();
    let (w0, w1) = (&nodes[0], peer("w1"));
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let sender = async {
        for i in 0..20u32 {
            w0.send(&w1, "p", i.to_be_bytes().to_vec()).await.expect("acknowledged in the end");
            sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    };
    tokio::pin!(sender);
    assert!(tokio::time::timeout(Duration::from_secs(30), &mut sender).await.is_err(), "the sender waits");
    assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 4, "as many as the inbox holds");
    let reader = async {
        let mut got = Vec::new();
        while got.len() < 20 {
            let m = inbox.recv().await.unwrap();
            got.push(u32::from_be_bytes(m.body()[..].try_into().unwrap()));
        }
        got
    };
    let ((), got) = tokio::time::timeout(WAIT, async { tokio::join!(sender, reader) }).await.expect("all delivered");
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "all of them, in order");
}

#[tokio::test(start_paused = true)]
async fn a_request_fails_at_once_when_its_peer_leaves_or_its_link_is_lost() {
    let net = MemoryNetwork::new();
    let mut nodes = spawn_mesh(&net, 3).await;
    let mut inbox2 = nodes[2].listen("slow").unwrap();
    let mut inbox1 = nodes[1].listen("slow").unwrap();
    // w2 holds the request and never answers; its link is cut from under it.
    let t = Instant::now();
    let (w1_id, w2_id) = (peer("w1"), peer("w2"));
    let lost = async {
        let request = nodes[0].request(&w2_id, "slow", &b"x"[..], Duration::from_secs(600));
        let cut = async {
            let held = inbox2.recv().await;
            net.close_links(&peer("w0"), &peer("w2"));
            held
        };
        tokio::join!(request, cut).0
    };
    assert_eq!(lost.await, Err(DataError::LinkLost(peer("w2"))));
    assert!(t.elapsed() < Duration::from_secs(5), "at once, not at the timeout: {:?}", t.elapsed());
    // w1 leaves while holding a request.
    let w1 = nodes.remove(1);
    let t = Instant::now();
    let request = nodes[0].request(&w1_id, "slow", &b"x"[..], Duration::from_secs(600));
    let leave = async {
        let _held = inbox1.recv().await;
        w1.leave().await;
    };
    let (left, ()) = tokio::join!(request, leave);
    assert_eq!(left, Err(DataError::PeerLeft(peer("w1"))));
    assert!(t.elapsed() < Duration::from_secs(10), "at once, not at the timeout: {:?}", t.elapsed());
}

#[tokio::test(start_paused = true)]
async fn every_failure_has_its_reason() {
    let net = MemoryNetwork::new();
    let nodes = pair(&net, 64).await;
    let w1 = peer("w1");
    let refused = |r: Result<Bytes, DataError>, what: &str| match r {
        Err(DataError::Refused(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("{other:?}"),
    };
    refused(nodes[0].request(&w1, "nobody", Bytes::new(), WAIT).await, "no inbox for protocol nobody");
    let mut inbox = nodes[1].listen("p").unwrap();
    let dropper = tokio::spawn(async move {
        while let Some(incoming) = inbox.recv().await {
            drop(incoming); // a request dropped unanswered
        }
    });
    refused(nodes[0].request(&w1, "p", Bytes::new(), WAIT).await, "without an answer");
    dropper.abort();
    let max = DataConfig::default().max_message_bytes;
    let big = nodes[0].send(&w1, "p", vec![0u8; max + 1]).await;
    assert_eq!(big, Err(DataError::TooLarge { size: max + 1, max }));
    assert_eq!(nodes[0].send(&peer("w9"), "p", Bytes::new()).await, Err(DataError::NotLinked(peer("w9"))));
    assert_eq!(nodes[0].send(&w1, "no spaces", Bytes::new()).await, Err(DataError::BadProtocol("no spaces".into())));
    assert!(matches!(nodes[1].listen("q").and_then(|_a| nodes[1].listen("q")), Err(DataError::InUse(_))));
    let _q = nodes[1].listen("q").unwrap();
    assert!(matches!(nodes[1].listen("q"), Err(DataError::InUse(_))), "one inbox per protocol");
    let t = Instant::now();
    let mut silent = nodes[1].listen("silent").unwrap();
    let (timed_out, _held) =
        tokio::join!(nodes[0].request(&w1, "silent", Bytes::new(), Duration::from_secs(3)), silent.recv());
    assert_eq!(timed_out, Err(DataError::TimedOut));
    assert!(t.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn rogue_application_frames_are_refused_and_the_link_keeps_working() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let mut inbox = nodes[0].listen("p").unwrap();
    let key = mesh_core::identity::NodeKey::generate();
    let (mut handle, _rogue) = rogue_link(&net, Role::Client, Some(&key)).await;
    let part = |id, more, len: usize| Frame {
        kind: Kind::Message,
        more,
        yours: false,
        id,
        proto: "p".into(),
        payload: vec![1u8; len].into(),
    };
    let mut hostile: Vec<Bytes> = vec![
        Bytes::from_static(&[0xDA]),
        Bytes::from_static(&[0xDA, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        Bytes::from_static(&[0xDA, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 200]),
        Frame::ack(1).encode(),
        Frame { kind: Kind::Response, more: false, yours: false, id: 1, proto: String::new(), payload: Bytes::new() }
            .encode(),
    ];
    // 17 MiB of one message, past the 16 MiB limit: refused as too large, nothing delivered.
    for i in 0..(17 * 32) {
        hostile.push(part(7, i + 1 < 17 * 32, 32 * 1024).encode());
    }
    for bytes in hostile {
        handle.link.send(bytes).await.expect("sent");
    }
    handle.link.send(part(8, false, 3).encode()).await.unwrap();
    let got = tokio::time::timeout(WAIT, inbox.recv()).await.expect("the rogue's valid message").unwrap();
    assert_eq!((got.from().as_str(), got.body().len()), ("rogue", 3), "only the valid message arrives");
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match handle.events.recv().await {
            Some(mesh_core::LinkEvent::Message(m)) if Frame::is_data(&m) => answers.push(Frame::decode(&m).unwrap()),
            Some(mesh_core::LinkEvent::Message(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((answers[0].kind, answers[0].id), (Kind::Fail, 7), "the oversized message is refused");
    assert_eq!((answers[1].kind, answers[1].id), (Kind::Ack, 8));
    let ok = mesh_core::testing::deliver(&nodes[1], &nodes[0], b"still fine", WAIT).await;
    assert_eq!(ok.expect("w1 to w0 unaffected"), &b"still fine"[..]);
}

#[tokio::test(start_paused = true)]
async fn a_broadcast_reaches_every_linked_worker_and_reports_each() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 4).await;
    let mut inboxes: Vec<_> = nodes[1..3].iter().map(|n| n.listen("news").unwrap()).collect();
    let results = nodes[0].broadcast("news", &b"epoch 3"[..]).await;
    let mut outcome: Vec<(String, bool)> = results.iter().map(|(p, r)| (p.to_string(), r.is_ok())).collect();
    outcome.sort();
    assert_eq!(
        outcome,
        [("w1".into(), true), ("w2".into(), true), ("w3".into(), false)],
        "w3 has no inbox: {results:?}"
    );
    for inbox in &mut inboxes {
        assert_eq!(&inbox.recv().await.unwrap().body()[..], b"epoch 3");
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_connects_to_the_worker_it_chose_and_asks_it_directly() {
    let net = MemoryNetwork::new();
    let workers = spawn_mesh(&net, 3).await;
    let client = start_with(&net, options("c", Role::Client, 0), vec![]).await;
    wait_links(&client, 1).await;
    let mut inbox = workers[2].listen("jobs/1").unwrap();
    let serve = tokio::spawn(async move {
        while let Some(Incoming::Request(req)) = inbox.recv().await {
            let from = req.from.to_string();
            req.respond(format!("hello {from}")).await;
        }
    });
    assert_eq!(
        client.request(&peer("w2"), "jobs/1", Bytes::new(), WAIT).await,
        Err(DataError::NotLinked(peer("w2"))),
        "a client links to the admin only, unless it connects"
    );
    client.connect(&peer("w2"), WAIT).await.expect("linked to w2");
    let answer = client.request(&peer("w2"), "jobs/1", Bytes::new(), WAIT).await.expect("answered by w2");
    assert_eq!(&answer[..], b"hello c");
    assert!(client.connect(&peer("nobody"), Duration::from_secs(5)).await.is_err(), "only a worker of the room");
    client.disconnect(&peer("w2")).await.unwrap();
    client.wait_for(WAIT, |s| s.health.links_up == 1).await.expect("back to the admin only");
    serve.abort();
}

#[tokio::test(start_paused = true)]
async fn twelve_concurrent_connects_to_one_worker_all_get_the_link() {
    let net = MemoryNetwork::new();
    let workers = spawn_mesh(&net, 3).await;
    let client = start_with(&net, options("c", Role::Client, 0), vec![]).await;
    wait_links(&client, 1).await;
    let admin = client.snapshot().health.admin.expect("an admin");
    let other = workers.iter().map(|w| w.peer_id().clone()).find(|p| *p != admin).expect("a non-admin worker");
    let connects = (0..12).map(|_| client.connect(&other, WAIT));
    let results = futures::future::join_all(connects).await;
    assert!(results.iter().all(|r| r.is_ok()), "every caller gets the link: {results:?}");
}

/// Waits until `watcher` hears that `worker`'s record shows `status`.
async fn shows(
    events: &mut tokio::sync::broadcast::Receiver<mesh_core::MeshEvent>,
    worker: &str,
    status: WorkerStatus,
) {
    let heard = async {
        loop {
            match events.recv().await {
                Ok(MeshEvent::WorkerChanged { peer, record, .. })
                    if peer.as_str() == worker && record.status == status =>
                {
                    return
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => panic!("node stopped"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, heard).await.unwrap_or_else(|_| panic!("{worker} never showed {status:?}"));
}

#[tokio::test(start_paused = true)]
async fn two_clients_never_hold_the_same_worker_and_a_lease_ends_with_its_holder() {
    let net = MemoryNetwork::new();
    let workers = spawn_mesh(&net, 2).await;
    let mut clients = Vec::new();
    for c in ["c1", "c2"] {
        let client = start_with(&net, options(c, Role::Client, 0), vec![]).await;
        wait_links(&client, 1).await;
        client.connect(&peer("w1"), WAIT).await.unwrap();
        clients.push(client);
    }
    let mut room = workers[0].subscribe();
    let w1 = peer("w1");
    // Both ask at once: exactly one gets the lease.
    let (a, b) = tokio::join!(
        clients[0].reserve(&w1, Duration::from_secs(60)),
        clients[1].reserve(&w1, Duration::from_secs(60))
    );
    let (holder, lease, other) = match (a, b) {
        (Ok(l), Err(e)) => (0, l, e),
        (Err(e), Ok(l)) => (1, l, e),
        other => panic!("exactly one lease: {other:?}"),
    };
    assert!(matches!(&other, DataError::Refused(why) if why.contains("reserved")), "{other:?}");
    shows(&mut room, "w1", WorkerStatus::Reserved).await;
    // Only the holder releases; then the other client may take the worker.
    assert!(clients[1 - holder].release(&lease).await.is_err(), "only the holder releases");
    clients[holder].release(&lease).await.expect("released");
    shows(&mut room, "w1", WorkerStatus::Available).await;
    clients[1 - holder].reserve(&w1, Duration::from_secs(60)).await.expect("free again");
    shows(&mut room, "w1", WorkerStatus::Reserved).await;
    // Its holder leaves: the lease ends, and the other client takes the worker.
    let left = tokio::time::Instant::now();
    clients.remove(1 - holder).leave().await;
    shows(&mut room, "w1", WorkerStatus::Available).await;
    assert!(left.elapsed() < Duration::from_secs(10), "with its holder, not at its end: {:?}", left.elapsed());
    let t = tokio::time::Instant::now();
    clients[0].reserve(&w1, Duration::from_secs(5)).await.expect("the leaver's lease ended");
    shows(&mut room, "w1", WorkerStatus::Reserved).await;
    // A lease that is not renewed expires.
    shows(&mut room, "w1", WorkerStatus::Available).await;
    assert!(t.elapsed() >= Duration::from_secs(5), "at its end, not before: {:?}", t.elapsed());
    let hostile = clients[0].request(&w1, mesh_core::lease::PROTOCOL, &b"{\"op\":\"steal\"}"[..], WAIT).await;
    assert!(matches!(hostile, Err(DataError::Refused(why)) if why.contains("not a lease ask")));
}
