//! Two links on loopback joined by an in-process signal ferry: open, order, size, close, abort,
//! back-pressure.

mod common;

use bytes::Bytes;
use common::*;
use mesh_core::{CloseReason, LinkEvent, SignalBody, Transport};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use transport_webrtc::{WebRtcConfig, WebRtcTransport};

/// Message `seq` of a deterministic mixed-size stream: mostly small, every 10th 20 KiB (two
/// chunks), every 100th 256 KiB. The first 8 bytes carry `seq`, the rest a pattern derived from it.
fn payload(seq: u64) -> Bytes {
    let len = match seq {
        s if s % 100 == 0 => 256 * 1024,
        s if s % 10 == 0 => 20 * 1024,
        s => 8 + (s * 7919 % 1000) as usize,
    };
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|j| (seq as usize).wrapping_mul(31).wrapping_add(j) as u8));
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_messages_arrive_whole_and_in_order() {
    let (a, b) = (transport(), transport());
    let (x, mut y) = open_pair(&a, &b).await;
    const N: u64 = 10_000;
    let link = x.link.clone();
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            link.send(payload(seq)).await.expect("send");
        }
    });
    let mut bytes = 0usize;
    for seq in 0..N {
        let got = message(&mut y.events).await;
        bytes += got.len();
        assert_eq!(got, payload(seq), "message {seq} arrived out of order or damaged");
    }
    sender.await.unwrap();
    assert!(bytes > 30 * 1024 * 1024, "the stream really carried large messages ({bytes} bytes)");
}

#[tokio::test]
async fn both_directions_carry_messages_larger_than_an_sctp_message() {
    let (a, b) = (transport(), transport());
    let (mut x, mut y) = open_pair(&a, &b).await;
    let big = Bytes::from((0..700_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    x.link.send(big.clone()).await.unwrap();
    y.link.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(message(&mut y.events).await, big);
    assert_eq!(message(&mut x.events).await, Bytes::from_static(b"pong"));
}

#[tokio::test]
async fn heartbeats_travel_on_the_unordered_channel() {
    let (a, b) = (transport(), transport());
    let (x, mut y) = open_pair(&a, &b).await;
    // A backlog on the reliable channel that the reader has not consumed yet...
    for _ in 0..8 {
        x.link.send(Bytes::from(vec![0u8; 64 * 1024])).await.unwrap();
    }
    // ...does not stop a heartbeat: it arrives on its own channel, interleaved with the backlog.
    x.link.send_unordered(Bytes::from_static(b"heartbeat")).await.unwrap();
    // (`message` fails the test if nothing more arrives in time.) Over the reliable channel it
    // would come after all eight; on its own channel it overtakes the backlog.
    let mut before = 0;
    while message(&mut y.events).await != Bytes::from_static(b"heartbeat") {
        before += 1;
    }
    assert!(before < 8, "the heartbeat waited behind the whole reliable backlog");
}

#[tokio::test]
async fn messages_alone_keep_a_link_alive_between_far_apart_keepalives() {
    // ICE declares the link failed after 0.6 s without hearing the peer, and sends a keep-alive
    // only after a minute without: only the messages themselves can keep it open for 3 s.
    let config = || WebRtcConfig {
        keepalive_ms: 60_000,
        disconnected_timeout_ms: 300,
        failed_timeout_ms: 300,
        ..WebRtcConfig::loopback()
    };
    let (a, b) = (WebRtcTransport::new(config(), 1 << 20), WebRtcTransport::new(config(), 1 << 20));
    let (mut x, mut y) = open_pair(&a, &b).await;
    // A ping every 100 ms, each answered: traffic both ways, as heartbeats make it.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for round in 0..30u32 {
        pace.tick().await;
        x.link.send(Bytes::from(round.to_le_bytes().to_vec())).await.expect("the link is still open");
        let ping = message(&mut y.events).await;
        y.link.send(ping.clone()).await.expect("the link is still open");
        assert_eq!(message(&mut x.events).await, ping, "round {round}: the link closed under traffic");
    }
}

#[tokio::test]
async fn an_oversized_message_is_dropped_and_the_link_survives() {
    let small_limit = WebRtcTransport::new(WebRtcConfig::loopback(), 100 * 1024);
    let a = transport();
    let (x, mut y) = open_pair(&a, &small_limit).await;
    x.link.send(Bytes::from(vec![1u8; 300 * 1024])).await.unwrap();
    x.link.send(Bytes::from_static(b"after")).await.unwrap();
    assert_eq!(message(&mut y.events).await, Bytes::from_static(b"after"));
}

#[tokio::test]
async fn close_is_reported_once_locally_and_as_remote_on_the_peer() {
    let (a, b) = (transport(), transport());
    let (mut x, mut y) = open_pair(&a, &b).await;
    x.link.close().await;
    x.link.close().await; // idempotent
    assert_eq!(next(&mut x.events).await, LinkEvent::Closed(CloseReason::Local));
    assert_eq!(next(&mut y.events).await, LinkEvent::Closed(CloseReason::Remote));
    assert!(x.events.recv().await.is_none() && y.events.recv().await.is_none(), "nothing after Closed");
    assert!(x.link.send(Bytes::from_static(b"late")).await.is_err());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_link_for_the_peer() {
    let (a, b) = (transport(), transport());
    let (x, mut y) = open_pair(&a, &b).await;
    drop(x);
    assert_eq!(next(&mut y.events).await, LinkEvent::Closed(CloseReason::Remote));
}

#[tokio::test]
async fn an_abort_from_the_peer_closes_the_attempt() {
    let (a, b) = (transport(), transport());
    let (mut x, _y) = pair(&a, &b).await;
    x.link.apply_signal(SignalBody::Abort { reason: "lost the crossing".into() }).await.unwrap();
    match next(&mut x.events).await {
        LinkEvent::Closed(CloseReason::Failed(why)) => assert!(why.contains("lost the crossing")),
        other => panic!("expected a failed close, got {other:?}"),
    }
}

#[tokio::test]
async fn an_attempt_without_an_answer_times_out() {
    let quick = WebRtcTransport::new(WebRtcConfig { connect_timeout_ms: 300, ..WebRtcConfig::loopback() }, 1 << 20);
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let mut dial = quick.dial(&peer("nobody"), tx).await.unwrap();
    assert_eq!(next(&mut dial.events).await, LinkEvent::Closed(CloseReason::ConnectTimeout));
}

#[tokio::test]
async fn hostile_signals_are_refused_without_harming_the_link() {
    let (a, b) = (transport(), transport());
    let (x, mut y) = open_pair(&a, &b).await;
    for body in [
        SignalBody::Candidate { candidate: "{not json".into() },
        SignalBody::Candidate { candidate: r#"{"candidate":"garbage"}"#.into() },
        SignalBody::Answer { sdp: "v=0 nonsense".into() },
        SignalBody::Offer { sdp: "v=0".into() },
    ] {
        assert!(x.link.apply_signal(body).await.is_err());
    }
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    assert!(b.accept(&peer("a"), SignalBody::Offer { sdp: "\u{0}garbage".into() }, tx).await.is_err());
    x.link.send(Bytes::from_static(b"still fine")).await.unwrap();
    assert_eq!(message(&mut y.events).await, Bytes::from_static(b"still fine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_slows_the_sender_and_loses_nothing() {
    let (a, b) = (transport(), transport());
    let (x, mut y) = open_pair(&a, &b).await;
    const SIZE: usize = 256 * 1024;
    const N: usize = 200; // 50 MiB offered while the reader is stalled
    let sent = Arc::new(AtomicUsize::new(0));
    let (link, counter) = (x.link.clone(), sent.clone());
    let mut sender = tokio::spawn(async move {
        for seq in 0..N {
            let mut v = vec![(seq % 251) as u8; SIZE];
            v[..8].copy_from_slice(&(seq as u64).to_le_bytes());
            link.send(Bytes::from(v)).await.expect("send");
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The reader does nothing for a while: the sender must be held back, not buffer 100 MiB.
    let finished = tokio::time::timeout(Duration::from_secs(2), &mut sender).await;
    assert!(finished.is_err(), "all {N} messages were accepted while nobody read");
    let held = sent.load(Ordering::SeqCst);
    eprintln!("accepted while stalled: {held}");
    // What a stalled link may hold: the sender's 2 MiB send buffer, SCTP's window, the webrtc
    // crate's 256-chunk queue (4 MiB of 16 KiB chunks) and the link's 16-message queue (4 MiB
    // here); measured about 13 MiB. 30 MiB (120 messages) is the bound asserted.
    assert!(held < 120, "{held} messages of 256 KiB accepted by a stalled link: memory is not bounded");
    for seq in 0..N {
        let got = message(&mut y.events).await;
        assert_eq!(got.len(), SIZE);
        assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), seq as u64);
    }
    sender.await.unwrap();
}

#[tokio::test]
async fn a_message_sent_the_moment_one_side_opens_is_not_lost() {
    for _ in 0..20 {
        let (a, b) = (transport(), transport());
        let (mut x, mut y) = pair(&a, &b).await;
        assert_eq!(next(&mut x.events).await, LinkEvent::Open);
        x.link.send(Bytes::from_static(b"first")).await.unwrap();
        assert_eq!(next(&mut y.events).await, LinkEvent::Open);
        assert_eq!(message(&mut y.events).await, Bytes::from_static(b"first"));
    }
}

#[tokio::test]
async fn the_last_message_before_a_close_arrives_before_the_close() {
    for i in 0..20u8 {
        let (a, b) = (transport(), transport());
        let (x, mut y) = open_pair(&a, &b).await;
        x.link.send(Bytes::from(vec![i; 100])).await.unwrap();
        x.link.close().await;
        assert_eq!(message(&mut y.events).await, Bytes::from(vec![i; 100]), "round {i}");
        assert_eq!(next(&mut y.events).await, LinkEvent::Closed(CloseReason::Remote));
    }
}

#[tokio::test]
async fn a_silent_stun_server_does_not_hold_up_a_link() {
    // A STUN server that never answers, as behind a firewall: gathering stays pending, yet the
    // link opens on its host candidates (candidates trickle; nothing waits for gathering).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("stun:{}", silent.local_addr().unwrap());
    let stun = transport_webrtc::IceServer { urls: vec![url], username: String::new(), credential: String::new() };
    let config = WebRtcConfig { ice_servers: vec![stun], gather_timeout_ms: 300, ..WebRtcConfig::loopback() };
    let (a, b) = (WebRtcTransport::new(config.clone(), 1 << 20), WebRtcTransport::new(config, 1 << 20));
    let (x, mut y) = open_pair(&a, &b).await;
    x.link.send(Bytes::from_static(b"no stun needed")).await.unwrap();
    assert_eq!(message(&mut y.events).await, Bytes::from_static(b"no stun needed"));
    let mut buf = [0u8; 1500];
    silent.set_nonblocking(true).unwrap();
    assert!(silent.recv_from(&mut buf).is_ok(), "the links did ask the STUN server");
}
