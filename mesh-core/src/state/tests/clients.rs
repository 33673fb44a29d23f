//! Client links beyond the admin (docs/BEHAVIOUR.md 23b), on virtual time.

use super::sim::{peer, Sim};
use crate::signaler::Role;
use crate::state::Event;
use std::time::Duration;

fn room_with_client() -> Sim {
    let mut sim = Sim::new();
    sim.form(&["w0", "w1", "w2"]);
    sim.join_as("c", Role::Client, 0);
    sim.settle();
    sim.advance(Duration::from_secs(2));
    sim
}

#[test]
fn b23b_a_client_links_to_the_worker_it_chose_and_keeps_it_through_a_failover() {
    let mut sim = room_with_client();
    assert!(sim.node("c").is_linked(&peer("w0")) && !sim.node("c").is_linked(&peer("w2")), "the admin only");
    sim.deliver("c", Event::Connect(peer("w2")));
    sim.advance(Duration::from_secs(2));
    assert!(sim.node("c").is_linked(&peer("w2")) && sim.node("w2").is_linked(&peer("c")));
    let h = sim.node("c").health_record();
    assert_eq!((h.links_up, h.links_expected), (2, 2), "{h:?}");
    assert_eq!(sim.node("w2").health_record().links_expected, 2, "a worker counts workers only");
    // The admin leaves: the client follows the next admin and keeps the worker it chose.
    sim.leave("w0");
    sim.advance(Duration::from_secs(10));
    assert_eq!(sim.node("c").admin(), (Some(&peer("w1")), true));
    assert!(sim.node("c").is_linked(&peer("w1")) && sim.node("c").is_linked(&peer("w2")));
    sim.deliver("c", Event::Disconnect(peer("w2")));
    sim.advance(Duration::from_secs(5));
    assert!(!sim.node("c").is_linked(&peer("w2")) && !sim.node("w2").is_linked(&peer("c")));
    assert!(sim.node("c").is_linked(&peer("w1")), "the admin's link stays");
}

#[test]
fn b23b_a_client_signals_the_worker_it_chose_through_the_rendezvous() {
    // The chosen worker knows no key of the client: a relayed offer would be refused there (and
    // the client would wait out its connect timeout, again and again).
    let mut sim = room_with_client();
    sim.deliver("c", Event::Connect(peer("w2")));
    assert_eq!(sim.node("c").path_order(&peer("w2")), crate::PathOrder::RendezvousFirst);
    assert_eq!(sim.node("c").path_order(&peer("w0")), crate::PathOrder::Configured, "the admin relays as before");
    sim.advance(Duration::from_secs(2));
    assert!(sim.node("c").is_linked(&peer("w2")));
    assert_eq!(sim.node("c").path_order(&peer("w2")), crate::PathOrder::RendezvousFirst, "links made again too");
}

#[test]
fn b23b_a_broken_chosen_link_is_retried_and_a_non_worker_cannot_be_chosen() {
    let mut sim = room_with_client();
    sim.deliver("c", Event::Connect(peer("w2")));
    sim.deliver("c", Event::Connect(peer("nobody")));
    sim.deliver("w1", Event::Connect(peer("w2"))); // a worker does not "connect": it links to all
    sim.advance(Duration::from_secs(2));
    assert!(sim.node("c").is_linked(&peer("w2")));
    assert!(sim.node("c").health_record().peers.iter().all(|p| p.peer.as_str() != "nobody"));
    sim.cut("c", "w2");
    sim.advance(Duration::from_secs(6));
    assert!(!sim.node("c").is_linked(&peer("w2")), "the silent link is dropped");
    sim.heal();
    sim.advance(Duration::from_secs(40));
    assert!(sim.node("c").is_linked(&peer("w2")), "and retried until it is back");
}

#[test]
fn b23b_a_client_that_chooses_a_worker_before_it_registered_links_to_it_once_it_has() {
    let mut sim = Sim::new();
    sim.form(&["w0", "w1", "w2"]);
    sim.join_as("c", Role::Client, 0);
    // `mesh-job cancel` connects to the job's worker as it starts, before the room is known.
    sim.deliver_first("c", Event::Connect(peer("w2")));
    sim.deliver_first("c", Event::Connect(peer("nobody")));
    sim.settle();
    sim.advance(Duration::from_secs(2));
    assert!(sim.node("c").is_linked(&peer("w2")), "the early choice is kept");
    let h = sim.node("c").health_record();
    assert_eq!((h.links_up, h.links_expected), (2, 2), "a name that is no worker is refused then: {h:?}");
}

#[test]
fn b23b_a_worker_takes_at_most_its_client_links() {
    let mut sim = Sim::new();
    sim.max_client_links = 1;
    sim.form(&["w0", "w1"]);
    for c in ["c1", "c2"] {
        sim.join_as(c, Role::Client, 0);
        sim.settle();
    }
    sim.advance(Duration::from_secs(2));
    // The admin takes every client; both choose w1 too, which takes one of them.
    for c in ["c1", "c2"] {
        sim.deliver(c, Event::Connect(peer("w1")));
    }
    sim.advance(Duration::from_secs(5));
    let linked = |w: &str| ["c1", "c2"].iter().filter(|c| sim.node(w).is_linked(&peer(c))).count();
    assert_eq!((linked("w0"), linked("w1")), (2, 1), "the admin takes both, w1 one");
    assert!(sim.node("w0").is_linked(&peer("w1")), "worker links are not counted");
}
