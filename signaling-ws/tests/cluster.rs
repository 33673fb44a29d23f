//! Two servers on one real `redis-server` serving the same rooms: membership, notices and
//! signals cross servers, the room limit holds under concurrent registrations on both, a server
//! that stops without a word loses its peers after its lease, and both recover from a Redis
//! restart.

use futures::{SinkExt, StreamExt};
use mesh_netlab::RedisServer;
use serde_json::{json, Value};
use signaling_ws::{ServerConfig, SignalingServer};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
const WAIT: Duration = Duration::from_secs(15);

async fn server(redis: &RedisServer) -> SignalingServer {
    let config = ServerConfig { redis_url: Some(redis.url()), lease_ms: 1_500, ..ServerConfig::default() };
    SignalingServer::bind("127.0.0.1:0".parse().unwrap(), config).await.expect("binds on redis")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("sent");
}

/// The next text frame of `kind` (others skipped), or `Null` when the connection closes.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} in time"))
}

async fn register(s: &SignalingServer, room: &str, peer: &str, role: &str) -> (Ws, Value) {
    register_keyed(s, room, peer, role, None).await
}

async fn register_keyed(s: &SignalingServer, room: &str, peer: &str, role: &str, key: Option<String>) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(s.url()).await.expect("connects");
    let mut frame = json!({"type": "register", "room": room, "peer": peer, "role": role});
    if let Some(key) = key {
        frame["key"] = json!(key);
    }
    send(&mut ws, frame).await;
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["type"] == "registered" || v["type"] == "error" {
                        return v;
                    }
                }
                _ => return Value::Null,
            }
        }
    })
    .await
    .expect("an answer in time");
    (ws, answer)
}

fn peers(members: &Value) -> Vec<String> {
    members.as_array().into_iter().flatten().filter_map(|m| m["peer"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn members_notices_and_signals_cross_servers() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (server(&redis).await, server(&redis).await);
    let keys = [mesh_core::identity::NodeKey::generate(), mesh_core::identity::NodeKey::generate()];
    let (mut w0, r0) = register_keyed(&a, "room", "w0", "worker", Some(keys[0].public_hex())).await;
    assert_eq!(r0["type"], "registered");
    let (mut w1, r1) = register_keyed(&b, "room", "w1", "worker", Some(keys[1].public_hex())).await;
    assert_eq!(peers(&r1["members"]), vec!["w0"], "w1, on the other server, is told of w0");
    assert_eq!(r1["admin"], "w0", "and pointed at the first worker");
    assert_eq!(next_of(&mut w0, "peer_joined").await["member"]["peer"], "w1");
    let signal = json!({"session": {"offerer": "w0", "seq": 1}, "body": {"kind": "offer", "sdp": "v=0"}});
    send(&mut w0, json!({"type": "signal", "to": "w1", "signal": signal})).await;
    let got = next_of(&mut w1, "signal").await;
    assert_eq!((got["from"].clone(), got["signal"]["body"]["sdp"].clone()), (json!("w0"), json!("v=0")));
    // Both workers' votes for w1: a proof the server checks against the keys in Redis.
    let (room, w1_id) = (mesh_core::RoomId::new("room").unwrap(), mesh_core::PeerId::new("w1").unwrap());
    let votes: Vec<Value> = ["w0", "w1"]
        .iter()
        .zip(&keys)
        .map(|(v, k)| json!({"voter": v, "sig": k.sign_vote(&room, 1, &w1_id)}))
        .collect();
    send(&mut w1, json!({"type": "announce_admin", "epoch": 1, "votes": votes})).await;
    assert_eq!(next_of(&mut w0, "admin").await["peer"], "w1");
    let (_c0, rc) = register(&a, "room", "c0", "client").await;
    assert_eq!(rc["admin"], "w1", "the admin announced on one server is the room's on every server");
    assert_eq!(a.room_count().await, 1);
    drop(w1);
    assert_eq!(next_of(&mut w0, "peer_left").await["peer"], "w1");
}

#[tokio::test]
async fn the_room_limit_holds_under_20_concurrent_registrations_on_two_servers() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (server(&redis).await, server(&redis).await);
    let tries = (0..20).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        async move { register(s, "busy", &format!("w{i}"), "worker").await }
    });
    let answers = futures::future::join_all(tries).await;
    let ok = answers.iter().filter(|(_, v)| v["type"] == "registered").count();
    let full = answers.iter().filter(|(_, v)| v["code"] == "room_full").count();
    assert_eq!(
        (ok, full),
        (10, 10),
        "exactly the room's 10 workers get in: {:?}",
        answers.iter().map(|a| &a.1).collect::<Vec<_>>()
    );
    let (_c, client) = register(&b, "busy", "c0", "client").await;
    assert_eq!(client["type"], "registered", "clients do not count");
}

#[tokio::test]
async fn a_server_that_stops_without_a_word_loses_its_peers_after_its_lease() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (server(&redis).await, server(&redis).await);
    let (_w0, _) = register(&a, "room", "w0", "worker").await;
    let (mut w1, r1) = register(&b, "room", "w1", "worker").await;
    assert_eq!(peers(&r1["members"]), vec!["w0"]);
    // Stopping tells nobody that w0 left (its peers did not leave): only its lease can.
    a.shutdown().await;
    assert_eq!(next_of(&mut w1, "peer_left").await["peer"], "w0", "w0 is dropped once a's lease expires");
    let (_w0, again) = register(&b, "room", "w0", "worker").await;
    assert_eq!(again["type"], "registered", "the id is free again, on the surviving server");
}

#[tokio::test]
async fn after_a_redis_restart_the_servers_have_their_peers_register_again() {
    let mut redis = RedisServer::start().expect("redis");
    let (a, b) = (server(&redis).await, server(&redis).await);
    let (mut w0, _) = register(&a, "room", "w0", "worker").await;
    let (mut w1, _) = register(&b, "room", "w1", "worker").await;
    redis.restart().expect("redis restarts, empty");
    // Each server finds its lease gone and closes its connections: their peers register again.
    assert_eq!(next_of(&mut w0, "never").await, Value::Null, "w0's connection is closed");
    assert_eq!(next_of(&mut w1, "never").await, Value::Null, "w1's connection is closed");
    let (mut w0, r0) = register(&a, "room", "w0", "worker").await;
    assert_eq!(r0["type"], "registered", "{r0}");
    let (_w1, r1) = register(&b, "room", "w1", "worker").await;
    assert_eq!(peers(&r1["members"]), vec!["w0"], "the room is whole again across both servers");
    assert_eq!(next_of(&mut w0, "peer_joined").await["member"]["peer"], "w1");
}

#[tokio::test]
async fn a_peer_whose_server_died_registers_on_the_other_and_nobody_hears_it_left() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (server(&redis).await, server(&redis).await);
    let (_w0, _) = register(&a, "room", "w0", "worker").await;
    let (mut w1, _) = register(&b, "room", "w1", "worker").await;
    a.shutdown().await;
    // What w0's signaler does: ask b until a's lease has expired and the registration is free.
    let started = tokio::time::Instant::now();
    let again = loop {
        let (ws, answer) = register(&b, "room", "w0", "worker").await;
        if answer["type"] == "registered" {
            break ws;
        }
        assert_eq!(answer["code"], "duplicate_peer", "{answer}");
        assert!(started.elapsed() < WAIT, "w0 was never let in again");
        tokio::time::sleep(Duration::from_millis(200)).await; // the signaler's retry
    };
    let next = next_of_any(&mut w1).await;
    assert_eq!((next["type"].clone(), next["member"]["peer"].clone()), (json!("peer_joined"), json!("w0")), "{next}");
    drop(again);
    assert_eq!(next_of(&mut w1, "peer_left").await["peer"], "w0", "a real departure is told");
}

/// The next text frame, whatever it is.
async fn next_of_any(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                return serde_json::from_str(&t).expect("json");
            }
        }
    })
    .await
    .expect("a frame in time")
}

/// `GET /healthz` on `s`: its status line.
async fn healthz(s: &SignalingServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.local_addr()).await.expect("connects");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: mesh\r\n\r\n").await.expect("sent");
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await.expect("in time").expect("read");
    response.lines().next().unwrap_or_default().to_string()
}

/// Asks `/healthz` until it answers `status` (an operator's probe has no other way to know).
async fn healthz_becomes(s: &SignalingServer, status: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while healthz(s).await != status {
        assert!(tokio::time::Instant::now() < deadline, "/healthz never said {status}");
        tokio::time::sleep(Duration::from_millis(100)).await; // the probe's period
    }
}

#[tokio::test]
async fn healthz_follows_the_reachability_of_redis() {
    let mut redis = RedisServer::start().expect("redis");
    let a = server(&redis).await;
    assert_eq!(healthz(&a).await, "HTTP/1.1 200 OK");
    redis.stop();
    healthz_becomes(&a, "HTTP/1.1 503 Service Unavailable").await;
    let (_w, refused) = register(&a, "room", "w0", "worker").await;
    assert_eq!(refused["code"], "unavailable", "a registration without Redis is refused, not lost: {refused}");
    redis.start_again().expect("redis back");
    healthz_becomes(&a, "HTTP/1.1 200 OK").await;
    let (_w0, r) = register(&a, "room", "w0", "worker").await;
    assert_eq!(r["type"], "registered", "{r}");
}
