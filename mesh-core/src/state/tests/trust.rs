//! Nothing a member says is taken on its word (docs/BEHAVIOUR.md 17a, 25b): every node here signs,
//! as a real node does. Rogues: a client that registered a key of its own, a worker of the room
//! with the lowest priority, each claiming for itself, for a third party and with huge numbers.

use super::sim::{peer, Sim};
use super::{drain, on_link, Out};
use crate::identity::{Allowlist, NodeKey};
use crate::signal::{Signal, SignalBody};
use crate::signaler::Role;
use crate::state::{Event, LinkOp, MeshState, SignalingOp, StateConfig, Timing, Transmit};
use crate::wire::{MeshMessage, Vote};
use crate::{MemberInfo, RegistryFilter, RoomId, SessionId, WorkerRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn room() -> RoomId {
    RoomId::new("r").unwrap()
}

/// A signed room: a key per name.
struct Keys(BTreeMap<&'static str, Arc<NodeKey>>);

impl Keys {
    fn new(names: &[&'static str]) -> Self {
        Self(names.iter().map(|n| (*n, Arc::new(NodeKey::generate()))).collect())
    }

    fn member(&self, name: &'static str, priority: u64) -> MemberInfo {
        let key = &self.0[name];
        let mut record = Sim::record(priority);
        record.sig = Some(key.sign_record(&room(), &peer(name), &record));
        MemberInfo { key: Some(key.public_hex()), ..MemberInfo::new(peer(name), record) }
    }

    fn state(&self, me: &'static str, role: Role, priority: u64) -> MeshState {
        self.state_trusting(me, role, priority, Default::default())
    }

    fn state_trusting(&self, me: &'static str, role: Role, priority: u64, trust: Allowlist) -> MeshState {
        MeshState::new(StateConfig {
            room: room(),
            me: peer(me),
            role,
            record: Sim::record(priority),
            timing: Timing::default(),
            seed: 1,
            key: Some(self.0[me].clone()),
            first_session: 1,
            trust,
            max_client_links: crate::state::DEFAULT_MAX_CLIENT_LINKS,
            heartbeat_phase: None,
        })
    }

    /// An offer from `from` to `to`, signed by `from`; `bound` is the key the rendezvous hands along.
    fn offer(&self, from: &'static str, to: &str, session: &SessionId, bound: Option<String>) -> Event {
        let mut signal = Signal::new(session.clone(), SignalBody::Offer { sdp: "v=0".into() });
        signal.sig = Some(self.0[from].sign(&room(), &peer(from), &peer(to), &signal));
        Event::Signal { from: peer(from), signal, key: bound }
    }

    fn vote(&self, voter: &'static str, epoch: u64, admin: &str) -> Vote {
        Vote { voter: peer(voter), sig: Some(self.0[voter].sign_vote(&room(), epoch, &peer(admin))) }
    }
}

fn msg(s: &mut MeshState, now: Instant, from: &str, msg: MeshMessage) {
    s.handle(now, on_link(s, peer(from), msg));
}

/// Workers w0 (admin, priority 50), w1 (40), w2 (30) and rogue r (priority 1), and client c.
const NAMES: [&str; 5] = ["w0", "w1", "w2", "r", "c"];

/// `me` registered after the others (w0 first: the admin), linked to every other worker, its
/// admin verified. The client is not linked.
fn linked(keys: &Keys, me: &'static str, now: Instant) -> MeshState {
    let priority = |n: &str| match n {
        "w0" => 50,
        "w1" => 40,
        "w2" => 30,
        _ => 1,
    };
    let mut s = keys.state(me, Role::Worker, priority(me));
    let others: Vec<&'static str> = ["w0", "w1", "w2", "r"].into_iter().filter(|n| *n != me).collect();
    let members: Vec<MemberInfo> = others.iter().map(|n| keys.member(n, priority(n))).collect();
    if me == "w0" {
        // The first worker: the others join after it.
        s.handle(now, Event::Registered { members: vec![], admin: None });
        for m in members {
            s.handle(now, Event::PeerJoined(m));
        }
    } else {
        s.handle(now, Event::Registered { members, admin: Some(peer("w0")) });
    }
    for n in &others {
        let session = SessionId { offerer: peer(n), seq: 1 };
        s.handle(now, keys.offer(n, me, &session, None));
        s.handle(now, Event::LinkOpened { peer: peer(n), session });
    }
    for a in drain(&mut s) {
        if let Out::Send(Transmit { msg: MeshMessage::AdminVerify { id, .. }, .. }) = a {
            let votes = vec![keys.vote("w0", 0, "w0"), keys.vote("w1", 0, "w0"), keys.vote("w2", 0, "w0")];
            msg(&mut s, now, "w0", MeshMessage::AdminVerifyAck { id, admin: Some(peer("w0")), epoch: 0, votes });
        }
    }
    drain(&mut s);
    assert_eq!(s.admin(), (Some(&peer("w0")), true), "{me} follows w0");
    s
}

/// The client `c` opens a link to `s` (its offer signed by `c`, its key bound by the rendezvous).
fn client_links(keys: &Keys, s: &mut MeshState, now: Instant) {
    let session = SessionId { offerer: peer("c"), seq: 1 };
    let (me, accepts) = (s.me().as_str().to_string(), s.counters().accepts);
    s.handle(now, keys.offer("c", &me, &session, Some(keys.0["c"].public_hex())));
    assert_eq!(s.counters().accepts, accepts + 1, "the client's signed offer is accepted");
    s.handle(now, Event::LinkOpened { peer: peer("c"), session });
    drain(s);
}

fn heartbeat(admin: &str, epoch: u64) -> MeshMessage {
    MeshMessage::Heartbeat { seq: 1, admin: Some(peer(admin)), epoch, admin_linked: true, links: None }
}

#[test]
fn a21_1_a_clients_signal_must_verify_against_the_key_the_rendezvous_bound() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let mut w0 = linked(&keys, "w0", now);
    let bound = keys.0["c"].public_hex();
    let session = SessionId { offerer: peer("c"), seq: 7 };
    let unsigned = Signal::new(session, SignalBody::Offer { sdp: "v=0".into() });
    let mut random = unsigned.clone();
    random.sig = Some("ab".repeat(64));
    let mut other_key = unsigned.clone();
    other_key.sig = Some(keys.0["r"].sign(&room(), &peer("c"), &peer("w0"), &unsigned));
    let mut genuine = unsigned.clone();
    genuine.sig = Some(keys.0["c"].sign(&room(), &peer("c"), &peer("w0"), &unsigned));
    assert!(!w0.accepts_signal(&peer("c"), &random, None, Some(&bound)), "a random signature");
    assert!(!w0.accepts_signal(&peer("c"), &other_key, None, Some(&bound)), "signed with another key");
    assert!(!w0.accepts_signal(&peer("c"), &unsigned, None, Some(&bound)), "no signature");
    assert!(!w0.accepts_signal(&peer("c2"), &genuine, None, None), "a client that registered no key");
    assert_eq!(w0.counters().refused, 4, "each refusal counted");
    assert!(w0.accepts_signal(&peer("c"), &genuine, None, Some(&bound)), "the client's own signature");
    // A worker's signal is checked against the key it registered, not one a signal brings.
    let mut by_w1 = unsigned.clone();
    by_w1.session.offerer = peer("w1");
    by_w1.sig = Some(keys.0["c"].sign(&room(), &peer("w1"), &peer("w0"), &by_w1));
    assert!(!w0.accepts_signal(&peer("w1"), &by_w1, None, Some(&bound)), "w1 is bound to its own key");
}

#[test]
fn a21_2_a_client_never_holds_a_record_nor_is_listed_or_counted() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let mut w0 = linked(&keys, "w0", now);
    client_links(&keys, &mut w0, now);
    let before = w0.room_state().present().count();
    let mut record = WorkerRecord { version: 5, ..Sim::record(1_000_000_000) };
    record.sig = Some("cd".repeat(64));
    msg(&mut w0, now, "c", MeshMessage::Record { peer: peer("c"), record: record.clone() });
    record.sig = Some(keys.0["c"].sign_record(&room(), &peer("c"), &record));
    msg(&mut w0, now, "c", MeshMessage::Record { peer: peer("c"), record });
    assert!(w0.room_state().get(&peer("c")).is_none(), "no record for a client, even one it signed");
    assert_eq!(w0.room_state().present().count(), before);
    let page = RegistryFilter::default().apply(w0.room_state());
    assert_eq!(page.total_count, 4, "four workers, the client not counted");
    assert!(page.workers.iter().all(|m| m.peer != peer("c")));
    assert_eq!(w0.counters().refused, 2);
}

#[test]
fn a21_3_a_clients_heartbeat_naming_itself_deposes_nobody() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let mut w0 = linked(&keys, "w0", now);
    client_links(&keys, &mut w0, now);
    for epoch in [0, 1, 1_000_000_000_000, u64::MAX] {
        msg(&mut w0, now, "c", heartbeat("c", epoch));
        msg(&mut w0, now, "c", heartbeat("w2", epoch));
    }
    assert_eq!(w0.admin(), (Some(&peer("w0")), true), "the admin keeps the role");
    assert_eq!(w0.health_record().epoch, 0);
    assert!(!drain(&mut w0)
        .iter()
        .any(|a| matches!(a, Out::Send(Transmit { msg: MeshMessage::AdminVerify { .. }, .. }))));
}

#[test]
fn a21_4_a_third_partys_heartbeat_moves_no_role() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    for me in ["w0", "w1"] {
        let mut s = linked(&keys, me, now);
        for epoch in [0, 1, 1_000_000_000_000] {
            // The rogue names w2 (a worker that never claimed the role), and names this node.
            msg(&mut s, now, "r", heartbeat("w2", epoch));
            msg(&mut s, now, "r", heartbeat(me, epoch));
        }
        assert_eq!(s.admin(), (Some(&peer("w0")), true), "{me} keeps w0");
        assert_eq!(s.health_record().epoch, 0, "{me}: no epoch taken on a third party's word");
        let verifies = drain(&mut s)
            .into_iter()
            .filter(|a| matches!(a, Out::Send(Transmit { msg: MeshMessage::AdminVerify { .. }, .. })))
            .count();
        assert_eq!(verifies, 0, "{me} verified nobody on the rogue's word");
    }
}

#[test]
fn a21_5_a_rogue_claiming_the_role_with_a_huge_epoch_and_no_proof_takes_nothing() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    for me in ["w0", "w1"] {
        let mut s = linked(&keys, me, now);
        for epoch in [1, 1_000_000_000_000, crate::wire::MAX_EPOCH, u64::MAX] {
            msg(&mut s, now, "r", heartbeat("r", epoch));
            // A proof with forged votes (the rogue's key in others' names) and its own vote.
            let forged = vec![
                keys.vote("r", epoch, "r"),
                Vote { voter: peer("w1"), sig: keys.vote("r", epoch, "r").sig },
                Vote { voter: peer("w2"), sig: keys.vote("r", epoch, "r").sig },
            ];
            msg(&mut s, now, "r", MeshMessage::AdminProof { epoch, votes: forged });
        }
        assert_eq!(s.admin(), (Some(&peer("w0")), true), "{me} keeps w0");
        assert_eq!(s.health_record().epoch, 0, "{me}");
        assert!(s.counters().refused >= 4, "{me}: forged votes refused and counted: {:?}", s.counters());
        // Acks naming itself, unasked, are refused too.
        msg(&mut s, now, "r", MeshMessage::AdminVerifyAck { id: 1, admin: Some(peer("r")), epoch: 9, votes: vec![] });
        assert_eq!(s.admin(), (Some(&peer("w0")), true));
    }
}

#[test]
fn a21_5_a_genuine_majority_proof_at_a_higher_epoch_does_move_the_role() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let mut w0 = linked(&keys, "w0", now);
    // w1, voted for by w1, w2 and the rogue at epoch 1 (3 of 4 workers): it proves the role.
    let votes = vec![keys.vote("w1", 1, "w1"), keys.vote("w2", 1, "w1"), keys.vote("r", 1, "w1")];
    msg(&mut w0, now, "w1", MeshMessage::AdminProof { epoch: 1, votes });
    msg(&mut w0, now, "w1", heartbeat("w1", 1));
    assert_eq!(w0.admin().0, Some(&peer("w1")), "the old admin follows the proven one");
    assert!(drain(&mut w0).contains(&Out::Signaling(SignalingOp::Announce(crate::signaler::Announcement::Withdraw))));
}

#[test]
fn a21_5_a_rogue_with_the_lowest_priority_is_not_elected_by_acks_naming_itself() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let mut w1 = linked(&keys, "w1", now);
    // The admin is lost; w1 elects w1 (highest priority left), whatever the rogue says.
    for _ in 0..3 {
        msg(&mut w1, now, "r", heartbeat("r", 1_000_000_000_000));
    }
    w1.handle(now, Event::PeerLeft(peer("w0")));
    assert_eq!(w1.admin(), (Some(&peer("w1")), true));
    msg(&mut w1, now, "r", heartbeat("r", 1_000_000_000_000));
    assert_eq!(w1.admin(), (Some(&peer("w1")), true), "the rogue's unproven claim weighs as epoch 0");
}

#[test]
fn a21_allowlists_keep_out_members_whoever_introduces_them() {
    let keys = Keys::new(&NAMES);
    let now = Instant::now();
    let listed = |names: &[&str]| Some(names.iter().map(|n| keys.0[n].public_hex()).collect());
    let trust = Allowlist { workers: listed(&["w0", "w1", "w2"]), clients: listed(&["c"]) };
    let mut w1 = keys.state_trusting("w1", Role::Worker, 40, trust);
    // A compromised server lists the rogue as a worker, then says it joined.
    let members = vec![keys.member("w0", 50), keys.member("r", 1_000)];
    w1.handle(now, Event::Registered { members, admin: Some(peer("w0")) });
    w1.handle(now, Event::PeerJoined(keys.member("r", 1_000)));
    assert!(w1.room_state().get(&peer("r")).is_none(), "the rogue is not taken in");
    assert!(w1.room_state().get(&peer("w0")).is_some());
    let dialed = drain(&mut w1);
    assert!(
        !dialed.iter().any(|a| matches!(a, Out::Link(LinkOp::Dial { peer: p, .. }) if p == &peer("r"))),
        "nor dialed"
    );
    // Its offers are refused, and so are a client's whose key is not listed; a listed one passes.
    let session = SessionId { offerer: peer("r"), seq: 1 };
    let mut offer = Signal::new(session, SignalBody::Offer { sdp: "v=0".into() });
    offer.sig = Some(keys.0["r"].sign(&room(), &peer("r"), &peer("w1"), &offer));
    assert!(!w1.accepts_signal(&peer("r"), &offer, None, Some(&keys.0["r"].public_hex())));
    let mut by_c = Signal::new(SessionId { offerer: peer("c"), seq: 1 }, SignalBody::Offer { sdp: "v=0".into() });
    by_c.sig = Some(keys.0["c"].sign(&room(), &peer("c"), &peer("w1"), &by_c));
    assert!(w1.accepts_signal(&peer("c"), &by_c, None, Some(&keys.0["c"].public_hex())), "a listed client");
    let other = NodeKey::generate();
    let mut by_x = Signal::new(SessionId { offerer: peer("x"), seq: 1 }, SignalBody::Offer { sdp: "v=0".into() });
    by_x.sig = Some(other.sign(&room(), &peer("x"), &peer("w1"), &by_x));
    assert!(!w1.accepts_signal(&peer("x"), &by_x, None, Some(&other.public_hex())), "a client off the list");
    assert!(w1.counters().refused >= 4, "{:?}", w1.counters());
}
