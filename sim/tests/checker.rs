//! The checks themselves: they must fail when the room is wrong, or a passing campaign means
//! nothing.

use mesh_sim::check::at_rest;
use mesh_sim::run::apply;
use mesh_sim::schedule::{Fault, Net};
use mesh_sim::World;

fn formed_room() -> World {
    let net = Net { latency_ms: 20, jitter_ms: 0, loss_pct: 0, server_ms: 5 };
    let mut w = World::new(net, 1, false);
    for name in ["w0", "w1", "w2"] {
        apply(&mut w, 1, &Fault::Join { name: name.into(), client: false, priority: 0 });
    }
    apply(&mut w, 1, &Fault::Join { name: "c0".into(), client: true, priority: 0 });
    w.run_until(10_000);
    assert_eq!(at_rest(&w), Ok(()), "a formed room is at rest");
    w
}

#[test]
fn a_room_cut_in_two_is_not_at_rest() {
    let mut w = formed_room();
    let t = w.t;
    apply(&mut w, 1, &Fault::Partition(vec![vec!["w0".into(), "c0".into()], vec!["w1".into(), "w2".into()]]));
    w.run_until(t + 20_000);
    let why = at_rest(&w).expect_err("two halves are not one room at rest");
    assert!(why.contains("follows") || why.contains("not linked"), "{why}");
    assert_eq!(w.violation(), None, "a partition breaks no continuous invariant");
}

#[test]
fn a_record_change_not_yet_everywhere_is_caught() {
    let mut w = formed_room();
    let t = w.t;
    apply(&mut w, 1, &Fault::Record { name: "w2".into(), status: mesh_core::WorkerStatus::Busy, load: 7 });
    w.run_until(t + 1);
    let why = at_rest(&w).expect_err("the change is still on its way to w0 and w1");
    assert!(why.contains("holds w2's record"), "{why}");
    w.run_until(t + 1_000);
    assert_eq!(at_rest(&w), Ok(()), "then everyone holds it");
}

#[test]
fn a_crashed_admin_leaves_the_room_unsettled_until_it_is_replaced() {
    let mut w = formed_room();
    apply(&mut w, 1, &Fault::Crash(mesh_sim::schedule::Target::Admin));
    let why = at_rest(&w).expect_err("the survivors still follow the dead admin");
    assert!(why.contains("not a live worker"), "{why}");
    let t = w.t;
    w.run_until(t + 20_000);
    assert_eq!(at_rest(&w), Ok(()), "a new admin, verified everywhere");
}
