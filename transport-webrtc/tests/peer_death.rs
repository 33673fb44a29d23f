//! A peer process that dies (SIGKILL, no goodbye) is detected: the link closes as failed within
//! the configured ICE timeouts. The peer is this test binary re-run in "child" mode, speaking
//! signals as JSON lines over its stdin and stdout.

mod common;

use common::*;
use mesh_core::{CloseReason, LinkEvent, SignalBody, Transport};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use transport_webrtc::{WebRtcConfig, WebRtcTransport};

const CHILD_ENV: &str = "TRANSPORT_WEBRTC_CHILD_PEER";
const PREFIX: &str = "SIGNAL ";

fn fast_failure() -> WebRtcConfig {
    WebRtcConfig {
        disconnected_timeout_ms: 1_000,
        failed_timeout_ms: 1_000,
        keepalive_ms: 200,
        ..WebRtcConfig::loopback()
    }
}

/// The child side: accepts the offer read from stdin, prints its own signals, echoes messages.
#[tokio::test]
#[ignore = "run by killed_peer_process_is_detected_as_failed"]
async fn child_peer() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    init_tracing();
    let transport = WebRtcTransport::new(fast_failure(), 1 << 20);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await.unwrap().expect("an offer line");
    let offer: SignalBody = serde_json::from_str(&first).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let mut handle = transport.accept(&peer("parent"), offer, tx).await.unwrap();
    tokio::spawn(async move {
        while let Some(body) = rx.recv().await {
            println!("{PREFIX}{}", serde_json::to_string(&body).unwrap());
        }
    });
    let link = handle.link.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = link.apply_signal(serde_json::from_str(&line).unwrap()).await;
        }
    });
    while let Some(event) = handle.events.recv().await {
        if let LinkEvent::Message(m) = event {
            handle.link.send(m).await.unwrap();
        }
    }
}

#[tokio::test]
async fn killed_peer_process_is_detected_as_failed() {
    init_tracing();
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args(["child_peer", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    let transport = WebRtcTransport::new(fast_failure(), 1 << 20);
    let (tx, mut signals) = mpsc::channel(64);
    let mut handle = transport.dial(&peer("child"), tx).await.unwrap();
    let link = handle.link.clone();
    tokio::spawn(async move {
        while let Some(body) = signals.recv().await {
            let line = format!("{}\n", serde_json::to_string(&body).unwrap());
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(json) = line.strip_prefix(PREFIX) {
                let _ = link.apply_signal(serde_json::from_str(json).unwrap()).await;
            }
        }
    });

    assert_eq!(next(&mut handle.events).await, LinkEvent::Open);
    handle.link.send(bytes::Bytes::from_static(b"echo?")).await.unwrap();
    assert_eq!(message(&mut handle.events).await, bytes::Bytes::from_static(b"echo?"));

    child.kill().await.unwrap(); // SIGKILL: the peer says nothing
    let killed = Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(20), handle.events.recv()).await.expect("detected in time");
    let took = killed.elapsed();
    assert!(matches!(event, Some(LinkEvent::Closed(CloseReason::Failed(_)))), "got {event:?}");
    eprintln!("peer death detected after {took:?}");
    assert!(took < Duration::from_secs(8), "detection took {took:?} with 1 s + 1 s ICE timeouts");
}
