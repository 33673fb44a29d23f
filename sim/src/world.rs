//! The simulated world: nodes running the real [`MeshState`], the network between them and the
//! signaling server, driven by one queue of timed items. It plays the driver's part for every
//! node: it carries out each action the way `MeshNode` would over a real network.

use crate::check::{Checker, Violation};
use crate::net::{Network, Session, Sessions};
use crate::rng::Rng;
use crate::schedule::Net;
use crate::server::{Registration, Server};
use mesh_core::{
    Action, Announcement, Event, MeshEvent, MeshMessage, MeshState, PathOrder, PeerId, RegistryPage, Role, SessionId,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

/// How long a link attempt may take before the driver gives it up (the node's set-up timeout).
pub const SETUP_TIMEOUT_MS: u64 = 10_000;
/// How long the server keeps a silent connection (a frozen process) before dropping it.
pub const SERVER_IDLE_MS: u64 = 45_000;
/// Longest reconnect backoff of a node's WebSocket.
pub const RECONNECT_MAX_MS: u64 = 10_000;
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

/// Something due at a time.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Input {
        to: PeerId,
        inc: u32,
        event: Event,
    },
    LinkMsg {
        to: PeerId,
        inc: u32,
        from: PeerId,
        session: SessionId,
        msg: MeshMessage,
    },
    Tick {
        to: PeerId,
        inc: u32,
    },
    Connect(SessionId),
    SetupTimeout {
        to: PeerId,
        inc: u32,
        session: SessionId,
    },
    Register {
        to: PeerId,
        inc: u32,
    },
    /// The server notices `peer`'s connection is gone (closed, or idle while frozen).
    ServerLost {
        peer: PeerId,
        inc: u32,
        freeze_gen: Option<u32>,
    },
    Unflap(PeerId, PeerId),
    /// Deliver what is due on the ordered stream from one node to another.
    Pump(PeerId, PeerId),
}

struct Queued {
    t: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq)) // earliest first
    }
}

/// The whole simulated room.
pub struct World {
    /// Virtual time, ms since the start.
    pub t: u64,
    t0: Instant,
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
    server_fifo: BTreeMap<PeerId, u64>,
    /// Ordered streams by direction.
    pub(crate) pipes: BTreeMap<(PeerId, PeerId), crate::pipe::Pipe>,
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

    fn inc_of(&self, p: &PeerId) -> Option<u32> {
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
                // The driver hands a message on only if it came over the session that is the link.
                if self.hosts[&to].state.link_session(&from) == Some(&session) {
                    self.handle(&to, Event::Message { from, msg });
                }
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
        let mut actions = Vec::new();
        while let Some(a) = self.hosts.get_mut(to).and_then(|h| h.state.poll_action()) {
            actions.push(a);
        }
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

    fn carry_out(&mut self, from: &PeerId, action: Action) {
        let Some(inc) = self.inc_of(from) else { return };
        match action {
            Action::Dial { peer, session } => {
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
                self.signal(from, &peer, Event::OfferReceived { from: from.clone(), session });
            }
            Action::Accept { peer, session } => {
                let Some(s) = self.sessions.get_mut(&session) else { return };
                s.answerer.1 = Some(inc);
                self.at(
                    self.t + SETUP_TIMEOUT_MS,
                    Item::SetupTimeout { to: from.clone(), inc, session: session.clone() },
                );
                let answer = Event::AnswerReceived { from: from.clone(), session: session.clone() };
                if let Some(arrives) = self.signal(from, &peer, answer) {
                    let rtt = 2 * self.net.base(from, &peer);
                    self.at(arrives + HANDSHAKE_RTTS * rtt, Item::Connect(session));
                }
            }
            Action::Reject { peer, session, .. } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.close(from);
                }
                self.signal(from, &peer, Event::SessionAborted { from: from.clone(), session });
            }
            Action::Close { peer, session, reason } => self.close(from, &peer, session, reason),
            Action::Send { to, msg } => {
                if !matches!(msg, MeshMessage::Heartbeat { .. }) {
                    self.log(|| format!("{from} -> {to}: {}", serde_json::to_string(&msg).unwrap_or_default()));
                }
                self.send(from, &to, msg)
            }
            Action::Announce(what) => {
                self.log(|| format!("{from} announces {what:?} to the server"));
                self.announce(from, inc, what)
            }
            Action::DeliverSignal { .. } | Action::RelayAnswered { .. } => {}
            Action::Emit(event) => self.on_emit(from, event),
        }
    }

    fn on_emit(&mut self, from: &PeerId, event: MeshEvent) {
        match &event {
            MeshEvent::Registry { id, page } => {
                self.answers.insert((from.clone(), *id), page.clone());
            }
            MeshEvent::Health(_) | MeshEvent::AppMessage { .. } => return,
            _ => {}
        }
        self.log(|| format!("{from}: {event:?}"));
    }

    fn close(&mut self, from: &PeerId, peer: &PeerId, session: SessionId, reason: String) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.closed_at(from) {
            return;
        }
        let was_live = s.live();
        s.close(from);
        if was_live {
            // The transport flushes what was sent, then tells the other end (once the packets
            // get through: a cut holds it, and the other end may give up on silence first).
            let inc = if &s.offerer.0 == peer { Some(s.offerer.1) } else { s.answerer.1 };
            if let Some(inc) = inc {
                let event = Event::LinkClosed { peer: from.clone(), session: session.clone(), reason };
                self.push_ordered(from, peer, session, Item::Input { to: peer.clone(), inc, event });
            }
        } else if !s.open {
            self.signal(from, peer, Event::SessionAborted { from: from.clone(), session });
        }
    }

    fn send(&mut self, from: &PeerId, to: &PeerId, msg: MeshMessage) {
        let Some(session) = self.hosts[from].state.link_session(to).cloned() else { return };
        let Some(s) = self.sessions.get(&session) else { return };
        if !s.live() {
            return;
        }
        let inc = if &s.offerer.0 == to { Some(s.offerer.1) } else { s.answerer.1 };
        let Some(inc) = inc else { return };
        let opened_there = if &s.answerer.0 == to { s.answerer_open_at } else { 0 };
        let item = Item::LinkMsg { to: to.clone(), inc, from: from.clone(), session: session.clone(), msg };
        if !matches!(&item, Item::LinkMsg { msg: MeshMessage::Heartbeat { .. }, .. }) {
            self.push_ordered(from, to, session, item);
            return;
        }
        // Heartbeats: unordered, partly reliable, and never before the link opened there.
        if self.net.is_cut(from, to) {
            return;
        }
        let Some(sent) = self.net.unordered_sent(&mut self.rng, self.t) else { return };
        let at = (sent + self.net.delay(&mut self.rng, from, to)).max(opened_there);
        self.at(at, item);
    }

    /// Sends a signal the way the node's chain would; returns when it arrives, if a path exists.
    fn signal(&mut self, from: &PeerId, to: &PeerId, event: Event) -> Option<u64> {
        let inc_to = self.inc_of(to)?;
        let inc_from = self.inc_of(from)?;
        let by_server = (self.server.up && self.server.has(from, inc_from) && self.server.has(to, inc_to))
            .then(|| self.net.server_delay(&mut self.rng) * 2);
        let by_relay = self.relay_delay(from, to);
        let delay = match self.hosts[from].state.path_order(to) {
            PathOrder::RendezvousFirst => by_server.or(by_relay),
            PathOrder::Configured => by_relay.or(by_server),
        };
        let Some(delay) = delay else {
            self.log(|| format!("{from}: signal to {to} lost: no path"));
            return None;
        };
        let at = if by_server == Some(delay) {
            self.server_sends(to, inc_to, delay, event)
        } else {
            let at = self.t + delay;
            self.at(at, Item::Input { to: to.clone(), inc: inc_to, event });
            at
        };
        Some(at)
    }

    /// Delivers `event` from the server to `to`, `delay` ms from now but never before what the
    /// server sent it earlier (one WebSocket: first in, first out). Returns the arrival time.
    fn server_sends(&mut self, to: &PeerId, inc: u32, delay: u64, event: Event) -> u64 {
        let last = self.server_fifo.entry(to.clone()).or_insert(0);
        let at = (self.t + delay).max(*last);
        *last = at;
        self.at(at, Item::Input { to: to.clone(), inc, event });
        at
    }

    /// The delay through the sender's admin, if it is a live worker linked to both ends.
    fn relay_delay(&mut self, from: &PeerId, to: &PeerId) -> Option<u64> {
        let relay = self.hosts[from].state.admin().0.cloned()?;
        let h = self.hosts.get(&relay)?;
        if &relay == from || &relay == to || h.frozen || h.role != Role::Worker {
            return None;
        }
        if !self.carries(from, &relay) || !self.carries(&relay, to) {
            return None;
        }
        Some(self.net.delay(&mut self.rng, from, &relay) + self.net.delay(&mut self.rng, &relay, to))
    }

    /// True when `a`'s link to `b` is live and its packets get through.
    pub fn carries(&self, a: &PeerId, b: &PeerId) -> bool {
        let Some(session) = self.hosts.get(a).and_then(|h| h.state.link_session(b)) else { return false };
        self.sessions.get(session).is_some_and(|s| s.live()) && !self.net.is_cut(a, b)
    }

    fn connect(&mut self, session: &SessionId) {
        let Some(s) = self.sessions.get(session) else { return };
        let ((a, inc_a), (b, Some(inc_b))) = (s.offerer.clone(), s.answerer.clone()) else { return };
        let up = |w: &Self, p: &PeerId, inc: u32| w.hosts.get(p).is_some_and(|h| h.inc == inc && !h.frozen);
        if s.closed_offerer
            || s.closed_answerer
            || !up(self, &a, inc_a)
            || !up(self, &b, inc_b)
            || self.net.is_cut(&a, &b)
        {
            return; // the handshake fails: both ends give up at their set-up timeout
        }
        if let Some(s) = self.sessions.get_mut(session) {
            s.open = true;
        }
        self.checker.on_connect(self.t, session, &self.sessions);
        // The answerer sees the link open before anything the offerer sends on it.
        let (t, session) = (self.t, session.clone());
        self.at(
            t,
            Item::Input {
                to: a.clone(),
                inc: inc_a,
                event: Event::LinkOpened { peer: b.clone(), session: session.clone() },
            },
        );
        let opened = Item::Input {
            to: b.clone(),
            inc: inc_b,
            event: Event::LinkOpened { peer: a.clone(), session: session.clone() },
        };
        let at_b = self.push_ordered(&a, &b, session.clone(), opened);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.answerer_open_at = at_b;
        }
    }

    fn announce(&mut self, from: &PeerId, inc: u32, what: Announcement) {
        if !self.server.up || !self.server.has(from, inc) {
            return;
        }
        match what {
            Announcement::Admin => {
                self.server.first = None;
                if self.server.admin.replace(from.clone()).as_ref() == Some(from) {
                    return; // told again: the server tells nobody
                }
                for (p, pinc) in self.server.others(from) {
                    let delay = self.net.server_delay(&mut self.rng) * 2;
                    self.server_sends(&p, pinc, delay, Event::AdminAnnounced(from.clone()));
                }
            }
            Announcement::Withdraw => {
                if self.server.admin.as_ref() == Some(from) {
                    self.server.admin = None;
                }
            }
            Announcement::Leaving => self.deregister(from, inc),
        }
    }

    /// The server drops `peer`'s registration and tells everyone else it left.
    pub(crate) fn deregister(&mut self, peer: &PeerId, inc: u32) {
        if !self.server.up || !self.server.remove(peer, inc) {
            return;
        }
        self.log(|| format!("server: {peer} left"));
        for (p, pinc) in self.server.others(peer) {
            let delay = self.net.server_delay(&mut self.rng);
            self.server_sends(&p, pinc, delay, Event::PeerLeft(peer.clone()));
        }
    }

    fn register(&mut self, peer: &PeerId, inc: u32) {
        let Some(host) = self.hosts.get_mut(peer).filter(|h| h.inc == inc) else { return };
        if !self.server.up || host.frozen {
            host.needs_register = true;
            return;
        }
        let (role, rejoin) = (host.role, host.registered);
        let record = host.state.room_state().get(peer).cloned().filter(|_| role == Role::Worker);
        let full = role == Role::Worker && self.server.workers() >= 10;
        if self.server.holds_name(peer) || full {
            // duplicate_peer (the old connection is not gone yet) or room_full: try again later.
            self.at(self.t + 1000, Item::Register { to: peer.clone(), inc });
            return;
        }
        host.needs_register = false;
        self.log(|| format!("server: {peer} registered"));
        let members = self.server.members_for(peer);
        let admin = self.server.admin.clone().or_else(|| self.server.first.clone());
        if role == Role::Worker && !rejoin && self.server.workers() == 0 && self.server.admin.is_none() {
            self.server.first = Some(peer.clone()); // not a rejoin: the room's first worker
        }
        self.server.registered.push(Registration { peer: peer.clone(), inc, role, record: record.clone() });
        let delay = self.net.server_delay(&mut self.rng);
        self.server_sends(peer, inc, delay, Event::Registered { members, admin });
        if let Some(record) = record {
            let member = mesh_core::MemberInfo::new(peer.clone(), record);
            for (p, pinc) in self.server.others(peer) {
                let delay = self.net.server_delay(&mut self.rng);
                self.server_sends(&p, pinc, delay, Event::PeerJoined(member.clone()));
            }
        }
    }

    /// Schedules a registration of `peer` after `after` ms plus the trip to the server.
    pub(crate) fn register_later(&mut self, peer: &PeerId, after: u64) {
        let Some(inc) = self.inc_of(peer) else { return };
        let at = self.t + after + self.net.server_delay(&mut self.rng);
        self.at(at, Item::Register { to: peer.clone(), inc });
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
