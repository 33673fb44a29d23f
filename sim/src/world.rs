//! The simulated world: nodes running the real [`MeshState`], the network between them and the
//! signaling server, driven by one queue of timed items. It plays the driver's part for every
//! node: it carries out each action the way `MeshNode` would over a real network.

use crate::check::{Checker, Violation};
pub(crate) use crate::item::{Item, Queued};
use crate::net::{Network, Session, Sessions};
use crate::rng::Rng;
use crate::schedule::Net;
use crate::server::Server;
use mesh_core::testing::chain::ChainHost;
use mesh_core::{
    Event, LinkOp, MeshEvent, MeshMessage, MeshState, Output, PeerId, RegistryPage, Role, Signal, SignalBody,
    SignalingOp, Transmit,
};
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

/// How long a link attempt may take before the driver gives it up (the node's set-up timeout).
pub const SETUP_TIMEOUT_MS: u64 = mesh_core::node::SETUP_TIMEOUT.as_millis() as u64;
/// How long the server keeps a silent connection (a frozen process) before dropping it.
pub const SERVER_IDLE_MS: u64 = signaling_ws::server::IDLE_TIMEOUT.as_millis() as u64;
/// A handshake (ICE, DTLS, SCTP) takes this many round trips after the answer arrives.
const HANDSHAKE_RTTS: u64 = 3;

/// One simulated process.
pub struct Host {
    /// Its state machine.
    pub state: MeshState,
    /// Which start of this peer id it is (a restart is a new incarnation).
    pub inc: u32,
    /// Worker or client.
    pub role: Role,
    /// Stopped: input waits in `inbox`, no timer fires.
    pub frozen: bool,
    inbox: Vec<Item>,
    freeze_gen: u32,
    /// Its server connection is gone: it registers again when it can.
    pub needs_register: bool,
    tick_at: Option<u64>,
    /// The last record change its user asked for: (status, load).
    pub wanted: Option<(mesh_core::WorkerStatus, u64)>,
    registered: bool,
}

impl Host {
    /// True once the node was told it registered.
    pub fn registered_once(&self) -> bool {
        self.registered
    }
}

/// The whole simulated room.
pub struct World {
    /// Virtual time, ms since the start.
    pub t: u64,
    /// The instant virtual time 0 stands for.
    pub(crate) t0: Instant,
    queue: BinaryHeap<Queued>,
    seq: u64,
    /// Live processes by peer id.
    pub hosts: BTreeMap<PeerId, Host>,
    next_inc: u32,
    /// Every session of the run.
    pub sessions: Sessions,
    /// The signaling server.
    pub server: Server,
    /// Latency, loss and cuts.
    pub net: Network,
    pub(crate) rng: Rng,
    /// Invariants checked as the run goes.
    pub checker: Checker,
    /// Registry answers by (asker, query id).
    pub answers: BTreeMap<(PeerId, u64), RegistryPage>,
    /// Link attempts between two workers so far.
    pub worker_dials: u64,
    /// Link attempts so far.
    pub dials: u64,
    /// A readable log of the run, when asked for.
    pub trace: Option<Vec<String>>,
    next_query: u64,
    /// When the server's last message to each node arrives.
    pub(crate) server_fifo: BTreeMap<PeerId, u64>,
    /// Ordered streams by direction.
    pub(crate) pipes: BTreeMap<(PeerId, PeerId), crate::pipe::Pipe>,
    /// Signals on their way by relay.
    pub(crate) chain: mesh_core::testing::chain::Chain,
}

impl World {
    /// An empty room on network `net`; `seed` drives every random choice.
    pub fn new(net: Net, seed: u64, trace: bool) -> Self {
        Self {
            t: 0,
            t0: Instant::now(),
            queue: BinaryHeap::new(),
            seq: 0,
            hosts: BTreeMap::new(),
            next_inc: 1,
            sessions: Sessions::new(),
            server: Server::new(),
            net: Network::new(net, seed),
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(1)),
            checker: Checker::default(),
            answers: BTreeMap::new(),
            worker_dials: 0,
            dials: 0,
            trace: trace.then(Vec::new),
            next_query: 1,
            pipes: BTreeMap::new(),
            server_fifo: BTreeMap::new(),
            chain: Default::default(),
        }
    }

    /// Virtual time as an `Instant`.
    pub fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.t)
    }

    /// The first invariant broken so far, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.checker.violation.as_ref()
    }

    pub(crate) fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>7} ms  {}", self.t, line()));
        }
    }

    pub(crate) fn at(&mut self, t: u64, item: Item) {
        self.seq += 1;
        self.queue.push(Queued { t: t.max(self.t), seq: self.seq, item });
    }

    /// Runs every item due up to `end` (or until an invariant breaks).
    pub fn run_until(&mut self, end: u64) {
        while self.violation().is_none() {
            match self.queue.peek() {
                Some(q) if q.t <= end => {}
                _ => break,
            }
            let Some(q) = self.queue.pop() else { break };
            self.t = q.t;
            self.process(q.item);
        }
        if self.violation().is_none() {
            self.t = self.t.max(end);
        }
    }

    pub(crate) fn inc_of(&self, p: &PeerId) -> Option<u32> {
        self.hosts.get(p).map(|h| h.inc)
    }

    pub(crate) fn process(&mut self, item: Item) {
        let target = match &item {
            Item::Input { to, inc, .. } | Item::LinkMsg { to, inc, .. } | Item::Tick { to, inc } => {
                Some((to.clone(), *inc))
            }
            _ => None,
        };
        if let Some((to, inc)) = target {
            let Some(host) = self.hosts.get_mut(&to).filter(|h| h.inc == inc) else { return };
            if host.frozen {
                match item {
                    Item::Tick { .. } => host.tick_at = None, // a stopped process runs no timer
                    item => host.inbox.push(item),
                }
                return;
            }
        }
        match item {
            Item::Input { to, event, .. } => self.handle(&to, event),
            Item::LinkMsg { to, from, session, msg, .. } => {
                self.handle(&to, Event::Message { from, session, msg });
            }
            Item::Tick { to, .. } => {
                if self.hosts[&to].tick_at.is_some_and(|t| t <= self.t) {
                    if let Some(h) = self.hosts.get_mut(&to) {
                        h.tick_at = None;
                    }
                    self.handle(&to, Event::Tick);
                }
            }
            Item::Connect(session) => self.connect(&session),
            Item::SetupTimeout { to, inc, session } => {
                let current = self.inc_of(&to) == Some(inc);
                let Some(s) = self.sessions.get_mut(&session) else { return };
                if s.open || s.closed_at(&to) || !current {
                    return;
                }
                s.close(&to);
                let peer = s.other(&to).clone();
                self.log(|| format!("{to}: set-up timeout of {session} with {peer}"));
                let event = Event::LinkClosed { peer, session, reason: "set-up timeout".into() };
                self.at(self.t, Item::Input { to, inc, event });
            }
            Item::Register { to, inc } => self.register(&to, inc),
            Item::ServerLost { peer, inc, freeze_gen } => {
                if let Some(gen) = freeze_gen {
                    match self.hosts.get_mut(&peer) {
                        Some(h) if h.inc == inc && h.frozen && h.freeze_gen == gen => h.needs_register = true,
                        _ => return,
                    }
                }
                self.deregister(&peer, inc);
            }
            Item::Unflap(a, b) => self.net.flap(&a, &b, false),
            Item::Pump(from, to) => self.pump(&from, &to),
            Item::RelayTimeout(id) => self.relay_timed_out(id),
        }
    }

    /// Feeds `event` to `to`'s state machine, checks it, and carries out its actions.
    pub(crate) fn handle(&mut self, to: &PeerId, event: Event) {
        let now = self.now();
        let Some(host) = self.hosts.get_mut(to) else { return };
        let leave = matches!(event, Event::Leave);
        host.registered |= matches!(event, Event::Registered { .. });
        let state = &mut host.state;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.handle(now, event))).is_err() {
            self.checker.fail(self.t, "no panic", format!("{to}'s state machine panicked"));
            return;
        }
        let actions = self.hosts.get_mut(to).map(|h| h.state.drain_all()).unwrap_or_default();
        let t = self.t;
        if let Some(host) = self.hosts.get(to) {
            self.checker.after_event(t, host, &actions);
        }
        for action in actions {
            self.carry_out(to, action);
        }
        if leave {
            self.remove_host(to);
            return;
        }
        self.schedule_tick(to);
    }

    fn schedule_tick(&mut self, to: &PeerId) {
        let (t0, t) = (self.t0, self.t);
        let Some(host) = self.hosts.get_mut(to) else { return };
        let Some(deadline) = host.state.next_deadline() else { return };
        let due = deadline.saturating_duration_since(t0);
        let due_ms = (due.as_nanos().div_ceil(1_000_000) as u64).max(t);
        if host.tick_at.is_none_or(|at| at > due_ms) {
            host.tick_at = Some(due_ms);
            let inc = host.inc;
            self.at(due_ms, Item::Tick { to: to.clone(), inc });
        }
    }

    fn carry_out(&mut self, from: &PeerId, output: Output) {
        let Some(inc) = self.inc_of(from) else { return };
        match output {
            Output::Link(LinkOp::Dial { peer, session, order }) => {
                self.log(|| format!("{from} dials {peer} ({session})"));
                self.checker.count("session ids unique");
                if self.sessions.contains_key(&session) {
                    self.checker.fail(self.t, "session ids unique", format!("{from} dialed {session} twice"));
                }
                let workers = self.hosts.get(&peer).is_some_and(|h| h.role == Role::Worker)
                    && self.hosts[from].role == Role::Worker;
                self.worker_dials += workers as u64;
                self.dials += 1;
                let s = Session {
                    offerer: (from.clone(), inc),
                    answerer: (peer.clone(), None),
                    open: false,
                    closed_offerer: false,
                    closed_answerer: false,
                    answerer_open_at: 0,
                };
                self.sessions.insert(session.clone(), s);
                self.at(
                    self.t + SETUP_TIMEOUT_MS,
                    Item::SetupTimeout { to: from.clone(), inc, session: session.clone() },
                );
                self.send_signal(from, &peer, order, Signal::new(session, SignalBody::Offer { sdp: String::new() }));
            }
            Output::Link(LinkOp::Accept { peer, session, order, .. }) => {
                self.log(|| format!("{from} accepts {peer}'s offer ({session})"));
                let Some(s) = self.sessions.get_mut(&session) else { return };
                s.answerer.1 = Some(inc);
                self.at(
                    self.t + SETUP_TIMEOUT_MS,
                    Item::SetupTimeout { to: from.clone(), inc, session: session.clone() },
                );
                self.send_signal(from, &peer, order, Signal::new(session, SignalBody::Answer { sdp: String::new() }));
            }
            Output::Link(LinkOp::Signal { peer, session, body: SignalBody::Answer { .. } }) => {
                // The offerer took the answer: the handshake (ICE, DTLS, SCTP) runs now.
                self.log(|| format!("{from} takes {peer}'s answer ({session})"));
                let rtt = 2 * self.net.base(from, &peer);
                self.at(self.t + HANDSHAKE_RTTS * rtt, Item::Connect(session));
            }
            Output::Link(LinkOp::Signal { .. }) => {}
            Output::Link(LinkOp::Reject { peer, session, reason }) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.close(from);
                }
                let abort = Signal::new(session, SignalBody::Abort { reason });
                self.send_signal(from, &peer, mesh_core::PathOrder::Configured, abort);
            }
            Output::Link(LinkOp::Close { peer, session, reason }) => self.close(from, &peer, session, reason),
            Output::Send(Transmit { to, session, msg }) => {
                if !matches!(msg, MeshMessage::Heartbeat { .. }) {
                    self.log(|| format!("{from} -> {to}: {}", serde_json::to_string(&msg).unwrap_or_default()));
                }
                self.send(from, &to, session, msg)
            }
            Output::Signaling(SignalingOp::Announce(what)) => {
                self.log(|| format!("{from} announces {what:?} to the server"));
                self.announce(from, inc, what)
            }
            Output::Signaling(SignalingOp::RelayAnswered { id, outcome }) => self.relay_answered(from, id, outcome),
            Output::Emit(event) => self.on_emit(from, event),
        }
    }

    fn on_emit(&mut self, from: &PeerId, event: MeshEvent) {
        match &event {
            MeshEvent::Registry { id, page } => {
                self.answers.insert((from.clone(), *id), page.clone());
            }
            MeshEvent::Health(_) => return,
            _ => {}
        }
        self.log(|| format!("{from}: {event:?}"));
    }

    /// Starts a process for `peer` and has it register.
    pub(crate) fn spawn(&mut self, peer: PeerId, role: Role, state: MeshState) {
        let inc = self.next_inc;
        self.next_inc += 1;
        let host = Host {
            state,
            inc,
            role,
            frozen: false,
            inbox: Vec::new(),
            freeze_gen: 0,
            needs_register: true,
            tick_at: None,
            wanted: None,
            registered: false,
        };
        self.checker.on_spawn(&peer);
        self.hosts.insert(peer.clone(), host);
        self.register_later(&peer, 0);
    }

    /// The process is gone: the server notices its closed connection, its links go silent.
    pub(crate) fn remove_host(&mut self, peer: &PeerId) {
        let Some(host) = self.hosts.remove(peer) else { return };
        for s in self.sessions.values_mut() {
            let mine = (s.offerer.0 == *peer && s.offerer.1 == host.inc)
                || (s.answerer.0 == *peer && s.answerer.1 == Some(host.inc));
            if mine {
                s.close(peer);
            }
        }
        let delay = self.net.server_delay(&mut self.rng);
        self.at(self.t + delay, Item::ServerLost { peer: peer.clone(), inc: host.inc, freeze_gen: None });
    }

    /// Stops `peer` (SIGSTOP).
    pub(crate) fn freeze(&mut self, peer: &PeerId) {
        let Some(h) = self.hosts.get_mut(peer).filter(|h| !h.frozen) else { return };
        h.frozen = true;
        h.freeze_gen += 1;
        let (inc, gen) = (h.inc, h.freeze_gen);
        self.at(self.t + SERVER_IDLE_MS, Item::ServerLost { peer: peer.clone(), inc, freeze_gen: Some(gen) });
    }

    /// Continues `peer` (SIGCONT): it handles what arrived meanwhile, then its timers.
    pub(crate) fn thaw(&mut self, peer: &PeerId) {
        let Some(h) = self.hosts.get_mut(peer).filter(|h| h.frozen) else { return };
        h.frozen = false;
        let inbox = std::mem::take(&mut h.inbox);
        let register = h.needs_register;
        for item in inbox {
            self.process(item);
        }
        self.handle(peer, Event::Tick);
        if register && self.server.up {
            let after = self.rng.below(1000);
            self.register_later(peer, after);
        }
    }

    /// The incarnation the next process will get.
    pub(crate) fn next_inc(&self) -> u32 {
        self.next_inc
    }

    /// A fresh registry query id.
    pub(crate) fn query_id(&mut self) -> u64 {
        self.next_query += 1;
        self.next_query
    }
}
