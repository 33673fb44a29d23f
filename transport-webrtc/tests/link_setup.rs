//! One link's whole set-up, ICE to open data channel, between two of the stack's sans-IO peer
//! connections with the settings a link uses ([`stack_settings`]), on a simulated wire in virtual
//! time: how many round trips it costs, and that packets the wire reorders cost none.
//!
//! The offer and the answer each take a round trip through the signaling server; every packet
//! between the peers takes [`ONE_WAY`]. The lab's jitter reorders packets sent at the same
//! moment, so here a STUN packet always takes [`STUN_LAG`] longer than anything else: a DTLS
//! flight sent beside a STUN response overtakes it.

use rtc::data_channel::RTCDataChannelInit;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use transport_webrtc::{stack_settings, WebRtcConfig};

/// One-way delay of every packet between the peers.
const ONE_WAY: Duration = Duration::from_millis(40);
/// Round trip between the peers.
const RTT: Duration = Duration::from_millis(80);
/// How long a description takes from one peer to the other through the server.
const SIGNAL: Duration = RTT;
/// How much later than other packets sent at the same moment a STUN packet lands.
const STUN_LAG: Duration = Duration::from_millis(3);
/// Virtual time simulated before giving up.
const HORIZON: Duration = Duration::from_secs(20);

/// One peer connection at one address, and when its reliable channel opened.
struct End {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    open_at: Option<Instant>,
}

impl End {
    fn new(t0: Instant, addr: &str) -> End {
        let settings = stack_settings(&WebRtcConfig::default(), false);
        let mut pc = RTCPeerConnectionBuilder::new().with_setting_engine(settings).build(t0).expect("peer connection");
        // The reliable channel, negotiated on stream 0 by both sides, as a link's is.
        let init = RTCDataChannelInit { negotiated: Some(0), ..Default::default() };
        pc.create_data_channel("mesh", Some(init)).expect("data channel");
        End { pc, addr: addr.parse().expect("address"), open_at: None }
    }

    /// This end's one host candidate, as it would trickle it.
    fn candidate(&self) -> RTCIceCandidateInit {
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: self.addr.ip().to_string(),
                port: self.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("host candidate");
        RTCIceCandidate::from(&host).to_json().expect("candidate init")
    }
}

/// A packet in flight: when it lands and where.
struct Flight {
    at: Instant,
    to: SocketAddr,
    from: SocketAddr,
    bytes: bytes::BytesMut,
}

/// The two peers and the packets between them.
struct Wire {
    now: Instant,
    ends: [End; 2],
    air: Vec<Flight>,
}

impl Wire {
    /// Puts every peer's outgoing packets on the wire and notes channels that opened.
    fn collect(&mut self) {
        for end in &mut self.ends {
            while let Some(packet) = end.pc.poll_write() {
                let stun = packet.message.first().is_some_and(|b| *b < 2);
                let at = self.now + ONE_WAY + if stun { STUN_LAG } else { Duration::ZERO };
                let (to, from) = (packet.transport.peer_addr, packet.transport.local_addr);
                self.air.push(Flight { at, to, from, bytes: packet.message });
            }
            while let Some(event) = end.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) = event {
                    end.open_at.get_or_insert(self.now);
                }
            }
            while end.pc.poll_read().is_some() {}
        }
    }

    /// Runs until `until`: delivers packets and fires timers in time order.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_packet = self.air.iter().map(|f| f.at).min();
            let next_timer = self.ends.iter_mut().filter_map(|e| e.pc.poll_timeout()).min();
            let Some(next) = [next_packet, next_timer].into_iter().flatten().min().filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            let (mut due, later): (Vec<_>, Vec<_>) = self.air.drain(..).partition(|f| f.at <= self.now);
            self.air = later;
            due.sort_by_key(|f| f.at);
            for flight in due {
                let Some(end) = self.ends.iter_mut().find(|e| e.addr == flight.to) else { continue };
                let transport = TransportContext {
                    local_addr: flight.to,
                    peer_addr: flight.from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                };
                // A packet a peer refuses is its logged rejection, not a test failure.
                let _ = end.pc.handle_read(TaggedBytesMut { now: self.now, transport, message: flight.bytes });
                self.collect();
            }
            for end in &mut self.ends {
                if end.pc.poll_timeout().is_some_and(|t| t <= self.now) {
                    let _ = end.pc.handle_timeout(self.now);
                }
            }
        }
    }
}

/// Sets up one link from `t0`, the offer leaving then, and returns the wire after [`HORIZON`].
fn link(t0: Instant) -> Wire {
    let mut offerer = End::new(t0, "198.18.0.1:5000");
    let answerer = End::new(t0, "198.18.0.2:5000");
    let offer = offerer.pc.create_offer(None).expect("offer");
    offerer.pc.set_local_description(t0, offer.clone()).expect("local offer");
    offerer.pc.add_local_candidate(offerer.candidate()).expect("offerer's candidate");
    let offer_candidate = offerer.candidate();
    let mut wire = Wire { now: t0, ends: [offerer, answerer], air: Vec::new() };

    wire.run_until(t0 + SIGNAL);
    let answerer = &mut wire.ends[1];
    answerer.pc.set_remote_description(t0 + SIGNAL, offer).expect("remote offer");
    answerer.pc.add_remote_candidate(offer_candidate).expect("offerer's candidate at the answerer");
    let answer = answerer.pc.create_answer(None).expect("answer");
    answerer.pc.set_local_description(t0 + SIGNAL, answer.clone()).expect("local answer");
    let candidate = answerer.candidate();
    answerer.pc.add_local_candidate(candidate.clone()).expect("answerer's candidate");

    wire.run_until(t0 + 2 * SIGNAL);
    let offerer = &mut wire.ends[0];
    offerer.pc.set_remote_description(t0 + 2 * SIGNAL, answer).expect("remote answer");
    offerer.pc.add_remote_candidate(candidate).expect("answerer's candidate at the offerer");
    wire.run_until(t0 + HORIZON);
    wire
}

#[test]
fn a_link_opens_four_and_a_half_round_trips_after_the_answer_even_when_dtls_overtakes_stun() {
    let t0 = Instant::now();
    let wire = link(t0);
    let answer_at = t0 + 2 * SIGNAL;
    for (name, end) in ["offerer", "answerer"].iter().zip(&wire.ends) {
        let at = end.open_at.unwrap_or_else(|| panic!("the {name}'s channel never opened"));
        let after = at.saturating_duration_since(answer_at);
        // ICE one round trip; DTLS 1.5 (no HelloVerifyRequest) to the answerer's Finished; the
        // SCTP handshake it then starts, 2. The lags are STUN responses that DTLS overtook.
        let budget = 9 * RTT / 2 + 2 * STUN_LAG + Duration::from_millis(5);
        assert!(after <= budget, "the {name}'s channel opened {after:?} after the answer; the budget is {budget:?}");
    }
}
