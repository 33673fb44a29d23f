//! Who may say what (docs/BEHAVIOUR.md 25): discovery only from the admin followed, records only
//! from their owner, relayed signals of others only through workers; and a storm of random,
//! well-formed messages from a rogue client and a rogue worker changes nothing it may not.

use super::sim::{peer, Sim};
use super::{drain, offer, on_link, Out};
use crate::signal::{Signal, SignalBody};
use crate::signaler::Role;
use crate::state::{Event, LinkOp, MeshState, Transmit};
use crate::wire::MeshMessage;
use crate::{MemberInfo, RoomId, SessionId, WorkerRecord, WorkerStatus};
use std::time::{Duration, Instant};

fn state(me: &str, role: Role) -> MeshState {
    MeshState::new(super::config(me, role))
}

/// A record claiming to be newer than anything, for a worker about to leave.
fn forged() -> WorkerRecord {
    WorkerRecord { version: u64::MAX / 2, status: WorkerStatus::Leaving, ..Sim::record(0) }
}

/// Admin `w0`, linked to workers `w2`, `w3` and client `c`.
fn admin_linked(now: Instant) -> MeshState {
    let mut s = state("w0", Role::Worker);
    s.handle(now, Event::Registered { members: vec![], admin: None });
    for w in ["w2", "w3"] {
        s.handle(now, Event::PeerJoined(MemberInfo::new(peer(w), Sim::record(0))));
    }
    for p in ["w2", "w3", "c"] {
        let session = SessionId { offerer: peer(p), seq: 1 };
        s.handle(now, offer(peer(p), session.clone()));
        s.handle(now, Event::LinkOpened { peer: peer(p), session });
    }
    drain(&mut s);
    assert_eq!(s.linked_peers().len(), 3);
    s
}

/// Worker `w1` following admin `w0`, linked to it and to worker `w2`.
fn worker_linked(now: Instant) -> MeshState {
    let mut s = state("w1", Role::Worker);
    let members = ["w0", "w2"].iter().map(|n| MemberInfo::new(peer(n), Sim::record(0))).collect();
    s.handle(now, Event::Registered { members, admin: Some(peer("w0")) });
    for a in drain(&mut s) {
        if let Out::Link(LinkOp::Dial { peer, session, .. }) = a {
            s.handle(now, Event::LinkOpened { peer, session });
        }
    }
    drain(&mut s);
    assert_eq!(s.linked_peers().len(), 2);
    s
}

fn abort(offerer: &str) -> Signal {
    Signal::new(SessionId { offerer: peer(offerer), seq: 1 }, SignalBody::Abort { reason: "x".into() })
}

#[test]
fn b25_discovery_is_taken_only_from_the_admin_this_node_follows() {
    let now = Instant::now();
    let mut s = worker_linked(now);
    let before = s.room_state().get(&peer("w0")).cloned();
    let forged_member = MemberInfo::new(peer("w0"), forged());
    let newcomer = MemberInfo::new(peer("w9"), Sim::record(0));
    for msg in [
        MeshMessage::PeerJoined { member: forged_member.clone() },
        MeshMessage::PeerJoined { member: newcomer.clone() },
        MeshMessage::PeerList { admin: peer("w2"), peers: vec![forged_member.clone(), newcomer.clone()] },
        MeshMessage::PeerList { admin: peer("w0"), peers: vec![newcomer.clone()] }, // w2 speaking for w0
    ] {
        s.handle(now, on_link(&s, peer("w2"), msg));
    }
    assert_eq!(s.room_state().get(&peer("w0")).cloned(), before, "the admin's record is untouched");
    assert!(s.room_state().get(&peer("w9")).is_none(), "no worker made up by a non-admin");
    assert!(!drain(&mut s).iter().any(|a| matches!(a, Out::Link(LinkOp::Dial { .. }))), "nothing dialed on its word");
    assert_eq!(s.counters().refused, 4);
    // The admin itself may.
    s.handle(now, on_link(&s, peer("w0"), MeshMessage::PeerJoined { member: newcomer }));
    assert!(s.room_state().get(&peer("w9")).is_some());
    assert_eq!(s.counters().refused, 4);
}

#[test]
fn b25_records_and_goodbyes_only_from_their_owner() {
    let now = Instant::now();
    let mut s = worker_linked(now);
    let before = s.room_state().get(&peer("w0")).cloned();
    s.handle(now, on_link(&s, peer("w2"), MeshMessage::Record { peer: peer("w0"), record: forged() }));
    s.handle(now, on_link(&s, peer("w2"), MeshMessage::PeerLeft { peer: peer("w0") }));
    assert_eq!(s.room_state().get(&peer("w0")).cloned(), before);
    assert!(s.is_linked(&peer("w0")), "w0 is still linked");
    assert_eq!(s.counters().refused, 2);
}

#[test]
fn b25_a_client_cannot_hand_over_a_signal_in_someone_elses_name() {
    let now = Instant::now();
    let mut s = admin_linked(now);
    let relay = |from: &str| MeshMessage::Relay { id: 7, to: peer("w0"), from: peer(from), signal: abort("w2") };
    s.handle(now, on_link(&s, peer("c"), relay("w2")));
    let actions = drain(&mut s);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Out::Link(LinkOp::Close { reason, .. }) if reason == "peer aborted the session")),
        "{actions:?}"
    );
    assert_eq!(s.counters().refused, 1);
    assert!(s.is_linked(&peer("w2")));
    // A worker's own signal over its own link is delivered.
    s.handle(now, on_link(&s, peer("w2"), relay("w2")));
    assert!(drain(&mut s).iter().any(|a| matches!(a, Out::Link(LinkOp::Close { peer: p, reason, .. }) if *p == peer("w2") && reason == "peer aborted the session")));
}

#[test]
fn b25_a_registry_answer_counts_only_from_the_peer_asked() {
    let now = Instant::now();
    let mut s = worker_linked(now);
    let answer = MeshMessage::RegistryAnswer {
        id: 1,
        workers: vec![],
        total_count: 0,
        matched_count: 0,
        links: Default::default(),
    };
    s.handle(now, on_link(&s, peer("w2"), answer));
    assert!(drain(&mut s).iter().all(|a| !matches!(a, Out::Emit(crate::MeshEvent::Registry { .. }))));
    assert_eq!(s.counters().refused, 1);
}

/// xorshift64: the storm below is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[(self.next() % of.len() as u64) as usize]
    }
}

/// A random, well-formed message as `sender` could send it.
fn random_message(r: &mut Rng, sender: &str) -> MeshMessage {
    const NAMES: [&str; 7] = ["w0", "w1", "w2", "w3", "c", "zed", "ghost"];
    let name = |r: &mut Rng| peer(r.pick(&NAMES));
    let record = |r: &mut Rng| WorkerRecord {
        version: r.next() % 1000,
        status: [WorkerStatus::Available, WorkerStatus::Busy, WorkerStatus::Leaving][(r.next() % 3) as usize],
        priority: r.next() % 100,
        ..Sim::record(0)
    };
    let member = |r: &mut Rng| MemberInfo::new(name(r), record(r));
    let signal = |r: &mut Rng| {
        Signal::new(SessionId { offerer: name(r), seq: r.next() % 4 }, SignalBody::Abort { reason: "storm".into() })
    };
    match r.next() % 12 {
        0 => MeshMessage::PeerList { admin: name(r), peers: vec![member(r), member(r)] },
        1 => MeshMessage::PeerJoined { member: member(r) },
        2 => MeshMessage::PeerLeft { peer: name(r) },
        // Its own record too, but at priority 0: a member that wins the election by its priority
        // is admin by the rule (what an admin may then say is the signatures' business).
        3 => MeshMessage::Record { peer: name(r), record: WorkerRecord { priority: 0, ..record(r) } },
        // A worker relays in its own name (a forged name needs the signature of issue 13 to refuse).
        4 if sender == "zed" => MeshMessage::Relay { id: r.next(), to: name(r), from: peer("zed"), signal: signal(r) },
        4 => MeshMessage::Relay { id: r.next(), to: name(r), from: name(r), signal: signal(r) },
        5 => MeshMessage::RelayAck { id: r.next() % 8 },
        // Claims of other admins, up to a higher epoch (a member claiming the role for itself is
        // the election's business, not this test's).
        6 => {
            let admin = Some(name(r)).filter(|a| a.as_str() != sender);
            MeshMessage::Heartbeat { seq: r.next(), admin, epoch: r.next() % 3, admin_linked: true, links: None }
        }
        7 => MeshMessage::AdminVerify { id: r.next() % 8, epoch: r.next() % 3, vote: None },
        8 => MeshMessage::AdminVerifyAck { id: r.next() % 8, admin: Some(name(r)), epoch: r.next() % 3, votes: vec![] },
        9 => MeshMessage::RegistryQuery { id: r.next() % 8, filter: Default::default() },
        10 => MeshMessage::RegistryAnswer {
            id: r.next() % 8,
            workers: vec![member(r)],
            total_count: 1,
            matched_count: 1,
            links: Default::default(),
        },
        _ => MeshMessage::RelayAck { id: r.next() },
    }
}

#[test]
fn b25_a_storm_of_random_messages_from_a_rogue_client_and_worker_changes_nothing_they_may_not() {
    let mut sim = Sim::new();
    sim.form(&["w0", "w1", "w2", "w3"]);
    sim.join_as("c", Role::Client, 0);
    sim.settle();
    sim.join("zed");
    sim.settle();
    let honest = ["w0", "w1", "w2", "w3"];
    let records = |sim: &Sim| -> Vec<Option<WorkerRecord>> {
        honest
            .iter()
            .flat_map(|at| honest.iter().map(move |of| (at, of)))
            .map(|(at, of)| sim.node(at).room_state().get(&peer(of)).cloned())
            .collect()
    };
    let before = records(&sim);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let (sender, targets): (&str, &[&str]) = if r.next() % 2 == 0 { ("c", &["w0"]) } else { ("zed", &honest) };
        let to = r.pick(targets);
        let msg = random_message(&mut r, sender);
        sim.deliver_msg(to, sender, msg);
        sim.settle();
        if r.next() % 50 == 0 {
            sim.advance(Duration::from_millis(100));
        }
    }
    sim.advance(Duration::from_secs(10));
    assert_eq!(sim.max_links_per_pair, 1, "never two links for one pair");
    assert_eq!(records(&sim), before, "no honest worker's record changed anywhere");
    for name in honest {
        let n = sim.node(name);
        for other in honest.iter().filter(|o| **o != name) {
            assert!(n.is_linked(&peer(other)), "{name} still linked to {other}");
        }
        assert_eq!(n.admin(), (Some(&peer("w0")), true), "{name} follows w0, verified");
    }
    let refused: u64 = honest.iter().map(|n| sim.node(n).counters().refused).sum();
    assert!(refused > 500, "the storm was refused message by message: {refused}");
}

#[test]
fn b18_the_admin_hands_the_role_only_to_a_rival_that_claims_it_itself() {
    let mut sim = Sim::new();
    sim.form(&["w0", "w1", "w2"]);
    // w2 says w1 holds the role at a later epoch; w1 says nothing of the kind.
    let claim = MeshMessage::Heartbeat { seq: 1, admin: Some(peer("w1")), epoch: 5, admin_linked: true, links: None };
    sim.deliver_msg("w0", "w2", claim);
    sim.settle();
    sim.advance(Duration::from_secs(5));
    for name in ["w0", "w1", "w2"] {
        assert_eq!(sim.node(name).admin(), (Some(&peer("w0")), true), "{name}");
    }
}

#[test]
fn b25_a_relayed_signal_must_carry_its_origins_signature() {
    use crate::identity::NodeKey;
    let now = Instant::now();
    let (w2_key, w3_key) = (NodeKey::generate(), NodeKey::generate());
    // Admin w0 knows w2's and w3's keys from the rendezvous; both are linked workers.
    let mut s = state("w0", Role::Worker);
    s.handle(now, Event::Registered { members: vec![], admin: None });
    let room = RoomId::new("r").unwrap();
    for (w, key) in [("w2", &w2_key), ("w3", &w3_key)] {
        let mut record = Sim::record(0);
        record.sig = Some(key.sign_record(&room, &peer(w), &record));
        let member = MemberInfo { key: Some(key.public_hex()), ..MemberInfo::new(peer(w), record) };
        s.handle(now, Event::PeerJoined(member));
        let session = SessionId { offerer: peer(w), seq: 1 };
        let mut offer = Signal::new(session.clone(), SignalBody::Offer { sdp: "v=0".into() });
        offer.sig = Some(key.sign(&room, &peer(w), &peer("w0"), &offer));
        s.handle(now, Event::Signal { from: peer(w), signal: offer, key: None });
        s.handle(now, Event::LinkOpened { peer: peer(w), session });
    }
    drain(&mut s);
    assert_eq!(s.linked_peers().len(), 2, "the signed offers were taken");
    let relay = |signal: Signal| MeshMessage::Relay { id: 1, to: peer("w0"), from: peer("w2"), signal };
    let delivered = |s: &mut MeshState| {
        drain(s)
            .iter()
            .any(|a| matches!(a, Out::Link(LinkOp::Close { reason, .. }) if reason == "peer aborted the session"))
    };
    // w3 hands over an abort "from w2": unsigned, signed by w3 itself, or w2's signature on
    // another body. None is delivered.
    let unsigned = abort("w2");
    let mut by_w3 = abort("w2");
    by_w3.sig = Some(w3_key.sign(&room, &peer("w2"), &peer("w0"), &by_w3));
    let mut altered = Signal::new(SessionId { offerer: peer("w2"), seq: 1 }, SignalBody::Offer { sdp: "v=0".into() });
    altered.sig = Some(w2_key.sign(&room, &peer("w2"), &peer("w0"), &altered));
    altered.body = SignalBody::Offer { sdp: "v=0 with the relay's own fingerprint".into() };
    for forged in [unsigned, by_w3, altered] {
        s.handle(now, on_link(&s, peer("w3"), relay(forged)));
        assert!(!delivered(&mut s));
    }
    assert_eq!(s.counters().refused, 3);
    assert!(s.is_linked(&peer("w2")), "the link w3 tried to abort is up");
    // The same check on the rendezvous path: a signal from w2 must verify against w2's key.
    assert!(!s.accepts_signal(&peer("w2"), &abort("w2"), None, None), "unsigned, though w2's key is known");
    // w2's own signature, relayed by w3 untouched: delivered.
    let mut genuine = abort("w2");
    genuine.sig = Some(w2_key.sign(&room, &peer("w2"), &peer("w0"), &genuine));
    s.handle(now, on_link(&s, peer("w3"), relay(genuine)));
    assert!(delivered(&mut s));
}

#[test]
fn b25_a_record_counts_only_as_its_owner_signed_it_even_from_the_admin() {
    use crate::identity::NodeKey;
    let now = Instant::now();
    let room = RoomId::new("r").unwrap();
    let (w0_key, w2_key) = (NodeKey::generate(), NodeKey::generate());
    let signed = |key: &NodeKey, who: &str, record: WorkerRecord| {
        let mut record = record;
        record.sig = Some(key.sign_record(&room, &peer(who), &record));
        MemberInfo { key: Some(key.public_hex()), ..MemberInfo::new(peer(who), record) }
    };
    // Worker w1 follows admin w0 and knows w2, each with its key and signed record.
    let mut s = state("w1", Role::Worker);
    let (w0, w2) = (signed(&w0_key, "w0", Sim::record(0)), signed(&w2_key, "w2", Sim::record(0)));
    s.handle(now, Event::Registered { members: vec![w0, w2.clone()], admin: Some(peer("w0")) });
    for a in drain(&mut s) {
        if let Out::Link(LinkOp::Dial { peer, session, .. }) = a {
            s.handle(now, Event::LinkOpened { peer, session });
        }
    }
    // w0 answers the verification: w1's queries go to a verified admin.
    for a in drain(&mut s) {
        if let Out::Send(Transmit { msg: MeshMessage::AdminVerify { id, .. }, .. }) = a {
            let ack = MeshMessage::AdminVerifyAck { id, admin: Some(peer("w0")), epoch: 0, votes: vec![] };
            s.handle(now, on_link(&s, peer("w0"), ack));
        }
    }
    assert_eq!(s.admin(), (Some(&peer("w0")), true));
    drain(&mut s);
    let genuine = s.room_state().get(&peer("w2")).cloned();
    // The admin's peer list and registry answer carry w2's record altered (its signature kept).
    let mut altered = w2.clone();
    altered.record.version = 99;
    altered.record.status = WorkerStatus::Leaving;
    s.handle(now, on_link(&s, peer("w0"), MeshMessage::PeerList { admin: peer("w0"), peers: vec![altered.clone()] }));
    assert_eq!(s.room_state().get(&peer("w2")).cloned(), genuine, "the record stays as w2 signed it");
    s.handle(now, Event::QueryRegistry { id: 1, filter: Default::default(), deadline: now + Duration::from_secs(5) });
    drain(&mut s);
    let answer = MeshMessage::RegistryAnswer {
        id: 1,
        workers: vec![altered],
        total_count: 1,
        matched_count: 1,
        links: Default::default(),
    };
    s.handle(now, on_link(&s, peer("w0"), answer));
    let page = drain(&mut s).into_iter().find_map(|a| match a {
        Out::Emit(crate::MeshEvent::Registry { page, .. }) => Some(page),
        _ => None,
    });
    assert_eq!(page.map(|p| p.workers.len()), Some(0), "the altered record is left out of the answer");
    assert_eq!(s.counters().refused, 2);
    // A newer record w2 signed itself is taken, whoever carries it.
    let newer = signed(&w2_key, "w2", WorkerRecord { version: 2, status: WorkerStatus::Busy, ..Sim::record(0) });
    s.handle(now, on_link(&s, peer("w0"), MeshMessage::PeerList { admin: peer("w0"), peers: vec![newer] }));
    assert_eq!(s.room_state().get(&peer("w2")).map(|r| r.status), Some(WorkerStatus::Busy));
}
