//! Byte streams on the in-memory plugins (paused time): whole and in order, many at once, each
//! with its own flow control, reset with a reason.

mod harness;

use harness::*;
use mesh_core::memory::MemoryNetwork;
use mesh_core::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(start_paused = true)]
async fn many_streams_at_once_carry_their_bytes_whole_and_in_order() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let mut inbox = nodes[1].listen("pipe/1").unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..8 {
            let Some(Incoming::Stream(mut s)) = inbox.recv().await else { panic!("a stream") };
            got.push(tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.expect("read to its end");
                all
            }));
        }
        let mut out = Vec::new();
        for g in got {
            out.push(g.await.unwrap());
        }
        out
    });
    let writers = (0..8u8).map(|i| {
        let mut s = nodes[0].open_stream(&peer("w1"), "pipe/1").unwrap();
        async move {
            s.write_all(&pattern(i, 1024 * 1024 + i as usize)).await.expect("written");
            s.shutdown().await.unwrap();
            // Keep the stream until the reader has it all (dropping first would reset it).
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
    });
    let (_, got) = tokio::join!(futures::future::join_all(writers), async {
        tokio::time::timeout(WAIT, reader).await.expect("all read").unwrap()
    });
    let mut lens: Vec<usize> = got.iter().map(|g| g.len()).collect();
    lens.sort();
    assert_eq!(lens, (0..8).map(|i| 1024 * 1024 + i).collect::<Vec<_>>());
    for g in got {
        let i = (g.len() - 1024 * 1024) as u8;
        assert!(g == pattern(i, g.len()), "stream {i} arrived whole and in order");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_nobody_reads_holds_up_neither_another_stream_nor_requests() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let mut inbox = nodes[1].listen("pipe/1").unwrap();
    let mut stuck = nodes[0].open_stream(&peer("w1"), "pipe/1").unwrap();
    let Some(Incoming::Stream(_never_read)) = inbox.recv().await else { panic!("a stream") };
    // The stuck stream's writer fills its credit and then waits.
    let fill = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stuck.write_all(&vec![0u8; 2 * mesh_core::data::streams::WINDOW]),
    )
    .await;
    assert!(fill.is_err(), "a stream whose reader does not read stops its writer");
    let mut fast = nodes[0].open_stream(&peer("w1"), "pipe/1").unwrap();
    let Some(Incoming::Stream(mut other)) = inbox.recv().await else { panic!("a stream") };
    let data = pattern(7, 3 << 20);
    let send = async {
        fast.write_all(&data).await.unwrap();
        fast.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let (_, read) = tokio::join!(send, tokio::time::timeout(WAIT, other.read_to_end(&mut got)));
    read.expect("the other stream is not held up").unwrap();
    assert!(got == data);
    let echo = mesh_core::testing::deliver(&nodes[0], &nodes[1], b"still here", WAIT).await;
    assert_eq!(echo.expect("messages are not held up"), &b"still here"[..]);
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_reset_with_its_reason() {
    let net = MemoryNetwork::new();
    let nodes = spawn_mesh(&net, 2).await;
    let mut nobody = nodes[0].open_stream(&peer("w1"), "nobody/1").unwrap();
    let mut buf = [0u8; 8];
    let err = tokio::time::timeout(WAIT, nobody.read(&mut buf)).await.unwrap().expect_err("reset");
    assert!(err.to_string().contains("no inbox"), "{err}");
    assert!(matches!(nodes[0].open_stream(&peer("w9"), "p"), Err(mesh_core::DataError::NotLinked(_))));
    let mut inbox = nodes[1].listen("pipe/1").unwrap();
    let mut s = nodes[0].open_stream(&peer("w1"), "pipe/1").unwrap();
    s.write_all(b"hello").await.unwrap();
    let Some(Incoming::Stream(mut theirs)) = inbox.recv().await else { panic!("a stream") };
    let mut five = [0u8; 5];
    theirs.read_exact(&mut five).await.unwrap();
    assert_eq!(&five, b"hello");
    net.close_links(&peer("w0"), &peer("w1"));
    let err = tokio::time::timeout(WAIT, theirs.read(&mut buf)).await.unwrap().expect_err("the link closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let err = tokio::time::timeout(WAIT, s.write_all(&[1u8; 1 << 20])).await.unwrap().expect_err("broken");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
}
