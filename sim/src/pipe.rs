//! Reliable, ordered delivery on a link, as its SCTP stream gives it: messages of one direction
//! arrive in the order sent; while the pair is cut they wait and are retransmitted (timeout
//! 250 ms, doubling to 4 s) until the cut heals or the receiving end closes; nothing later
//! overtakes them. A graceful close travels the same way, after the data sent before it.

use crate::world::{Item, World};
use mesh_core::{PeerId, SessionId};
use std::collections::VecDeque;

/// One direction of the links between two nodes.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    queue: VecDeque<(u64, SessionId, Item)>,
    pumping: bool,
    rto: u64,
}

impl World {
    /// Queues `item` for `to` on `session`'s ordered stream from `from`; returns when it can
    /// arrive at the earliest.
    pub(crate) fn push_ordered(&mut self, from: &PeerId, to: &PeerId, session: SessionId, item: Item) -> u64 {
        let ready = self.t + self.net.delay(&mut self.rng, from, to);
        let pipe = self.pipes.entry((from.clone(), to.clone())).or_default();
        let ready = ready.max(pipe.queue.back().map_or(0, |(at, _, _)| *at));
        pipe.queue.push_back((ready, session, item));
        if !pipe.pumping {
            pipe.pumping = true;
            self.at(ready, Item::Pump(from.clone(), to.clone()));
        }
        ready
    }

    /// Delivers what is due on the stream from `from` to `to`.
    pub(crate) fn pump(&mut self, from: &PeerId, to: &PeerId) {
        let key = (from.clone(), to.clone());
        loop {
            let cut = self.net.is_cut(from, to);
            let Some(pipe) = self.pipes.get_mut(&key) else { return };
            let Some((ready, session, _)) = pipe.queue.front() else {
                pipe.pumping = false;
                return;
            };
            // What was sent arrives unless the receiving end closed (a closing sender flushes).
            let open_there = self.sessions.get(session).is_some_and(|s| s.open && !s.closed_at(to));
            let ready = *ready;
            if !open_there {
                pipe.queue.pop_front(); // the association is gone, and what it held with it
                continue;
            }
            if ready > self.t {
                self.at(ready, Item::Pump(from.clone(), to.clone()));
                return;
            }
            if cut {
                let rto = pipe.rto.max(250);
                pipe.rto = (rto * 2).min(4000);
                let t = self.t + rto;
                self.at(t, Item::Pump(from.clone(), to.clone()));
                return;
            }
            pipe.rto = 250;
            if let Some((_, session, item)) = pipe.queue.pop_front() {
                if let Item::Input { event: mesh_core::Event::LinkClosed { .. }, .. } = &item {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.close(to); // the other end is told: its transport is gone too
                    }
                }
                self.process(item);
            }
        }
    }
}
