//! One test (at least) per behaviour of docs/BEHAVIOUR.md 5–25, named after it.

use super::sim::{peer, Sim, CONNECT_TIMEOUT};
use super::{drain, offer, on_link, sent, signal, Out};
use crate::signal::SignalBody;
use crate::signaler::Role;
use crate::state::timers::retry_base;
use crate::state::{Event, LinkOp, MeshEvent, MeshState, StateConfig, Timing, Transmit};
use crate::wire::{MeshMessage, RelayErrorReason};
use crate::SessionId;
use std::time::Duration;

const NAMES: [&str; 10] = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];

fn formed(n: usize) -> Sim {
    let mut sim = Sim::new();
    sim.form(&NAMES[..n]);
    sim
}

#[test]
fn b05_first_worker_becomes_admin_and_newcomer_dials_admin_first() {
    let mut sim = Sim::new();
    sim.form(&["w0"]);
    assert!(sim.node("w0").is_admin());
    sim.join("w1");
    sim.settle();
    assert_eq!(sim.dials.first().map(|(_, a, b)| (a.as_str(), b.as_str())), Some(("w1", "w0")));
}

#[test]
fn b06_admin_sends_peer_list_as_soon_as_the_link_opens() {
    let mut sim = formed(3);
    let start = sim.now;
    sim.join("w3");
    sim.settle();
    // Same virtual instant: the peer list went out in the same step the admin link opened,
    // so the newcomer is already dialing (and linked to) the others without any time passing.
    assert_eq!(sim.now, start);
    assert!(sim.is_full_mesh());
}

#[test]
fn b07_newcomer_dials_every_worker_on_the_peer_list() {
    let mut sim = formed(4);
    let before = sim.dials.len();
    sim.join("w4");
    sim.settle();
    let mut dialed: Vec<&str> = sim.dials[before..]
        .iter()
        .map(|(_, a, b)| {
            assert_eq!(a.as_str(), "w4", "only the newcomer dials");
            b.as_str()
        })
        .collect();
    dialed.sort();
    assert_eq!(dialed, ["w0", "w1", "w2", "w3"]);
}

#[test]
fn b07_newcomer_dials_every_worker_the_rendezvous_names_at_once() {
    let cfg = super::config("w4", Role::Worker);
    let mut s = MeshState::new(cfg);
    let members = NAMES[..4].iter().map(|n| crate::MemberInfo::new(peer(n), Sim::record(0))).collect();
    s.handle(std::time::Instant::now(), Event::Registered { members, admin: Some(peer("w0")) });
    // No link is open yet, and no peer list has come: the rendezvous' list is enough.
    let dialed: Vec<String> = drain(&mut s)
        .into_iter()
        .filter_map(|a| match a {
            Out::Link(LinkOp::Dial { peer, .. }) => Some(peer.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(dialed, ["w0", "w1", "w2", "w3"], "the admin first, then everyone else, in one step");
}

#[test]
fn b07_an_offer_the_rendezvous_did_not_get_answered_is_made_again_by_relay() {
    let timing = Timing::default();
    let cfg = StateConfig { timing: timing.clone(), ..super::config("w4", Role::Worker) };
    let mut s = MeshState::new(cfg);
    let now = std::time::Instant::now();
    let members = NAMES[..3].iter().map(|n| crate::MemberInfo::new(peer(n), Sim::record(0))).collect();
    s.handle(now, Event::Registered { members, admin: Some(peer("w0")) });
    let dials: Vec<(String, SessionId)> = drain(&mut s)
        .into_iter()
        .filter_map(|a| match a {
            Out::Link(LinkOp::Dial { peer, session, .. }) => Some((peer.to_string(), session)),
            _ => None,
        })
        .collect();
    assert_eq!(s.path_order(&peer("w1")), crate::PathOrder::RendezvousFirst, "introduced, never linked");
    // w0 and w1 answer; w2 (its server connection cut, say) never hears the offer.
    for (name, session) in &dials[..2] {
        s.handle(now, signal(peer(name), session.clone(), SignalBody::Answer { sdp: "v=0".into() }));
    }
    s.handle(now + timing.answer_wait - Duration::from_millis(1), Event::Tick);
    assert!(drain(&mut s).into_iter().all(|a| !matches!(a, Out::Link(LinkOp::Dial { .. }))), "not yet");
    s.handle(now + timing.answer_wait, Event::Tick);
    let actions = drain(&mut s);
    let redialed: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Out::Link(LinkOp::Dial { peer, .. }) => Some(peer.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(redialed, ["w2"], "only the unanswered offer is made again, without waiting out a backoff");
    assert!(actions.iter().any(|a| matches!(a, Out::Link(LinkOp::Close { session, .. }) if *session == dials[2].1)));
    assert_eq!(s.path_order(&peer("w2")), crate::PathOrder::Configured, "this time by relay first");
    assert_eq!(s.path_order(&peer("w1")), crate::PathOrder::RendezvousFirst);
}

#[test]
fn b08_workers_starting_together_dial_each_pair_once_from_the_later_one() {
    let mut sim = Sim::new();
    for n in &NAMES {
        sim.join(n); // every process starts at once; the rendezvous orders the registrations
    }
    sim.settle();
    assert!(sim.is_full_mesh());
    assert_eq!(sim.dials.len(), 45, "one attempt per pair: no crossing offers, nothing to reject");
    for (_, from, to) in &sim.dials {
        assert!(from > to, "{from} dialed {to}: the later registrant dials");
    }
}

#[test]
fn b08_crossing_offers_resolve_to_one_link_lower_id_wins() {
    let cfg = |me: &str| super::config(me, Role::Worker);
    let now = std::time::Instant::now();
    for (me, other, mine_wins) in [("a", "b", true), ("b", "a", false)] {
        let mut s = MeshState::new(cfg(me));
        s.handle(now, Event::Registered { members: vec![], admin: None });
        s.handle(now, Event::PeerJoined(crate::MemberInfo::new(peer(other), Sim::record(0))));
        s.handle(now + Timing::default().offer_wait, Event::Tick); // offer wait over: we dial
        let mine = drain(&mut s)
            .into_iter()
            .find_map(|a| match a {
                Out::Link(LinkOp::Dial { session, .. }) => Some(session),
                _ => None,
            })
            .expect("dials after offer_wait");
        let theirs = SessionId { offerer: peer(other), seq: 1 };
        s.handle(now, offer(peer(other), theirs.clone()));
        let actions = drain(&mut s);
        if mine_wins {
            assert!(actions
                .iter()
                .any(|a| matches!(a, Out::Link(LinkOp::Reject { session, .. }) if *session == theirs)));
            assert!(!actions.iter().any(|a| matches!(a, Out::Link(LinkOp::Accept { .. }))));
        } else {
            assert!(actions.iter().any(|a| matches!(a, Out::Link(LinkOp::Close { session, .. }) if *session == mine)));
            assert!(actions
                .iter()
                .any(|a| matches!(a, Out::Link(LinkOp::Accept { session, .. }) if *session == theirs)));
        }
    }
}

#[test]
fn b08_simultaneous_joiners_never_hold_two_links_per_pair() {
    let mut sim = Sim::new();
    sim.form(&["w0"]);
    for n in &NAMES[1..] {
        sim.join(n); // all join before anything settles
    }
    sim.settle();
    sim.advance(Duration::from_secs(10));
    assert!(sim.is_full_mesh());
    assert_eq!(sim.link_count(), 45);
    assert_eq!(sim.max_links_per_pair, 1);
}

#[test]
fn b09_worker_joining_during_formation_links_to_everyone() {
    let mut sim = formed(3);
    sim.join("w3");
    sim.join("w4"); // w4 registers while w3 is still forming its links
    sim.settle();
    sim.advance(Duration::from_secs(5));
    assert!(sim.is_full_mesh());
    assert_eq!(sim.link_count(), 10);
}

#[test]
fn b10_full_mesh_3_5_10_workers() {
    for (n, links) in [(3, 3), (5, 10), (10, 45)] {
        let sim = formed(n);
        assert!(sim.is_full_mesh(), "{n} workers");
        assert_eq!(sim.link_count(), links);
        assert_eq!(sim.max_links_per_pair, 1, "no duplicate link ever");
        for node in sim.nodes.values() {
            assert_eq!(node.health_record().links_up, n - 1);
        }
    }
}

#[test]
fn b15_admin_departure_keeps_survivor_links_with_zero_new_attempts() {
    let mut sim = formed(5);
    let dials_before = sim.dials.len();
    let survivors_opened = |sim: &Sim| -> u64 {
        sim.nodes.iter().filter(|(p, _)| p.as_str() != "w0").map(|(_, n)| n.counters().links_opened).sum()
    };
    let opened_before = survivors_opened(&sim);
    sim.leave("w0");
    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.dials.len(), dials_before, "zero new link attempts between survivors");
    assert_eq!(survivors_opened(&sim), opened_before, "no survivor opened a link");
    assert_eq!(sim.link_count(), 6);
    assert!(sim.is_full_mesh());
}

#[test]
fn b16_new_admin_is_elected_and_verified_by_every_survivor() {
    let mut sim = formed(5);
    sim.leave("w0");
    sim.advance(Duration::from_millis(100));
    for node in sim.nodes.values() {
        assert_eq!(node.admin(), (Some(&peer("w1")), true), "{}", node.me());
    }
    assert_eq!(sim.rendezvous_admin, Some(peer("w1")), "new admin announced itself");
}

#[test]
fn b14_election_prefers_highest_gpu_memory() {
    let mut sim = Sim::new();
    for (n, gpu) in [("w0", 8), ("w1", 16), ("w2", 48), ("w3", 24)] {
        sim.join_as(n, Role::Worker, gpu);
        sim.settle();
    }
    sim.leave("w0");
    sim.advance(Duration::from_millis(100));
    for node in sim.nodes.values() {
        assert_eq!(node.admin(), (Some(&peer("w2")), true));
    }
}

#[test]
fn b16_elected_admin_leaving_during_election_makes_last_worker_elect_itself() {
    let mut sim = formed(3);
    sim.crash_silently("w1"); // the winner-to-be is gone but nobody knows yet
    sim.leave("w0");
    let t = sim.now;
    sim.advance(Duration::from_millis(1900));
    assert_eq!(sim.node("w2").admin(), (Some(&peer("w1")), false), "still waiting for the ack");
    sim.advance(Duration::from_millis(200));
    assert_eq!(sim.node("w2").admin(), (Some(&peer("w2")), true), "verify timed out after 2 s");
    assert!(sim
        .events_of("w2", t)
        .iter()
        .any(|e| matches!(e, MeshEvent::AdminChanged { admin: Some(a), verified: true } if a.as_str() == "w2")));
}

#[test]
fn b17_new_admin_takes_over_discovery() {
    let mut sim = formed(4);
    sim.leave("w0");
    sim.advance(Duration::from_millis(100));
    sim.join("w9");
    sim.settle();
    let first_dial = sim.dials.iter().find(|(_, a, _)| a.as_str() == "w9").map(|d| d.2.as_str());
    assert_eq!(first_dial, Some("w1"), "the newcomer reaches the new admin first");
    assert!(sim.is_full_mesh());
    assert_eq!(sim.node("w9").admin(), (Some(&peer("w1")), true));
    assert_eq!(sim.link_count(), 6);
}

#[test]
fn b18_two_admins_resolve_to_one() {
    let mut sim = formed(4);
    // Split {w0,w1} from {w2,w3}: the halves lose each other by heartbeat silence.
    for (a, b) in [("w0", "w2"), ("w0", "w3"), ("w1", "w2"), ("w1", "w3")] {
        sim.cut(a, b);
    }
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.node("w2").admin().0, Some(&peer("w2")), "other half elected its own admin");
    sim.heal();
    sim.advance(Duration::from_secs(70)); // retries bring the links back; heartbeats settle admins
    assert!(sim.is_full_mesh());
    for node in sim.nodes.values() {
        assert_eq!(node.admin(), (Some(&peer("w0")), true), "{}", node.me());
    }
}

#[test]
fn b19_silent_peer_is_declared_lost_after_the_heartbeat_timeout() {
    let mut sim = formed(3);
    sim.cut("w1", "w2");
    let t = sim.now;
    sim.advance(Duration::from_millis(2900));
    assert!(sim.node("w1").is_linked(&peer("w2")), "not before the timeout");
    sim.advance(Duration::from_millis(1200));
    assert!(!sim.node("w1").is_linked(&peer("w2")));
    assert!(sim
        .events_of("w1", t)
        .iter()
        .any(|e| matches!(e, MeshEvent::LinkDown { reason, .. } if reason == "heartbeat timeout")));
}

#[test]
fn b20_partition_flag_is_set_before_the_first_health_record() {
    let mut sim = formed(5);
    for other in ["w0", "w1", "w2", "w3"] {
        sim.cut("w4", other);
    }
    let t = sim.now;
    sim.advance(Duration::from_secs(5));
    assert!(sim.node("w4").is_partitioned());
    let events = sim.events_of("w4", t);
    let detected = events.iter().position(|e| *e == MeshEvent::PartitionDetected).expect("detected");
    let first_health = events.iter().skip(detected).find_map(|e| match e {
        MeshEvent::Health(h) => Some(h),
        _ => None,
    });
    assert_eq!(first_health.map(|h| h.status()), Some("PARTITIONED"));
    assert!(!events[..detected].iter().any(|e| matches!(e, MeshEvent::Health(h) if h.partitioned)));
    // The majority side is not partitioned.
    assert!(!sim.node("w0").is_partitioned());
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(!sim.node("w4").is_partitioned());
    assert!(sim.events_of("w4", t).contains(&MeshEvent::PartitionHealed));
    assert_eq!(sim.node("w4").health_record().status(), "Healthy");
}

#[test]
fn b20_a_minority_that_elects_its_own_admin_still_reports_the_partition() {
    let mut sim = formed(5);
    for a in ["w0", "w1", "w2"] {
        for b in ["w3", "w4"] {
            sim.cut(a, b);
        }
    }
    sim.advance(Duration::from_secs(8));
    for minority in ["w3", "w4"] {
        let node = sim.node(minority);
        assert!(node.is_partitioned(), "{minority} reaches 1 of 4 workers and lost the admin w0");
        assert_eq!(node.health_record().status(), "PARTITIONED");
    }
    assert!(!sim.node("w1").is_partitioned(), "the majority side is healthy");
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(!sim.node("w4").is_partitioned(), "healthy again once connectivity returns");
}

#[test]
fn b15_a_leaving_worker_addresses_its_goodbyes_to_links_that_still_resolve() {
    let mut sim = formed(3);
    let now = sim.now;
    let node = sim.nodes.get_mut(&peer("w0")).expect("w0");
    node.handle(now, Event::Leave);
    let actions = drain(node);
    let goodbyes: Vec<&crate::PeerId> = actions
        .iter()
        .filter_map(|a| match a {
            Out::Send(Transmit { to, msg: crate::MeshMessage::PeerLeft { .. }, .. }) => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(goodbyes.len(), 2, "one goodbye per link");
    // The driver carries actions out after `handle` returns and finds each link by the peer.
    for to in goodbyes {
        assert!(node.link_session(to).is_some(), "the goodbye to {to} has no link to travel on");
    }
}

#[test]
fn b21_retry_backoff_doubles_from_1s_to_32s_with_bounded_jitter() {
    let t = Timing::default();
    let bases: Vec<u64> = (0..8).map(|a| retry_base(t.retry_initial, t.retry_max, a).as_secs()).collect();
    assert_eq!(bases, [1, 2, 4, 8, 16, 32, 32, 32]);
    // A peer that stays unreachable: each scheduled delay lies in [0.8·base, base].
    let mut sim = formed(2);
    sim.cut("w0", "w1");
    let t0 = sim.now;
    sim.advance(Duration::from_secs(200));
    let delays: Vec<(u32, Duration)> = sim
        .events_of("w1", t0)
        .into_iter()
        .filter_map(|e| match e {
            MeshEvent::RetryScheduled { attempt, delay, .. } => Some((attempt, delay)),
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 6, "{delays:?}");
    for (attempt, delay) in &delays {
        let base = retry_base(t.retry_initial, t.retry_max, *attempt);
        assert!(*delay <= base && *delay >= base.mul_f64(0.8), "attempt {attempt}: {delay:?}");
    }
    assert!(delays.windows(2).all(|w| w[1].0 == w[0].0 + 1), "one tracked retry per peer");
}

#[test]
fn b21_retry_is_cancelled_when_the_link_comes_back_or_the_peer_leaves() {
    let mut sim = formed(3);
    sim.cut("w1", "w2");
    sim.advance(Duration::from_secs(5));
    sim.heal();
    sim.advance(Duration::from_secs(10));
    assert!(sim.node("w1").is_linked(&peer("w2")));
    let h = sim.node("w1").health_record();
    assert!(h.peers.iter().all(|p| p.state == crate::LinkStatus::Up && p.retry_attempt == 0), "{h:?}");
    // Now the peer leaves while a retry is pending: the retry disappears with it.
    sim.cut("w1", "w2");
    sim.advance(Duration::from_secs(5));
    sim.leave("w2");
    let dials = sim.dials.len();
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.dials.len(), dials, "no retry after the peer left");
    assert!(sim.node("w1").health_record().peers.iter().all(|p| p.peer.as_str() != "w2"));
}

#[test]
fn b21_failed_attempts_keep_backing_off_instead_of_hammering() {
    let mut sim = formed(2);
    sim.cut("w0", "w1");
    sim.advance(Duration::from_secs(60));
    let w1_dials = sim.dials.iter().filter(|(_, a, _)| a.as_str() == "w1").count();
    // 1+2+4+8+16+32 s with 1.5 s connect timeouts fits at most ~6 attempts in a minute.
    assert!(w1_dials <= 7, "{w1_dials} dials in 60 s");
    let _ = CONNECT_TIMEOUT;
}

#[test]
fn b22_health_record_shows_role_admin_links_and_per_peer_state() {
    let sim = formed(3);
    let h = sim.node("w0").health_record();
    assert_eq!(
        (h.role.as_str(), h.admin.as_ref().map(|a| a.as_str()), h.links_up, h.links_expected),
        ("admin", Some("w0"), 2, 2)
    );
    assert_eq!(h.status(), "Healthy");
    assert_eq!(sim.node("w2").health_record().role, crate::NodeRole::Worker);
    assert_eq!(h.peers.len(), 2);
}

#[test]
fn b23_client_links_to_admin_only_and_gets_the_registry() {
    let mut sim = formed(3);
    sim.join_as("c0", Role::Client, 0);
    sim.settle();
    assert!(sim.is_full_mesh());
    assert_eq!(sim.node("c0").linked_peers(), vec![peer("w0")]);
    let page = sim.query("c0", crate::RegistryFilter::default()).expect("registry answer");
    let names: Vec<String> = page.workers.iter().map(|m| m.peer.to_string()).collect();
    assert_eq!(names, ["w0", "w1", "w2"]);
    assert_eq!((page.total_count, page.matched_count), (3, 3));
}

#[test]
fn b25_relay_stamps_sender_and_rejects_spoofed_from() {
    let mut sim = formed(3);
    let now = sim.now;
    let signal =
        crate::Signal::new(SessionId { offerer: peer("w1"), seq: 5 }, crate::SignalBody::Abort { reason: "x".into() });
    let admin = sim.nodes.get_mut(&peer("w0")).unwrap();
    // w1 hands admin w0 envelope `id` for `to`, claiming to come from `origin`.
    let mut envelope = |id: u64, to: &str, origin: &str| {
        let msg = MeshMessage::Relay { id, to: peer(to), from: peer(origin), signal: signal.clone() };
        admin.handle(now, on_link(admin, peer("w1"), msg));
        drain(admin)
    };
    // Honest envelope from w1 for w2: forwarded and acknowledged.
    let acts = envelope(1, "w2", "w1");
    let forwarded = MeshMessage::Relay { id: 1, to: peer("w2"), from: peer("w1"), signal: signal.clone() };
    assert!(sent(&acts).contains(&(peer("w2"), forwarded)));
    assert!(sent(&acts).contains(&(peer("w1"), MeshMessage::RelayAck { id: 1 })));
    // Spoofed: w1 claims to be w9. Then an unknown target. Each answered with one error only.
    for (id, to, origin, reason) in
        [(2, "w2", "w9", RelayErrorReason::SpoofedSender), (3, "nobody", "w1", RelayErrorReason::NotLinked)]
    {
        let acts = envelope(id, to, origin);
        assert_eq!(acts.len(), 1);
        assert_eq!(sent(&acts), vec![(peer("w1"), MeshMessage::RelayError { id, reason })]);
    }
}

#[test]
fn b25_messages_cannot_speak_for_another_peer() {
    let mut sim = formed(3);
    let now = sim.now;
    let w0 = sim.nodes.get_mut(&peer("w0")).unwrap();
    let mut forged = Sim::record(999);
    forged.version = 50;
    w0.handle(now, on_link(w0, peer("w1"), MeshMessage::Record { peer: peer("w2"), record: forged }));
    w0.handle(now, on_link(w0, peer("w1"), MeshMessage::PeerLeft { peer: peer("w2") }));
    assert_eq!(w0.room_state().get(&peer("w2")).unwrap().priority, 0);
    assert!(w0.is_linked(&peer("w2")));
    // A peer without a link cannot talk at all.
    w0.handle(now, on_link(w0, peer("stranger"), MeshMessage::PeerLeft { peer: peer("stranger") }));
    assert!(drain(w0).into_iter().all(|a| !matches!(a, Out::Send(Transmit { .. }))));
}

#[test]
fn b25_an_envelope_is_answered_only_by_its_relay_and_fails_when_its_link_closes() {
    use crate::signaler::RelayOutcome;
    let mut sim = formed(3);
    let now = sim.now;
    let w1 = sim.nodes.get_mut(&peer("w1")).unwrap();
    let signal =
        crate::Signal::new(SessionId { offerer: peer("w1"), seq: 9 }, crate::SignalBody::Abort { reason: "x".into() });
    let relay = |id| Event::Relay { id, via: peer("w0"), to: peer("w2"), signal: signal.clone() };
    let answered = |outs: &[Out]| -> Vec<(u64, RelayOutcome)> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Signaling(crate::state::SignalingOp::RelayAnswered { id, outcome }) => {
                    Some((*id, outcome.clone()))
                }
                _ => None,
            })
            .collect()
    };
    // Sent on the link to w0; answered by w0's ack, not by w2's.
    w1.handle(now, relay(1));
    let outs = drain(w1);
    assert!(sent(&outs).iter().any(|(to, m)| to == &peer("w0") && matches!(m, MeshMessage::Relay { id: 1, .. })));
    w1.handle(now, on_link(w1, peer("w2"), MeshMessage::RelayAck { id: 1 }));
    assert!(answered(&drain(w1)).is_empty(), "w2 is not the relay of envelope 1");
    assert_eq!(w1.counters().refused, 1);
    w1.handle(now, on_link(w1, peer("w0"), MeshMessage::RelayAck { id: 1 }));
    assert_eq!(answered(&drain(w1)), vec![(1, RelayOutcome::Delivered)]);
    // A second ack for it is an answer nobody waits for.
    w1.handle(now, on_link(w1, peer("w0"), MeshMessage::RelayAck { id: 1 }));
    assert_eq!(w1.counters().refused, 2);
    // The link to the relay closes before it answers: the envelope fails at once.
    w1.handle(now, relay(2));
    drain(w1);
    let session = w1.link_session(&peer("w0")).cloned().unwrap();
    w1.handle(now, Event::LinkClosed { peer: peer("w0"), session, reason: "gone".into() });
    assert_eq!(answered(&drain(w1)), vec![(2, RelayOutcome::RelayGone)]);
    // No link to the relay: it fails at once, and nothing is sent.
    w1.handle(now, relay(3));
    let outs = drain(w1);
    assert_eq!(answered(&outs), vec![(3, RelayOutcome::RelayGone)]);
    assert!(sent(&outs).is_empty());
}

#[test]
fn b12a_a_newcomer_signals_every_first_attempt_by_the_rendezvous_the_admin_first_included() {
    let mut s = MeshState::new(super::config("w4", Role::Worker));
    let members = NAMES[..3].iter().map(|n| crate::MemberInfo::new(peer(n), Sim::record(0))).collect();
    s.handle(std::time::Instant::now(), Event::Registered { members, admin: Some(peer("w0")) });
    let orders: Vec<(String, crate::PathOrder)> = drain(&mut s)
        .into_iter()
        .filter_map(|o| match o {
            Out::Link(LinkOp::Dial { peer, order, .. }) => Some((peer.to_string(), order)),
            _ => None,
        })
        .collect();
    assert_eq!(orders.len(), 3, "{orders:?}");
    assert_eq!(orders[0].0, "w0", "the admin first");
    assert!(orders.iter().all(|(_, o)| *o == crate::PathOrder::RendezvousFirst), "{orders:?}");
}

#[test]
fn b19_heartbeats_go_on_the_wall_clock_grid_whenever_a_worker_joined() {
    let t0 = std::time::Instant::now();
    let beat = Timing::default().heartbeat_interval;
    let ms = Duration::from_millis;
    // A lone worker (admin of its own room), registered `joined` after a point of the grid.
    let worker = |joined: Duration| {
        let mut s = MeshState::new(StateConfig { heartbeat_phase: Some(t0), ..super::config("w1", Role::Worker) });
        s.handle(t0 + joined, Event::Registered { members: vec![], admin: None });
        drain(&mut s);
        s
    };
    let (mut early, late) = (worker(ms(130)), worker(ms(770)));
    assert_eq!(early.next_deadline(), Some(t0 + beat), "the first heartbeat on the grid, not a beat after joining");
    assert_eq!(late.next_deadline(), early.next_deadline(), "workers that joined apart beat together");
    // A timer that fires late does not shift the grid.
    early.handle(t0 + beat + ms(7), Event::Tick);
    drain(&mut early);
    assert_eq!(early.next_deadline(), Some(t0 + beat * 2));
}
