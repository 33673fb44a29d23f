//! The simulated network: per-pair latency with jitter, loss on the unordered channel, cuts
//! (partitions and flaps) and the transport sessions between nodes.

use crate::rng::Rng;
use crate::schedule::Net;
use mesh_core::{PeerId, SessionId};
use std::collections::BTreeMap;

/// One transport session (a link attempt, then perhaps a link) between two nodes.
#[derive(Debug, Clone)]
pub struct Session {
    /// The offering node and its incarnation.
    pub offerer: (PeerId, u32),
    /// The answering node, and its incarnation once it accepted.
    pub answerer: (PeerId, Option<u32>),
    /// The handshake completed.
    pub open: bool,
    /// The offerer's end is closed.
    pub closed_offerer: bool,
    /// The answerer's end is closed.
    pub closed_answerer: bool,
    /// When the answerer learns the link opened (ms).
    pub answerer_open_at: u64,
}

impl Session {
    /// True while both ends are open and the handshake completed: the link carries data.
    pub fn live(&self) -> bool {
        self.open && !self.closed_offerer && !self.closed_answerer
    }

    /// The other end from `me`.
    pub fn other(&self, me: &PeerId) -> &PeerId {
        if &self.offerer.0 == me {
            &self.answerer.0
        } else {
            &self.offerer.0
        }
    }

    /// Closes `me`'s end.
    pub fn close(&mut self, me: &PeerId) {
        if &self.offerer.0 == me {
            self.closed_offerer = true;
        } else {
            self.closed_answerer = true;
        }
    }

    /// True when `me`'s end is closed.
    pub fn closed_at(&self, me: &PeerId) -> bool {
        if &self.offerer.0 == me {
            self.closed_offerer
        } else {
            self.closed_answerer
        }
    }
}

/// Latency, loss and cuts between nodes.
pub struct Network {
    params: Net,
    seed: u64,
    /// Group of each node in the current partition (a node in no group is in group 0).
    groups: BTreeMap<PeerId, usize>,
    /// Pairs whose packets are all dropped, with how many flaps hold each.
    flaps: BTreeMap<(PeerId, PeerId), u32>,
}

fn pair(a: &PeerId, b: &PeerId) -> (PeerId, PeerId) {
    if a < b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl Network {
    /// A whole network with `params`.
    pub fn new(params: Net, seed: u64) -> Self {
        Self { params, seed, groups: BTreeMap::new(), flaps: BTreeMap::new() }
    }

    /// The parameters.
    pub fn params(&self) -> &Net {
        &self.params
    }

    /// The base one-way latency of a pair, in ms: drawn once per pair from the seed.
    pub fn base(&self, a: &PeerId, b: &PeerId) -> u64 {
        let (x, y) = pair(a, b);
        let mut h = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for byte in x.as_str().bytes().chain([0]).chain(y.as_str().bytes()) {
            h = (h ^ byte as u64).wrapping_mul(0x100_0000_01b3);
        }
        1 + Rng::new(h).below(self.params.latency_ms.max(1))
    }

    /// One message's one-way delay from `a` to `b`.
    pub fn delay(&self, rng: &mut Rng, a: &PeerId, b: &PeerId) -> u64 {
        self.base(a, b) + rng.below(self.params.jitter_ms + 1)
    }

    /// One message's delay between a node and the signaling server.
    pub fn server_delay(&self, rng: &mut Rng) -> u64 {
        self.params.server_ms + rng.below(self.params.jitter_ms + 1)
    }

    /// When the transmission of a heartbeat sent at `now` that gets through leaves, or `None`
    /// if every one is lost: the heartbeat channel retransmits (SCTP, first timeout 250 ms,
    /// doubling) for the channel's 1 s lifetime, and each transmission is lost with `loss_pct`.
    pub fn unordered_sent(&self, rng: &mut Rng, now: u64) -> Option<u64> {
        let (mut offset, mut rto) = (0, 250);
        while offset < 1000 {
            if !rng.chance(self.params.loss_pct as f64 / 100.0) {
                return Some(now + offset);
            }
            offset += rto;
            rto *= 2;
        }
        None
    }

    /// True when packets between `a` and `b` are dropped.
    pub fn is_cut(&self, a: &PeerId, b: &PeerId) -> bool {
        let group = |p: &PeerId| self.groups.get(p).copied().unwrap_or(0);
        group(a) != group(b) || self.flaps.contains_key(&pair(a, b))
    }

    /// Cuts the links between `groups`.
    pub fn partition(&mut self, groups: &[Vec<String>]) {
        self.groups.clear();
        for (i, g) in groups.iter().enumerate() {
            for name in g {
                if let Ok(p) = PeerId::new(name.as_str()) {
                    self.groups.insert(p, i);
                }
            }
        }
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.groups.clear();
    }

    /// Starts (`on`) or ends one flap of the pair.
    pub fn flap(&mut self, a: &PeerId, b: &PeerId, on: bool) {
        let key = pair(a, b);
        let count = self.flaps.entry(key.clone()).or_insert(0);
        if on {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.flaps.remove(&key);
            }
        }
    }

    /// Ends every flap and the partition.
    pub fn heal_all(&mut self) {
        self.groups.clear();
        self.flaps.clear();
    }
}

/// Every session ever dialed in a run, by id.
pub type Sessions = BTreeMap<SessionId, Session>;
