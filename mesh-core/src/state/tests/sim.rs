//! A deterministic simulated room of state machines.

use super::{drain, Out};
use crate::id::{PeerId, RoomId};
use crate::room::{MemberInfo, Metadata, WorkerRecord};
use crate::signal::SessionId;
use crate::signal::SignalBody;
use crate::signaler::{Announcement, Role};
use crate::state::{Event, LinkOp, MeshEvent, MeshState, SignalingOp, StateConfig, Transmit};
use crate::testing::chain::{Chain, ChainHost};
use crate::{PathOrder, Signal};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub(super) fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// How long a link attempt between cut peers takes to fail.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

pub(super) struct Sim {
    pub now: Instant,
    pub nodes: BTreeMap<PeerId, MeshState>,
    /// Registration order at the rendezvous; clients excluded from `members`.
    pub registered: Vec<(PeerId, Role)>,
    pub rendezvous_admin: Option<PeerId>,
    queue: VecDeque<(PeerId, Event)>,
    delayed: Vec<(Instant, PeerId, Event)>,
    /// Open links by session, with their two ends.
    pub open: BTreeMap<SessionId, (PeerId, PeerId)>,
    cut: BTreeSet<(PeerId, PeerId)>,
    pub log: Vec<(Instant, PeerId, MeshEvent)>,
    pub dials: Vec<(Instant, PeerId, PeerId)>,
    pub max_links_per_pair: usize,
    /// Client links each worker joining from now on takes.
    pub max_client_links: usize,
    next_query: u64,
    /// False while the rendezvous is down: it carries no signal.
    pub rendezvous_up: bool,
    /// Relay envelopes that crossed a link.
    pub relayed: usize,
    /// Signals on their way by relay, and when the relay signaler gives each up.
    chain: Chain,
    relay_timeouts: Vec<(Instant, u64)>,
    /// Attempts not open yet: when the node's set-up timeout closes each, for which end.
    setup_deadlines: Vec<(Instant, PeerId, PeerId, SessionId)>,
}

impl Sim {
    pub(super) fn new() -> Self {
        Self {
            now: Instant::now(),
            nodes: BTreeMap::new(),
            registered: Vec::new(),
            rendezvous_admin: None,
            queue: VecDeque::new(),
            delayed: Vec::new(),
            open: BTreeMap::new(),
            cut: BTreeSet::new(),
            log: Vec::new(),
            dials: Vec::new(),
            max_links_per_pair: 0,
            max_client_links: crate::state::DEFAULT_MAX_CLIENT_LINKS,
            next_query: 1,
            rendezvous_up: true,
            relayed: 0,
            chain: Chain::default(),
            relay_timeouts: Vec::new(),
            setup_deadlines: Vec::new(),
        }
    }

    pub(super) fn record(priority: u64) -> WorkerRecord {
        let mut metadata = Metadata::new();
        metadata.insert("gpu_memory_mb".into(), priority.into());
        WorkerRecord::new(priority, metadata)
    }

    /// Registers a worker (priority = GPU memory) and delivers notices; does not settle.
    pub(super) fn join_as(&mut self, name: &str, role: Role, priority: u64) {
        let me = peer(name);
        let cfg = StateConfig {
            room: RoomId::new("room").unwrap(),
            record: Self::record(priority),
            seed: self.nodes.len() as u64 + 7,
            max_client_links: self.max_client_links,
            ..super::config(name, role)
        };
        let members = self.listed_except(&me);
        self.nodes.insert(me.clone(), MeshState::new(cfg));
        let admin = self.rendezvous_admin.clone();
        self.queue.push_back((me.clone(), Event::Registered { members, admin }));
        if role == Role::Worker {
            let member = MemberInfo::new(me.clone(), Self::record(priority));
            for (p, _) in self.registered.clone() {
                self.queue.push_back((p, Event::PeerJoined(member.clone())));
            }
        }
        self.registered.push((me, role));
    }

    pub(super) fn join(&mut self, name: &str) {
        self.join_as(name, Role::Worker, 0);
    }

    /// Joins each name and settles the room before the next.
    pub(super) fn form(&mut self, names: &[&str]) {
        for n in names {
            self.join(n);
            self.settle();
        }
    }

    /// The rendezvous saw `name`'s connection close: tell everyone.
    fn deregister(&mut self, name: &PeerId) {
        self.registered.retain(|(p, _)| p != name);
        if self.rendezvous_admin.as_ref() == Some(name) {
            self.rendezvous_admin = None;
        }
        for (p, _) in self.registered.clone() {
            self.queue.push_back((p, Event::PeerLeft(name.clone())));
        }
    }

    /// Graceful departure.
    pub(super) fn leave(&mut self, name: &str) {
        self.queue.push_back((peer(name), Event::Leave));
        self.settle();
        self.nodes.remove(&peer(name));
    }

    /// A crash the rest learns of only through silence: no goodbye, links stay silently open.
    pub(super) fn crash_silently(&mut self, name: &str) {
        let p = peer(name);
        self.nodes.remove(&p);
    }

    /// Cuts every link between `a` and `b` (both directions) and fails future attempts.
    pub(super) fn cut(&mut self, a: &str, b: &str) {
        let (a, b) = (peer(a), peer(b));
        self.cut.insert((a.clone(), b.clone()));
        self.cut.insert((b, a));
    }

    /// Cuts `names` from every other node: a partition of the links (the rendezvous still
    /// reaches everyone).
    pub(super) fn split(&mut self, names: &[&str]) {
        let others: Vec<String> =
            self.nodes.keys().map(|p| p.to_string()).filter(|p| !names.contains(&p.as_str())).collect();
        for a in names {
            for b in &others {
                self.cut(a, b);
            }
        }
    }

    /// The rendezvous restarts: it forgets the admin, and every peer registers again (in
    /// registration order, so the admin is not necessarily first).
    pub(super) fn restart_rendezvous(&mut self) {
        self.rendezvous_admin = None;
        let registered = self.registered.clone();
        for (p, _) in &registered {
            let members = self.listed_except(p);
            let admin = self.rendezvous_admin.clone();
            self.queue.push_back((p.clone(), Event::Registered { members, admin }));
            self.settle();
        }
    }

    /// What the rendezvous lists to a worker registering: every registered worker but `me`,
    /// with its record.
    fn listed_except(&self, me: &PeerId) -> Vec<MemberInfo> {
        self.registered
            .iter()
            .filter(|(q, r)| q != me && *r == Role::Worker)
            .filter_map(|(q, _)| self.nodes.get(q).and_then(|n| n.room_state().get(q)).map(|rec| (q, rec)))
            .map(|(q, rec)| MemberInfo::new(q.clone(), rec.clone()))
            .collect()
    }

    /// The rendezvous restarted and forgot everyone: nobody is registered until it registers
    /// again (with [`Sim::register_again`]) or joins.
    pub(super) fn rendezvous_forgets_all(&mut self) -> Vec<PeerId> {
        self.rendezvous_admin = None;
        std::mem::take(&mut self.registered).into_iter().map(|(p, _)| p).collect()
    }

    /// Worker `name`, a node already, registers again: the rendezvous lists the workers
    /// registered before it and tells them it joined.
    pub(super) fn register_again(&mut self, name: &PeerId) {
        let Some(record) = self.nodes.get(name).and_then(|n| n.room_state().get(name)).cloned() else { return };
        let members = self.listed_except(name);
        let admin = self.rendezvous_admin.clone();
        self.queue.push_back((name.clone(), Event::Registered { members, admin }));
        for (p, _) in self.registered.clone() {
            self.queue.push_back((p, Event::PeerJoined(MemberInfo::new(name.clone(), record.clone()))));
        }
        self.registered.push((name.clone(), Role::Worker));
    }

    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    fn is_cut(&self, a: &PeerId, b: &PeerId) -> bool {
        self.cut.contains(&(a.clone(), b.clone()))
    }

    /// Delivers events and carries out actions until nothing is left at this instant.
    pub(super) fn settle(&mut self) {
        for _ in 0..100_000 {
            if let Some((to, event)) = self.queue.pop_front() {
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.handle(self.now, event);
                }
                continue;
            }
            let mut any = false;
            let names: Vec<PeerId> = self.nodes.keys().cloned().collect();
            for name in names {
                let outs = self.nodes.get_mut(&name).map(drain).unwrap_or_default();
                for out in outs {
                    any = true;
                    self.carry_out(&name, out);
                }
            }
            if !any && self.queue.is_empty() {
                return;
            }
        }
        panic!("room did not settle");
    }

    /// An attempt between `a` and `b` fails the way ICE does when nothing gets through.
    fn fail_after_connect_timeout(&mut self, a: &PeerId, b: &PeerId, session: SessionId) {
        let at = self.now + CONNECT_TIMEOUT;
        let closed =
            |peer: &PeerId, session| Event::LinkClosed { peer: peer.clone(), session, reason: "timeout".into() };
        self.delayed.push((at, a.clone(), closed(b, session.clone())));
        self.delayed.push((at, b.clone(), closed(a, session)));
    }

    /// `from`'s end of `session` with `peer` gives up at the node's set-up timeout unless it opens.
    fn set_up_within_timeout(&mut self, from: &PeerId, peer: &PeerId, session: &SessionId) {
        let at = self.now + crate::node::SETUP_TIMEOUT;
        self.setup_deadlines.push((at, from.clone(), peer.clone(), session.clone()));
    }

    /// Opens `session` between `a` and `b` and tells both.
    fn open_link(&mut self, a: &PeerId, b: &PeerId, session: SessionId) {
        self.open.insert(session.clone(), (a.clone(), b.clone()));
        let pair_count = self.open.values().filter(|(x, y)| (x == a && y == b) || (x == b && y == a)).count();
        self.max_links_per_pair = self.max_links_per_pair.max(pair_count);
        self.queue.push_back((a.clone(), Event::LinkOpened { peer: b.clone(), session: session.clone() }));
        self.queue.push_back((b.clone(), Event::LinkOpened { peer: a.clone(), session }));
    }

    fn carry_out(&mut self, from: &PeerId, out: Out) {
        let abort = || SignalBody::Abort { reason: "x".into() };
        match out {
            Out::Link(LinkOp::Dial { peer, session, order }) => {
                self.dials.push((self.now, from.clone(), peer.clone()));
                self.set_up_within_timeout(from, &peer, &session);
                let offer = SignalBody::Offer { sdp: "v=0".into() };
                self.send_signal(from, &peer, order, Signal::new(session, offer));
            }
            Out::Link(LinkOp::Accept { peer, session, order, .. }) => {
                if self.is_cut(from, &peer) || !self.nodes.contains_key(&peer) {
                    return self.fail_after_connect_timeout(from, &peer, session);
                }
                self.set_up_within_timeout(from, &peer, &session);
                let answer = SignalBody::Answer { sdp: "v=0".into() };
                self.send_signal(from, &peer, order, Signal::new(session, answer));
            }
            Out::Link(LinkOp::Signal { peer, session, body: SignalBody::Answer { .. } }) => {
                // The offerer took the answer: ICE, DTLS and SCTP run now.
                if self.is_cut(from, &peer) || !self.nodes.contains_key(&peer) {
                    return self.fail_after_connect_timeout(from, &peer, session);
                }
                self.open_link(from, &peer, session);
            }
            Out::Link(LinkOp::Signal { .. }) => {}
            Out::Link(LinkOp::Reject { peer, session, .. }) => {
                self.send_signal(from, &peer, PathOrder::Configured, Signal::new(session, abort()));
            }
            Out::Link(LinkOp::Close { peer, session, reason }) => {
                if self.open.remove(&session).is_some() {
                    self.queue.push_back((peer, Event::LinkClosed { peer: from.clone(), session, reason }));
                } else {
                    self.send_signal(from, &peer, PathOrder::Configured, Signal::new(session, abort()));
                }
            }
            Out::Send(Transmit { to, session, msg }) => {
                if self.open.contains_key(&session) && !self.is_cut(from, &to) {
                    self.relayed += matches!(msg, crate::MeshMessage::Relay { .. }) as usize;
                    self.queue.push_back((to, Event::Message { from: from.clone(), session, msg }));
                }
            }
            Out::Signaling(SignalingOp::Announce(Announcement::Admin(_))) => {
                self.rendezvous_admin = Some(from.clone());
                for (p, _) in self.registered.clone() {
                    if &p != from {
                        self.queue.push_back((p, Event::AdminAnnounced(from.clone())));
                    }
                }
            }
            Out::Signaling(SignalingOp::Announce(Announcement::Withdraw)) => {
                if self.rendezvous_admin.as_ref() == Some(from) {
                    self.rendezvous_admin = None;
                }
            }
            Out::Signaling(SignalingOp::Announce(Announcement::Leaving)) => self.deregister(from),
            Out::Signaling(SignalingOp::RelayAnswered { id, outcome }) => self.relay_answered(from, id, outcome),
            Out::Emit(event) => self.log.push((self.now, from.clone(), event)),
        }
    }

    /// Moves virtual time forward in 10 ms steps, ticking every node.
    pub(super) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let due: Vec<(Instant, PeerId, Event)> =
                self.delayed.iter().filter(|(t, _, _)| *t <= self.now).cloned().collect();
            self.delayed.retain(|(t, _, _)| *t > self.now);
            for (_, to, ev) in due {
                self.queue.push_back((to, ev));
            }
            self.fire_due_timers();
            for name in self.nodes.keys().cloned().collect::<Vec<_>>() {
                self.queue.push_back((name, Event::Tick));
            }
            self.settle();
        }
    }

    /// The node's set-up timeouts and the relay signaler's timeouts that are due.
    fn fire_due_timers(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.setup_deadlines.drain(..).partition(|(t, ..)| *t <= now);
        self.setup_deadlines = later;
        for (_, end, peer, session) in due {
            if !self.open.contains_key(&session) {
                self.queue.push_back((end, Event::LinkClosed { peer, session, reason: "set-up timeout".into() }));
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = self.relay_timeouts.drain(..).partition(|(t, _)| *t <= now);
        self.relay_timeouts = later;
        for (_, id) in due {
            self.relay_timed_out(id);
        }
    }

    /// Number of open links between live nodes.
    pub(super) fn link_count(&self) -> usize {
        self.open.values().filter(|(a, b)| self.nodes.contains_key(a) && self.nodes.contains_key(b)).count()
    }

    /// True when every live worker is linked to every other live worker.
    pub(super) fn is_full_mesh(&self) -> bool {
        let workers: Vec<&PeerId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.health_record().role != crate::NodeRole::Client)
            .map(|(p, _)| p)
            .collect();
        workers.iter().all(|w| {
            let n = &self.nodes[*w];
            workers.iter().all(|o| o == w || n.is_linked(o))
        })
    }

    pub(super) fn node(&self, name: &str) -> &MeshState {
        &self.nodes[&peer(name)]
    }

    /// Asks `name` for the registry, lets the room answer at this instant, returns the answer.
    pub(super) fn query(&mut self, name: &str, filter: crate::RegistryFilter) -> Option<crate::RegistryPage> {
        let id = self.next_query;
        self.next_query += 1;
        let (now, deadline) = (self.now, self.now + Duration::from_secs(5));
        self.queue.push_back((peer(name), Event::QueryRegistry { id, filter, deadline }));
        self.settle();
        self.answer(name, id, now)
    }

    /// The answer `name` got to query `id` since `since`.
    pub(super) fn answer(&self, name: &str, id: u64, since: Instant) -> Option<crate::RegistryPage> {
        self.events_of(name, since).into_iter().find_map(|e| match e {
            MeshEvent::Registry { id: got, page } if got == id => Some(page),
            _ => None,
        })
    }

    /// Queues `event` for `name` (delivered at the next settle).
    pub(super) fn deliver(&mut self, name: &str, event: Event) {
        self.queue.push_back((peer(name), event));
    }

    /// Delivers `event` to `name` before everything queued (a command that beats its registration).
    pub(super) fn deliver_first(&mut self, name: &str, event: Event) {
        self.queue.push_front((peer(name), event));
    }

    /// Delivers `msg` from `from` to `to` as if it came over their open link.
    pub(super) fn deliver_msg(&mut self, to: &str, from: &str, msg: crate::MeshMessage) {
        let event = super::on_link(&self.nodes[&peer(to)], peer(from), msg);
        self.queue.push_back((peer(to), event));
    }

    /// Events of `name` logged after `since`.
    pub(super) fn events_of(&self, name: &str, since: Instant) -> Vec<MeshEvent> {
        self.log.iter().filter(|(t, p, _)| *t >= since && p.as_str() == name).map(|(_, _, e)| e.clone()).collect()
    }
}

impl ChainHost for Sim {
    fn chain(&mut self) -> &mut Chain {
        &mut self.chain
    }

    fn incarnation(&self, peer: &PeerId) -> Option<u32> {
        self.nodes.contains_key(peer).then_some(0)
    }

    fn state(&self, peer: &PeerId) -> Option<&MeshState> {
        self.nodes.get(peer)
    }

    /// The rendezvous carries a signal between two registered peers at once.
    fn by_server(&mut self, from: &PeerId, to: &PeerId, signal: Signal) -> bool {
        let registered = |p: &PeerId| self.registered.iter().any(|(q, _)| q == p);
        if !(self.rendezvous_up && registered(from) && registered(to)) {
            return false;
        }
        self.queue.push_back((to.clone(), Event::Signal { from: from.clone(), signal, key: None }));
        true
    }

    fn to_state(&mut self, peer: &PeerId, event: Event) {
        self.queue.push_back((peer.clone(), event));
    }

    fn wake_after(&mut self, after: Duration, id: u64) {
        self.relay_timeouts.push((self.now + after, id));
    }
}
