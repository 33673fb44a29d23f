//! The server takes no member's word for the admin (docs/PROTOCOL.md, "Keys and the admin"): an
//! `announce_admin` names its sender only on the signed votes of a strict majority of the room's
//! workers, never below the named admin's epoch; a client's key travels with its signals; keys
//! off the allowlist are refused.

use super::*;
use mesh_core::identity::NodeKey;
use mesh_core::{PeerId, RoomId};

fn vote(key: &NodeKey, voter: &str, epoch: u64, admin: &str) -> Value {
    let sig = key.sign_vote(&RoomId::new("t").unwrap(), epoch, &PeerId::new(admin).unwrap());
    json!({"voter": voter, "sig": sig})
}

fn announce(epoch: u64, votes: Vec<Value>) -> Value {
    json!({"type": "announce_admin", "epoch": epoch, "votes": votes})
}

/// The `admin` a newcomer's registration answer names.
async fn named(s: &SignalingServer) -> Value {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_ws, answer) = register(s, "t", &format!("newcomer{n}"), json!({"role": "client"})).await;
    answer["admin"].clone()
}

/// The peer the next `admin` notice names (other frames skipped).
async fn admin_notice(ws: &mut Ws) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == "admin" || v.is_null() {
            return v["peer"].clone();
        }
    }
}

/// The next error frame (notices before it skipped).
async fn next_error(ws: &mut Ws) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == "error" || v.is_null() {
            return v;
        }
    }
}

#[tokio::test]
async fn a21_6_the_server_names_an_admin_only_on_a_majoritys_proof() {
    let s = server(ServerConfig::default()).await;
    let names = ["w0", "w1", "w2", "rogue"];
    let keys: Vec<NodeKey> = names.iter().map(|_| NodeKey::generate()).collect();
    let mut ws = Vec::new();
    for (name, key) in names.iter().zip(&keys) {
        let (w, answer) = register(&s, "t", name, json!({"key": key.public_hex()})).await;
        assert_eq!(answer["type"], "registered");
        ws.push(w);
    }
    let [w0k, w1k, w2k, rk] = [&keys[0], &keys[1], &keys[2], &keys[3]];
    // Three of four workers voted for w0 at epoch 2: named.
    let proof = vec![vote(w0k, "w0", 2, "w0"), vote(w1k, "w1", 2, "w0"), vote(w2k, "w2", 2, "w0")];
    send(&mut ws[0], announce(2, proof.clone())).await;
    assert_eq!(admin_notice(&mut ws[2]).await, "w0", "the room is told");
    assert_eq!(named(&s).await, "w0");
    let mut refused = Vec::new();
    // The rogue: on its word alone, with a huge epoch, with its own vote and forged ones (its key
    // in others' names), with w0's proof replayed, and with a genuine majority of an older epoch.
    let older = vec![vote(rk, "rogue", 1, "rogue"), vote(w1k, "w1", 1, "rogue"), vote(w2k, "w2", 1, "rogue")];
    for frame in [
        json!({"type": "announce_admin"}),
        announce(u64::MAX, vec![]),
        announce(9, vec![vote(rk, "rogue", 9, "rogue"), vote(rk, "w1", 9, "rogue"), vote(rk, "w2", 9, "rogue")]),
        announce(2, proof.clone()),
        announce(1, older),
    ] {
        send(&mut ws[3], frame.clone()).await;
        let r = next_error(&mut ws[3]).await;
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("not_proven")), "{frame}: {r}");
        refused.push(r);
        assert_eq!(named(&s).await, "w0", "still w0 after {frame}");
    }
    // A client may not announce at all.
    let (mut c, _) = register(&s, "t", "c", json!({"role": "client", "key": NodeKey::generate().public_hex()})).await;
    send(&mut c, announce(3, vec![])).await;
    assert_eq!(next_error(&mut c).await["code"], "not_worker");
    // A later, proven epoch moves the role, and everyone is told.
    let later = vec![vote(w1k, "w1", 3, "w1"), vote(w2k, "w2", 3, "w1"), vote(rk, "rogue", 3, "w1")];
    send(&mut ws[1], announce(3, later)).await;
    assert_eq!(admin_notice(&mut ws[2]).await, "w1", "the room is told");
    assert_eq!(named(&s).await, "w1");
}

#[tokio::test]
async fn a21_1_a_signal_carries_the_key_its_sender_registered() {
    let s = server(ServerConfig::default()).await;
    let key = "ab".repeat(32);
    let (mut w0, _) = register(&s, "k", "w0", json!({})).await;
    let (mut c, _) = register(&s, "k", "c", json!({"role": "client", "key": key})).await;
    send(&mut c, json!({"type": "signal", "to": "w0", "signal": signal("c")})).await;
    let got = recv(&mut w0).await;
    assert_eq!(got, json!({"type": "signal", "from": "c", "signal": signal("c"), "key": key}));
}

#[tokio::test]
async fn a21_3_keys_off_the_allowlist_are_refused_by_role() {
    let (wk, ck) = ("ab".repeat(32), "cd".repeat(32));
    let config =
        ServerConfig { allow_workers: vec![wk.clone()], allow_clients: vec![ck.clone()], ..ServerConfig::default() };
    let s = server(config).await;
    let (_w, r) = register(&s, "a", "w0", json!({"key": wk})).await;
    assert_eq!(r["type"], "registered");
    for (peer, extra) in [
        ("w1", json!({"key": ck})),
        ("w2", json!({})),
        ("w3", json!({"key": "ef".repeat(32)})),
        ("c1", json!({"role": "client", "key": "ef".repeat(32)})),
        ("c2", json!({"role": "client"})),
    ] {
        let (mut ws, r) = register(&s, "a", peer, extra.clone()).await;
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("not_allowed")), "{peer} {extra}");
        assert_eq!(closed(&mut ws).await, "key not allowed");
    }
    let (_c, r) = register(&s, "a", "c0", json!({"role": "client", "key": ck})).await;
    assert_eq!(r["type"], "registered");
}
