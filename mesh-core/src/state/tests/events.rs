//! What a scheduler watches: workers joining, changing their records, and leaving.

use super::sim::Sim;
use crate::state::{Event, MeshEvent};
use crate::WorkerStatus;
use std::time::Duration;

#[test]
fn a_scheduler_hears_a_worker_join_change_its_record_and_leave() {
    let mut sim = Sim::new();
    sim.form(&["w0", "w1"]);
    let t0 = sim.now;
    sim.join("w2");
    sim.settle();
    sim.advance(Duration::from_millis(100));
    let joined =
        |e: &MeshEvent| matches!(e, MeshEvent::WorkerChanged { peer, joined: true, .. } if peer.as_str() == "w2");
    for node in ["w0", "w1"] {
        assert_eq!(sim.events_of(node, t0).iter().filter(|e| joined(e)).count(), 1, "{node} hears w2 join once");
    }
    let t1 = sim.now;
    let mut busy = sim.node("w2").room_state().get(&super::sim::peer("w2")).cloned().unwrap();
    busy.status = WorkerStatus::Busy;
    busy.version += 1;
    sim.deliver("w2", Event::RecordChanged(busy));
    sim.advance(Duration::from_millis(100));
    let changed = sim.events_of("w0", t1).into_iter().find_map(|e| match e {
        MeshEvent::WorkerChanged { peer, record, joined: false } if peer.as_str() == "w2" => Some(record.status),
        _ => None,
    });
    assert_eq!(changed, Some(WorkerStatus::Busy));
    let t2 = sim.now;
    sim.leave("w2");
    sim.advance(Duration::from_millis(100));
    let left = |e: &MeshEvent| matches!(e, MeshEvent::WorkerLeft { peer } if peer.as_str() == "w2");
    assert!(sim.events_of("w0", t2).iter().any(left) && sim.events_of("w1", t2).iter().any(left));
}
