//! The server's cases, driven by raw WebSocket clients: compiled into `server.rs` (rooms in the
//! process) and `server_redis.rs` (rooms on a real Redis, one per test).

mod trust;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signaling_ws::{ServerConfig, SignalingServer};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
const WAIT: Duration = Duration::from_secs(10);

/// A server for one test, on the store the test binary chose (with its Redis, if any).
pub(crate) struct TestServer {
    server: SignalingServer,
    _redis: Option<mesh_netlab::RedisServer>,
}

impl std::ops::Deref for TestServer {
    type Target = SignalingServer;
    fn deref(&self) -> &SignalingServer {
        &self.server
    }
}

async fn server(config: ServerConfig) -> TestServer {
    let redis = crate::redis();
    let config = ServerConfig { redis_url: redis.as_ref().map(|r| r.url()), ..config };
    let server = SignalingServer::bind("127.0.0.1:0".parse().unwrap(), config).await.expect("binds");
    TestServer { server, _redis: redis }
}

async fn connect(s: &SignalingServer) -> Ws {
    tokio_tungstenite::connect_async(s.url()).await.expect("connects").0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("sent");
}

/// The next text frame as JSON, or `null` on close.
async fn recv(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
                _ => {}
            }
        }
    })
    .await
    .expect("a frame in time")
}

/// Waits for the close frame and returns its reason.
async fn closed(ws: &mut Ws) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return f.reason.to_string(),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return String::new(),
                _ => {}
            }
        }
    })
    .await
    .expect("closed in time")
}

async fn register(s: &SignalingServer, room: &str, peer: &str, extra: Value) -> (Ws, Value) {
    let mut ws = connect(s).await;
    let mut msg = json!({"type": "register", "room": room, "peer": peer, "role": "worker"});
    if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    send(&mut ws, msg).await;
    let answer = recv(&mut ws).await;
    (ws, answer)
}

fn signal(offerer: &str) -> Value {
    json!({"session": {"offerer": offerer, "seq": 1}, "body": {"kind": "offer", "sdp": "v=0"}})
}

#[tokio::test]
async fn registration_answers_members_and_admin_and_notifies_the_room() {
    let s = server(ServerConfig::default()).await;
    let key = mesh_core::identity::NodeKey::generate();
    let (mut a, ra) = register(&s, "r1", "a", json!({"key": key.public_hex()})).await;
    assert_eq!(ra["type"], "registered");
    assert_eq!(ra["members"], json!([]));
    // Its own vote is a proof while it is the room's only worker.
    let admin = mesh_core::PeerId::new("a").unwrap();
    let sig = key.sign_vote(&mesh_core::RoomId::new("r1").unwrap(), 1, &admin);
    send(&mut a, json!({"type": "announce_admin", "epoch": 1, "votes": [{"voter": "a", "sig": sig}]})).await;
    let (_b, rb) = register(&s, "r1", "b", json!({"record": {"version": 1, "status": "available", "priority": 24000, "metadata": {"gpu_memory_mb": 24000}}})).await;
    assert_eq!(rb["members"][0]["peer"], "a");
    assert_eq!(rb["admin"], "a");
    let joined = recv(&mut a).await;
    assert_eq!((joined["type"].as_str(), joined["member"]["peer"].as_str()), (Some("peer_joined"), Some("b")));
    assert_eq!(joined["member"]["record"]["priority"], 24000);
    drop(_b);
    let left = recv(&mut a).await;
    assert_eq!((left["type"].as_str(), left["peer"].as_str()), (Some("peer_left"), Some("b")));
}

#[tokio::test]
async fn signals_are_forwarded_with_the_registered_sender() {
    let s = server(ServerConfig::default()).await;
    let (mut a, _) = register(&s, "r1", "a", json!({})).await;
    let (mut b, _) = register(&s, "r1", "b", json!({})).await;
    let _ = recv(&mut a).await; // peer_joined b
    send(&mut b, json!({"type": "signal", "to": "a", "signal": signal("b")})).await;
    let got = recv(&mut a).await;
    assert_eq!(got, json!({"type": "signal", "from": "b", "signal": signal("b")}));
    send(&mut b, json!({"type": "signal", "to": "nobody", "signal": signal("b")})).await;
    assert_eq!(recv(&mut b).await["code"], "unknown_peer");
}

#[tokio::test]
async fn eleventh_worker_is_refused_and_clients_do_not_count() {
    let s = server(ServerConfig::default()).await;
    let mut keep = Vec::new();
    for i in 0..10 {
        let (ws, r) = register(&s, "full", &format!("w{i}"), json!({})).await;
        assert_eq!(r["type"], "registered");
        keep.push(ws);
    }
    let (_x, r) = register(&s, "full", "w10", json!({})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("room_full")));
    let (_c, r) = register(&s, "full", "client", json!({"role": "client"})).await;
    assert_eq!(r["type"], "registered", "clients are not counted");
    assert_eq!(r["members"].as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn duplicate_peer_id_is_refused_while_the_first_is_alive() {
    let s = server(ServerConfig::default()).await;
    let (_a, _) = register(&s, "r", "same", json!({})).await;
    let (_b, r) = register(&s, "r", "same", json!({})).await;
    assert_eq!(r["code"], "duplicate_peer");
}

#[tokio::test]
async fn wrong_token_is_refused_and_closed_right_token_accepted() {
    let mut config = ServerConfig::default();
    config.tokens.insert("secret-room".into(), "s3cret".into());
    let s = server(config).await;
    let (mut bad, r) = register(&s, "secret-room", "a", json!({"token": "guess"})).await;
    assert_eq!(r["code"], "bad_token");
    assert_eq!(closed(&mut bad).await, "bad token");
    let (_none, r) = register(&s, "secret-room", "b", json!({})).await;
    assert_eq!(r["code"], "bad_token");
    let (_ok, r) = register(&s, "secret-room", "c", json!({"token": "s3cret"})).await;
    assert_eq!(r["type"], "registered");
    let (_open, r) = register(&s, "open-room", "d", json!({})).await;
    assert_eq!(r["type"], "registered", "rooms without a token stay open");
}

#[tokio::test]
async fn b26_rooms_are_isolated() {
    let s = server(ServerConfig::default()).await;
    let (mut a, _) = register(&s, "room-a", "a", json!({})).await;
    let (mut b, rb) = register(&s, "room-b", "b", json!({})).await;
    assert_eq!(rb["members"], json!([]), "no listing across rooms");
    send(&mut b, json!({"type": "signal", "to": "a", "signal": signal("b")})).await;
    assert_eq!(recv(&mut b).await["code"], "unknown_peer");
    send(&mut a, json!({"type": "ping", "id": 7})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "pong", "id": 7}), "a got nothing from b, no notice either");
}

#[tokio::test]
async fn b24_hostile_frames_get_error_frames_and_never_disturb_others() {
    let s = server(ServerConfig::default()).await;
    let (mut good, _) = register(&s, "r", "good", json!({})).await;
    let mut bad = connect(&s).await;
    for (frame, code) in [
        ("not json", "bad_json"),
        (r#"{"type":"launch_missiles"}"#, "invalid_message"),
        (r#"{"type":"register","room":"r"}"#, "invalid_message"),
        (r#"{"type":"register","room":"bad room","peer":"x","role":"worker"}"#, "invalid_message"),
        (r#"{"type":"signal","to":"good","signal":{}}"#, "invalid_message"),
        (r#"{"type":"announce_admin"}"#, "not_registered"),
    ] {
        bad.send(Message::Text(frame.into())).await.unwrap();
        let r = recv(&mut bad).await;
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some(code)), "{frame}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    bad.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(recv(&mut bad).await["code"], "invalid_message");
    // Oversized: error frame, then a close with a reason.
    bad.send(Message::Text("x".repeat(70 * 1024).into())).await.ok();
    assert_eq!(recv(&mut bad).await["code"], "too_large");
    assert_eq!(closed(&mut bad).await, "frame too large");
    // Far over the limit (beyond the transport's hard cap): still an error frame, then the end.
    let mut huge = connect(&s).await;
    huge.send(Message::Text("x".repeat(1024 * 1024).into())).await.ok();
    assert_eq!(recv(&mut huge).await["code"], "too_large");
    send(&mut good, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut good).await["type"], "pong", "the other connection is unaffected");
}

#[tokio::test]
async fn floods_are_rate_limited_then_closed() {
    let config = ServerConfig { rate_per_sec: 10, rate_burst: 20, ..ServerConfig::default() };
    let s = server(config).await;
    let (mut good, _) = register(&s, "r", "good", json!({})).await;
    let mut flood = connect(&s).await;
    let ping = Message::Text(json!({"type": "ping", "id": 1}).to_string().into());
    let (limited, reason) = flood_with(&mut flood, ping, 500).await;
    assert!(limited, "rate_limited error frames came first");
    assert_eq!(reason, "rate limit exceeded");
    send(&mut good, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut good).await["type"], "pong");
}

#[tokio::test]
async fn a_steady_flood_above_the_rate_is_answered_once_then_closed() {
    // Four times the rate, paced, for as long as it takes: frames the rate lets through in
    // between do not make it a new flood, and the flooder gets one answer, not one per frame.
    let config = ServerConfig { rate_per_sec: 10, rate_burst: 20, ..ServerConfig::default() };
    let s = server(config).await;
    let (mut flood, _) = register(&s, "r", "flooder", json!({})).await;
    let ping = Message::Text(json!({"type": "ping", "id": 1}).to_string().into());
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    let (mut limited, mut sent) = (0, 0);
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                _ = pace.tick() => {
                    sent += 1;
                    if flood.send(ping.clone()).await.is_err() {
                        return String::new();
                    }
                }
                frame = flood.next() => match frame {
                    Some(Ok(Message::Text(t))) => limited += usize::from(t.contains("rate_limited")),
                    Some(Ok(Message::Close(f))) => return f.map(|f| f.reason.to_string()).unwrap_or_default(),
                    None | Some(Err(_)) => return String::new(),
                    _ => {}
                },
            }
        }
    })
    .await
    .expect("the steady flood is closed");
    assert_eq!(reason, "rate limit exceeded", "after {sent} frames");
    assert_eq!(limited, 1, "one rate_limited answer for the whole flood");
}

#[tokio::test]
async fn half_open_connection_is_closed_after_the_keepalive_timeout() {
    let config = ServerConfig { idle_timeout_ms: 300, keepalive_interval_ms: 60_000, ..ServerConfig::default() };
    let s = server(config).await;
    let (mut silent, _) = register(&s, "r", "silent", json!({})).await;
    // Our client never answers pings here because nothing reads until the close arrives, and the
    // server pings only every 60 s: the connection is silent, as a dead peer's would be.
    assert_eq!(closed(&mut silent).await, "keep-alive timeout");
    let (_again, r) = register(&s, "r", "silent", json!({})).await;
    assert_eq!(r["type"], "registered", "the stale registration was removed");
}

#[tokio::test]
async fn before_any_announcement_newcomers_are_pointed_at_the_first_worker_but_never_at_a_rejoin() {
    let s = server(ServerConfig::default()).await;
    // A room forming: the first worker is its admin by rule, before it could announce itself.
    let (_a, ra) = register(&s, "forming", "a", json!({})).await;
    assert_eq!(ra["admin"], Value::Null);
    let (mut b, rb) = register(&s, "forming", "b", json!({})).await;
    assert_eq!(rb["admin"], "a", "pointed at the first worker");
    // A room that restarted under a running mesh: a rejoining worker is not its first worker.
    let (_c, _) = register(&s, "restarted", "c", json!({"rejoin": true})).await;
    let (_d, rd) = register(&s, "restarted", "d", json!({})).await;
    assert_eq!(rd["admin"], Value::Null, "nobody is named until the admin announces itself");
    // The first worker leaving takes the guess with it.
    drop(_a);
    let left = recv(&mut b).await;
    assert_eq!((left["type"].as_str(), left["peer"].as_str()), (Some("peer_left"), Some("a")));
    let (_e, re) = register(&s, "forming", "e", json!({})).await;
    assert_ne!(re["admin"], "a", "{re}");
}

/// Connects with `register` in the upgrade request; the response's headers and the socket.
async fn connect_registering(s: &SignalingServer, register: &Value) -> (Ws, bool) {
    use signaling_ws::protocol::{header_encode, REGISTER_HEADER, REGISTER_TAKEN_HEADER};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = s.url().into_client_request().expect("request");
    let value = header_encode(&register.to_string()).parse().expect("header value");
    request.headers_mut().insert(REGISTER_HEADER, value);
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("connects");
    (ws, response.headers().contains_key(REGISTER_TAKEN_HEADER))
}

#[tokio::test]
async fn a_register_in_the_upgrade_request_is_answered_without_a_frame() {
    let s = server(ServerConfig::default()).await;
    let (_w0, _) = register(&s, "r", "w0", json!({})).await;
    let register = json!({"type": "register", "room": "r", "peer": "w1", "role": "worker",
                          "record": {"status": "available", "priority": 0, "version": 1, "metadata": {"name": "café ☃ 100%"}}});
    let (mut ws, taken) = connect_registering(&s, &register).await;
    assert!(taken, "the server says it took the registration");
    // No frame sent: the first thing on the socket is the answer, naming the member already in.
    let answer = recv(&mut ws).await;
    assert_eq!((answer["type"].as_str(), answer["peer"].as_str()), (Some("registered"), Some("w1")), "{answer}");
    assert_eq!(answer["members"][0]["peer"], "w0", "{answer}");
    // It counts as the connection's registration: a second one is refused.
    send(&mut ws, json!({"type": "register", "room": "r", "peer": "w1", "role": "worker"})).await;
    assert_eq!(recv(&mut ws).await["code"], "already_registered");
}

#[tokio::test]
async fn a_bad_register_in_the_upgrade_request_gets_the_same_refusals_as_a_frame() {
    let config = ServerConfig { shared_secret: Some("s3cret".into()), ..ServerConfig::default() };
    let s = server(config).await;
    let register = json!({"type": "register", "room": "r", "peer": "w1", "role": "worker", "token": "wrong"});
    let (mut ws, _) = connect_registering(&s, &register).await;
    assert_eq!(recv(&mut ws).await["code"], "bad_token");
    assert!(recv(&mut ws).await.is_null(), "closed after the refusal");
    let (mut ws, _) = connect_registering(&s, &json!({"type": "register", "room": "r"})).await;
    assert_eq!(recv(&mut ws).await["code"], "invalid_message", "a malformed header register is refused by name");
}

/// Sends `n` copies of `frame` (stopping when the socket closes) and returns the close reason,
/// and whether a `rate_limited` error frame came first.
async fn flood_with(ws: &mut Ws, frame: Message, n: usize) -> (bool, String) {
    for _ in 0..n {
        if ws.send(frame.clone()).await.is_err() {
            break;
        }
    }
    let mut limited = false;
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => limited |= t.contains("rate_limited"),
                Some(Ok(Message::Close(f))) => return f.map(|f| f.reason.to_string()).unwrap_or_default(),
                None | Some(Err(_)) => return String::new(),
                _ => {}
            }
        }
    })
    .await
    .expect("flood connection closed");
    (limited, reason)
}

#[tokio::test]
async fn binary_and_ping_floods_are_rate_limited_like_any_frame() {
    let config = ServerConfig { rate_per_sec: 10, rate_burst: 20, ..ServerConfig::default() };
    let s = server(config).await;
    let (mut good, _) = register(&s, "r", "good", json!({})).await;
    for frame in [Message::Binary(vec![1u8; 16].into()), Message::Ping(vec![1u8; 16].into())] {
        let mut flood = connect(&s).await;
        let (limited, reason) = flood_with(&mut flood, frame, 500).await;
        assert!(limited, "rate_limited error frames came first");
        assert_eq!(reason, "rate limit exceeded");
    }
    send(&mut good, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut good).await["type"], "pong", "the others are served on");
}

#[tokio::test]
async fn a_connection_that_never_registers_is_closed_after_the_handshake_timeout() {
    let s = server(ServerConfig { handshake_timeout_ms: 300, ..ServerConfig::default() }).await;
    let mut silent = connect(&s).await;
    assert_eq!(recv(&mut silent).await["code"], "not_registered");
    assert_eq!(closed(&mut silent).await, "no registration in time");
    // Registering in time keeps the connection.
    let (mut ok, answer) = register(&s, "r", "w0", json!({})).await;
    assert_eq!(answer["type"], "registered");
    tokio::time::sleep(Duration::from_millis(600)).await; // past the timeout: a wait for nothing to happen
    send(&mut ok, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut ok).await["type"], "pong");
}

#[tokio::test]
async fn connections_beyond_the_caps_are_refused_with_a_reason() {
    let per_address = ServerConfig { max_connections_per_address: 2, ..ServerConfig::default() };
    let s = server(per_address).await;
    let (_a, _) = register(&s, "r", "a", json!({})).await;
    let (_b, _) = register(&s, "r", "b", json!({})).await;
    let mut third = connect(&s).await;
    assert_eq!(closed(&mut third).await, "too many connections from your address");
    drop(_a);
    let (_c, answer) = tokio::time::timeout(WAIT, async {
        loop {
            // The slot frees once the server has seen the first connection go.
            let (ws, answer) = register(&s, "r", "c", json!({})).await;
            if answer["type"] == "registered" {
                return (ws, answer);
            }
        }
    })
    .await
    .expect("a freed slot is reused");
    assert_eq!(answer["type"], "registered");
    let total = ServerConfig { max_connections: 1, ..ServerConfig::default() };
    let s = server(total).await;
    let (_a, _) = register(&s, "r", "a", json!({})).await;
    let mut second = connect(&s).await;
    assert_eq!(closed(&mut second).await, "server full: too many connections");
}

#[tokio::test]
async fn a_registered_key_is_bound_to_the_peer_and_handed_out_and_a_bad_one_refused() {
    let s = server(ServerConfig::default()).await;
    let key = "ab".repeat(32);
    let (mut w0, answer) = register(&s, "r", "w0", json!({"key": key})).await;
    assert_eq!(answer["type"], "registered");
    let (_w1, answer) = register(&s, "r", "w1", json!({})).await;
    assert_eq!(answer["members"][0]["key"], key.as_str(), "members carry their key: {answer}");
    assert!(answer["members"][0].get("key").is_some());
    let (_w2, _) = register(&s, "r", "w2", json!({"key": "cd".repeat(32)})).await;
    let joined = loop {
        let v = recv(&mut w0).await;
        if v["type"] == "peer_joined" && v["member"]["peer"] == "w2" {
            break v;
        }
    };
    assert_eq!(joined["member"]["key"], "cd".repeat(32).as_str());
    for bad in ["short", &"zz".repeat(32)] {
        let (_, answer) = register(&s, "r", "w9", json!({ "key": bad })).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some("invalid_message")),
            "{bad}"
        );
    }
}

/// `GET path` on the server's port: (status line, body).
async fn http_get(s: &SignalingServer, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.local_addr()).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: mesh\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request sent");
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await.expect("answered in time").expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

#[tokio::test]
async fn healthz_and_metrics_are_served_on_the_websocket_port() {
    let s = server(ServerConfig { max_workers_per_room: 1, ..ServerConfig::default() }).await;
    assert_eq!(http_get(&s, "/healthz").await, ("HTTP/1.1 200 OK".to_string(), "ok\n".to_string()));
    let (_a, ra) = register(&s, "r", "a", json!({})).await;
    assert_eq!(ra["type"], "registered");
    let (_b, rb) = register(&s, "r", "b", json!({})).await;
    assert_eq!(rb["code"], "room_full");
    let (status, metrics) = http_get(&s, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for line in [
        "mesh_signal_connections 2",
        "mesh_signal_rooms 1",
        "mesh_signal_registrations_total 1",
        "mesh_signal_refusals_total{code=\"room_full\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("# TYPE mesh_signal_store_seconds summary"), "{metrics}");
    let (mut c, _) = register(&s, "r", "c", json!({"role": "client"})).await;
    send(&mut c, json!({"type": "signal", "to": "a", "signal": signal("c")})).await;
    let (_, metrics) = http_get(&s, "/metrics").await;
    assert!(metrics.lines().any(|l| l == "mesh_signal_signals_forwarded_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomers_first_frame_is_its_answer_even_while_others_join() {
    let s = server(ServerConfig::default()).await;
    for round in 0..5 {
        let room = format!("busy-{round}");
        let names: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
        let joins = names.iter().map(|name| register(&s, &room, name, json!({})));
        for (_ws, first) in futures::future::join_all(joins).await {
            assert_eq!(first["type"], "registered", "a notice overtook the registration answer: {first}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_is_never_told_of_a_change_its_answer_already_shows() {
    let s = server(ServerConfig::default()).await;
    for round in 0..20 {
        let room = format!("late-{round}");
        let (_a, _) = register(&s, &room, "a", json!({})).await;
        let (mut b, rb) = register(&s, &room, "b", json!({})).await;
        assert_eq!(rb["members"][0]["peer"], "a", "{rb}");
        let (_c, _) = register(&s, &room, "c", json!({})).await;
        let next = recv(&mut b).await;
        assert_eq!(next["member"]["peer"], "c", "b's next frame is the join after its own: {next}");
    }
}
