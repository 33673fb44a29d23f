//! Failover for every member, on virtual time: clients follow the admin, "verified" means the
//! admin said so, the admin is sticky under a link flap, the partition rule, and the rendezvous
//! always names the admin the room settled on (docs/BEHAVIOUR.md 15–23).

use super::sim::{peer, Sim};
use super::{drain, on_link, signal, Out};
use crate::signal::SignalBody;
use crate::signaler::Role;
use crate::state::{Event, LinkOp, MeshEvent, Transmit};
use crate::{RegistryFilter, WorkerStatus};
use std::time::Duration;

fn formed(names: &[&str]) -> Sim {
    let mut sim = Sim::new();
    sim.form(names);
    sim
}

fn admins(sim: &Sim) -> Vec<(String, Option<String>, bool)> {
    sim.nodes.iter().map(|(p, n)| (p.to_string(), n.admin().0.map(|a| a.to_string()), n.admin().1)).collect()
}

fn assert_admin_everywhere(sim: &Sim, admin: &str) {
    for (node, a, verified) in admins(sim) {
        assert_eq!((a.as_deref(), verified), (Some(admin), true), "{node}: {:?}", admins(sim));
    }
}

#[test]
fn b23_a_client_follows_the_admin_when_it_leaves() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.join_as("c0", Role::Client, 0);
    sim.settle();
    sim.leave("w0");
    sim.advance(Duration::from_secs(1));
    let client = sim.node("c0");
    assert_eq!(client.admin(), (Some(&peer("w1")), true));
    assert_eq!(client.linked_peers(), vec![peer("w1")], "a client links to its admin only");
    let page = sim.query("c0", RegistryFilter::default()).expect("the new admin answers");
    assert_eq!(page.total_count, 2);
}

#[test]
fn b23_a_client_follows_the_admin_when_it_goes_silent() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.join_as("c0", Role::Client, 0);
    sim.settle();
    sim.crash_silently("w0"); // no goodbye, and the rendezvous does not notice either
    sim.advance(Duration::from_secs(8));
    assert_eq!(sim.node("c0").admin(), (Some(&peer("w1")), true));
    assert!(sim.query("c0", RegistryFilter::default()).is_some(), "the new admin answers");
}

#[test]
fn b23_a_query_waits_for_the_admin_link_and_moves_to_a_new_admin() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.join_as("c0", Role::Client, 0);
    // Asked before the client has even registered its link.
    let t = sim.now;
    sim.deliver(
        "c0",
        Event::QueryRegistry { id: 77, filter: RegistryFilter::default(), deadline: t + Duration::from_secs(5) },
    );
    sim.settle();
    assert_eq!(sim.answer("c0", 77, t).map(|p| p.total_count), Some(3));
}

#[test]
fn b16_verified_means_the_admin_said_it_holds_the_role() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    // The rendezvous names a stale admin: w1 is alive but follows w0.
    sim.rendezvous_admin = Some(peer("w1"));
    let t = sim.now;
    sim.join("w3");
    sim.settle();
    assert_eq!(sim.node("w3").admin(), (Some(&peer("w0")), true), "w1 pointed at w0, which verified");
    let verified_w1 = sim
        .events_of("w3", t)
        .into_iter()
        .any(|e| matches!(e, MeshEvent::AdminChanged { admin: Some(a), verified: true } if a.as_str() == "w1"));
    assert!(!verified_w1, "w1 never claimed the role, so it was never verified");
    assert!(sim.is_full_mesh());
}

#[test]
fn b16_a_joiner_is_not_verified_before_the_admin_answers() {
    let mut sim = formed(&["w0", "w1"]);
    let t = sim.now;
    sim.join("w2");
    sim.settle();
    let events = sim.events_of("w2", t);
    let first = events.iter().find_map(|e| match e {
        MeshEvent::AdminChanged { verified, .. } => Some(*verified),
        _ => None,
    });
    assert_eq!(first, Some(false), "a joiner starts unverified: {events:?}");
    assert_eq!(sim.node("w2").admin(), (Some(&peer("w0")), true));
}

#[test]
fn b15_a_flap_of_the_admin_link_does_not_move_the_role() {
    let mut sim = Sim::new();
    sim.form(&["w0"]);
    sim.join_as("w1", Role::Worker, 100); // stronger, but the admin is sticky
    sim.settle();
    sim.form(&["w2", "w3"]);
    assert_admin_everywhere(&sim, "w0");
    sim.cut("w0", "w1"); // only this link
    sim.advance(Duration::from_secs(6));
    assert_admin_everywhere(&sim, "w0");
    assert!(!sim.node("w1").is_partitioned());
    sim.heal();
    sim.advance(Duration::from_secs(10));
    assert!(sim.node("w1").is_linked(&peer("w0")), "the link was retried");
    assert_admin_everywhere(&sim, "w0");
}

#[test]
fn b15_a_silent_admin_is_replaced_within_the_heartbeat_timeout_and_a_half() {
    let mut sim = formed(&["w0", "w1", "w2", "w3"]);
    let t = sim.now;
    sim.crash_silently("w0");
    sim.advance(Duration::from_millis(4600));
    assert_admin_everywhere(&sim, "w1");
    assert!(sim.now - t <= Duration::from_millis(4600));
}

#[test]
fn b20_four_against_one_flags_the_one_which_elects_nobody() {
    let mut sim = formed(&["w0", "w1", "w2", "w3", "w4"]);
    sim.split(&["w4"]);
    sim.advance(Duration::from_secs(8));
    let w4 = sim.node("w4");
    assert!(w4.is_partitioned());
    assert_eq!(w4.admin().0, Some(&peer("w0")), "a partitioned node elects no admin of its own");
    for w in ["w0", "w1", "w2", "w3"] {
        assert!(!sim.node(w).is_partitioned(), "{w}");
    }
}

#[test]
fn b20_three_against_two_heals_with_the_majority_admin_in_either_half() {
    // The admin in the majority: the minority is flagged and waits.
    let mut sim = formed(&["w0", "w1", "w2", "w3", "w4"]);
    sim.split(&["w3", "w4"]);
    sim.advance(Duration::from_secs(8));
    for w in ["w3", "w4"] {
        assert!(sim.node(w).is_partitioned(), "{w}");
        assert_eq!(sim.node(w).admin().0, Some(&peer("w0")), "{w} elected nobody");
    }
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(sim.is_full_mesh());
    assert_admin_everywhere(&sim, "w0");
    assert!(sim.nodes.values().all(|n| !n.is_partitioned()));

    // The admin in the minority: the admin is never flagged, the majority elects, and on heal
    // the majority's admin (w2) keeps the role although w0 would win the election rule.
    let mut sim = formed(&["w0", "w1", "w2", "w3", "w4"]);
    sim.split(&["w0", "w1"]);
    sim.advance(Duration::from_secs(8));
    assert!(!sim.node("w0").is_partitioned(), "its admin is itself");
    assert!(!sim.node("w1").is_partitioned(), "its admin is linked");
    assert_eq!(sim.node("w3").admin(), (Some(&peer("w2")), true));
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(sim.is_full_mesh());
    assert_admin_everywhere(&sim, "w2");
    assert_eq!(sim.rendezvous_admin, Some(peer("w2")), "the rendezvous names the room's admin");
}

#[test]
fn b20_an_even_split_is_not_a_partition_and_settles_by_the_election_rule() {
    let mut sim = formed(&["w0", "w1", "w2", "w3"]);
    sim.split(&["w2", "w3"]);
    sim.advance(Duration::from_secs(8));
    assert!(sim.nodes.values().all(|n| !n.is_partitioned()));
    assert_eq!(sim.node("w3").admin(), (Some(&peer("w2")), true));
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert_admin_everywhere(&sim, "w0");
    assert_eq!(sim.rendezvous_admin, Some(peer("w0")), "the loser withdrew, the winner re-announced");
}

#[test]
fn b20_a_worker_that_never_linked_anyone_is_flagged() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.join("w3");
    sim.split(&["w3"]);
    sim.settle();
    assert!(!sim.node("w3").is_partitioned(), "not while its first attempts are in flight");
    sim.advance(Duration::from_secs(5));
    assert!(sim.node("w3").is_partitioned());
}

#[test]
fn b20_a_partitioned_worker_queues_its_record_and_sends_it_on_heal() {
    let mut sim = formed(&["w0", "w1", "w2", "w3", "w4"]);
    sim.split(&["w3", "w4"]);
    sim.advance(Duration::from_secs(8));
    assert!(sim.node("w4").is_partitioned());
    let mut busy = Sim::record(0);
    busy.status = WorkerStatus::Busy;
    sim.deliver("w4", Event::RecordChanged(busy));
    sim.settle();
    let status = |sim: &Sim, at: &str| sim.node(at).room_state().get(&peer("w4")).map(|r| r.status);
    assert_eq!(status(&sim, "w3"), Some(WorkerStatus::Available), "read-only: not even its own side hears it");
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(!sim.node("w4").is_partitioned());
    for at in ["w0", "w3"] {
        assert_eq!(status(&sim, at), Some(WorkerStatus::Busy), "{at}: sent when the partition healed");
    }
}

#[test]
fn b18_after_a_rendezvous_restart_the_admin_is_announced_again() {
    // w1 registered before w0 when the rendezvous came back: it must not end up naming w1.
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.registered.swap(0, 1);
    sim.restart_rendezvous();
    assert_eq!(sim.rendezvous_admin, Some(peer("w0")));
    assert_admin_everywhere(&sim, "w0");
}

#[test]
fn b8_a_newcomer_first_on_a_restarted_rendezvous_is_dialed_by_each_survivor_as_it_registers_again() {
    // The server came back empty and the newcomer registered before any survivor: to it the
    // survivors are the joiners. Each survivor dials it as soon as it registers again, not
    // after offer_wait (3 s), and the room ends with one admin.
    let mut sim = formed(&["w0", "w1", "w2"]);
    let survivors = sim.rendezvous_forgets_all();
    sim.join("w9");
    sim.settle();
    for p in &survivors {
        sim.register_again(p);
        sim.settle();
    }
    sim.advance(Duration::from_millis(100)); // far less than offer_wait
    for p in &survivors {
        assert!(sim.node("w9").is_linked(p), "w9 linked to {p}");
    }
    sim.advance(Duration::from_secs(10));
    assert_admin_everywhere(&sim, "w0");
    assert_eq!(sim.max_links_per_pair, 1, "one link per pair");
}

#[test]
fn b21_an_abort_for_an_open_link_closes_it() {
    let mut sim = formed(&["w0", "w1"]);
    let now = sim.now;
    let w0 = sim.nodes.get_mut(&peer("w0")).expect("w0");
    let session = w0.link_session(&peer("w1")).cloned().expect("linked");
    w0.handle(now, signal(peer("w1"), session.clone(), SignalBody::Abort { reason: "x".into() }));
    let actions = drain(w0);
    assert!(
        actions.iter().any(|a| matches!(a, Out::Link(LinkOp::Close { session: s, .. }) if *s == session)),
        "the transport session is closed too: {actions:?}"
    );
}

#[test]
fn b16_a_joiner_asked_to_verify_before_its_admin_link_opens_does_not_take_the_role() {
    let mut sim = formed(&["w0", "w1"]);
    sim.cut("w9", "w0"); // the strong joiner cannot reach the admin (yet)
    sim.join_as("w9", Role::Worker, 1000);
    sim.advance(Duration::from_millis(3500)); // w1 dials it after offer_wait; w9's dial to w0 fails
    assert!(sim.node("w9").is_linked(&peer("w1")));
    assert!(!sim.node("w9").is_linked(&peer("w0")));
    let now = sim.now;
    let w9 = sim.nodes.get_mut(&peer("w9")).expect("w9");
    w9.handle(now, on_link(w9, peer("w1"), crate::MeshMessage::AdminVerify { id: 5, epoch: 0, vote: None }));
    let actions = drain(w9);
    assert_eq!(w9.admin().0, Some(&peer("w0")), "the room's admin is alive: w9 keeps following it");
    let ack = actions.iter().find_map(|a| match a {
        Out::Send(Transmit { msg: crate::MeshMessage::AdminVerifyAck { admin, .. }, .. }) => Some(admin.clone()),
        _ => None,
    });
    assert_eq!(ack, Some(Some(peer("w0"))), "it answers with the admin it follows");
}

#[test]
fn b12_with_the_rendezvous_down_a_broken_link_is_signaled_again_by_relay() {
    let mut sim = formed(&["w0", "w1", "w2"]);
    sim.rendezvous_up = false;
    sim.cut("w1", "w2");
    sim.advance(Duration::from_secs(8));
    assert!(!sim.node("w1").is_linked(&peer("w2")), "the silent link is declared lost");
    let relayed = sim.relayed;
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(sim.node("w1").is_linked(&peer("w2")) && sim.node("w2").is_linked(&peer("w1")));
    assert!(sim.relayed > relayed, "the offer and answer went through the admin's links");
    assert!(sim.is_full_mesh());
}
