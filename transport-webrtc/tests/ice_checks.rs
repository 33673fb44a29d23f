//! ICE connectivity checks between two sans-IO agents on a simulated wire, in virtual time: how
//! many round trips after the answer a pair is selected, and which early checks get answered.
//!
//! The set-up mirrors a link: the answerer has the offer and starts checking at once; the answer
//! reaches the offerer a whole round trip later (it goes through the signaling server), so the
//! answerer's first check arrives half a round trip before the answer does.

use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc_ice::mdns::MulticastDnsMode;
use rtc_ice::{Agent, AgentConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport_webrtc::testing::wire::host;

/// One-way delay of every packet on the wire.
const ONE_WAY: Duration = Duration::from_millis(40);
/// Round trip on the wire.
const RTT: Duration = Duration::from_millis(80);
/// How long the answer takes to reach the offerer through the server.
const ANSWER_DELAY: Duration = RTT;
/// Virtual time simulated before giving up.
const HORIZON: Duration = Duration::from_secs(10);

/// One agent and its single host candidate.
struct End {
    agent: Agent,
    addr: SocketAddr,
    selected_at: Option<Instant>,
}

impl End {
    fn new(t0: Instant, addr: &str) -> End {
        let config = AgentConfig { multicast_dns_mode: MulticastDnsMode::Disabled, ..Default::default() };
        let provider = rtc_ice::crypto::default_provider().expect("crypto provider");
        let mut agent = Agent::new(t0, Arc::new(config), provider).expect("agent");
        let addr: SocketAddr = addr.parse().expect("address");
        agent.add_local_candidate(host(addr)).expect("local candidate");
        End { agent, addr, selected_at: None }
    }

    fn credentials(&self) -> (String, String) {
        let c = self.agent.get_local_credentials();
        (c.ufrag.clone(), c.pwd.clone())
    }

    /// Starts checking towards `peer` with the credentials `(ufrag, pwd)` its description gave.
    fn start(&mut self, now: Instant, controlling: bool, peer: SocketAddr, creds: (String, String)) {
        let (ufrag, pwd) = creds;
        self.agent.start_connectivity_checks(now, controlling, ufrag, pwd).expect("start checks");
        self.agent.add_remote_candidate(host(peer)).expect("remote candidate");
    }
}

/// A packet in flight: when it lands, and its bytes, addressed by its transport context.
struct Flight {
    at: Instant,
    packet: TaggedBytesMut,
}

/// Two or more agents on a wire that delays every packet by [`ONE_WAY`], plus one scheduled
/// action (delivering the answer) at a fixed time.
struct Wire {
    now: Instant,
    ends: Vec<End>,
    air: Vec<Flight>,
    /// Packets each end received, by destination index.
    received: Vec<usize>,
}

impl Wire {
    fn new(now: Instant, ends: Vec<End>) -> Wire {
        let received = vec![0; ends.len()];
        Wire { now, ends, air: Vec::new(), received }
    }

    /// Collects every agent's outgoing packets onto the wire.
    fn collect(&mut self) {
        for end in &mut self.ends {
            while let Some(mut packet) = end.agent.poll_write() {
                packet.now = self.now + ONE_WAY;
                self.air.push(Flight { at: self.now + ONE_WAY, packet });
            }
            while let Some(_event) = end.agent.poll_event() {}
            if end.selected_at.is_none() && end.agent.get_selected_candidate_pair().is_some() {
                end.selected_at = Some(self.now);
            }
        }
    }

    /// Runs until `until`: delivers packets and fires agent timers in time order.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_packet = self.air.iter().map(|f| f.at).min();
            let next_timer = self.ends.iter_mut().filter_map(|e| e.agent.poll_timeout()).min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            let (due, later): (Vec<_>, Vec<_>) = self.air.drain(..).partition(|f| f.at <= self.now);
            self.air = later;
            for flight in due {
                let to = flight.packet.transport.peer_addr;
                if let Some(i) = self.ends.iter().position(|e| e.addr == to) {
                    self.received[i] += 1;
                    let from = flight.packet.transport.local_addr;
                    let packet = TaggedBytesMut {
                        now: self.now,
                        transport: TransportContext {
                            local_addr: to,
                            peer_addr: from,
                            transport_protocol: TransportProtocol::UDP,
                            ecn: None,
                        },
                        message: flight.packet.message,
                    };
                    // A packet an agent refuses is a logged rejection, not a test failure.
                    let _ = self.ends[i].agent.handle_read(packet);
                }
            }
            for end in &mut self.ends {
                if end.agent.poll_timeout().is_some_and(|t| t <= self.now) {
                    let _ = end.agent.handle_timeout(self.now);
                }
            }
        }
    }
}

/// Offerer at index 0, answerer at index 1; the answerer starts checking at `t0`, the offerer
/// when the answer lands. Returns the wire and the instant the answer landed.
fn link(t0: Instant) -> (Wire, Instant) {
    let offerer = End::new(t0, "198.18.0.1:5000");
    let mut answerer = End::new(t0, "198.18.0.2:5000");
    answerer.start(t0, false, offerer.addr, offerer.credentials());
    let answer = (answerer.credentials(), answerer.addr);
    let mut wire = Wire::new(t0, vec![offerer, answerer]);
    let answer_at = t0 + ANSWER_DELAY;
    wire.run_until(answer_at);
    wire.ends[0].start(answer_at, true, answer.1, answer.0);
    (wire, answer_at)
}

#[test]
fn both_ends_select_a_pair_one_round_trip_after_the_answer() {
    let t0 = Instant::now();
    let (mut wire, answer_at) = link(t0);
    wire.run_until(t0 + HORIZON);
    for (name, end) in ["offerer", "answerer"].iter().zip(&wire.ends) {
        let at = end.selected_at.unwrap_or_else(|| panic!("the {name} never selected a pair"));
        let after = at.saturating_duration_since(answer_at);
        // One round trip: the offerer's first check already nominates, and the answerer's
        // early check was answered, so its pair had succeeded before the nomination came.
        assert!(
            after <= RTT + Duration::from_millis(10),
            "the {name} selected its pair {after:?} after the answer; one round trip is {RTT:?}"
        );
    }
}

#[test]
fn a_check_that_arrives_before_the_answer_is_answered() {
    let t0 = Instant::now();
    let offerer = End::new(t0, "198.18.0.1:5000");
    let mut answerer = End::new(t0, "198.18.0.2:5000");
    answerer.start(t0, false, offerer.addr, offerer.credentials());
    let mut wire = Wire::new(t0, vec![offerer, answerer]);
    // The offerer never learns the answer here: the answerer's checks alone must be answered.
    wire.run_until(t0 + RTT + ONE_WAY);
    assert!(wire.received[0] > 0, "the answerer's check reached the offerer");
    assert!(wire.received[1] > 0, "the offerer answered a check that came before the answer");
}

/// A rogue that knows the offerer's address but not both of its credentials sends checks before
/// the answer; the offerer answers none of them.
fn rogue_gets_no_answer(creds: impl Fn(&End) -> (String, String)) {
    let t0 = Instant::now();
    let offerer = End::new(t0, "198.18.0.1:5000");
    let mut rogue = End::new(t0, "198.18.0.9:5000");
    rogue.start(t0, false, offerer.addr, creds(&offerer));
    let mut wire = Wire::new(t0, vec![offerer, rogue]);
    wire.run_until(t0 + Duration::from_secs(2));
    assert!(wire.received[0] > 0, "the rogue's checks reached the offerer");
    assert_eq!(wire.received[1], 0, "the offerer answered an unauthenticated check");
    assert!(wire.ends[0].agent.get_remote_candidates().is_empty(), "the rogue became a candidate");
}

#[test]
fn an_early_check_with_the_wrong_password_is_not_answered() {
    rogue_gets_no_answer(|offerer| (offerer.credentials().0, "not-the-offerers-password".into()));
}

#[test]
fn an_early_check_for_another_ufrag_is_not_answered() {
    rogue_gets_no_answer(|offerer| ("someone-else".into(), offerer.credentials().1));
}
