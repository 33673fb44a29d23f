//! Two of the stack's sans-IO peer connections, with the settings a link uses
//! ([`crate::stack_settings`]), joined by a simulated wire in virtual time: no sockets, no
//! runtime. Tests measure a link's set-up on it round trip by round trip; `mesh-bench idle
//! --floor` measures what the stack's core alone costs per link-second.
//!
//! Each end sends a message the moment its channel opens, as a link sends HELLO, and notes when
//! it first hears the other's.

use crate::WebRtcConfig;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first byte of a DTLS record of application data (content type 23).
const APPLICATION_DATA: u8 = 23;

/// Picks out a datagram by its bytes.
pub type Pick = fn(&[u8]) -> bool;

/// How the wire carries packets and descriptions.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// One-way delay of every packet between the peers.
    pub one_way: Duration,
    /// How long a description takes from one peer to the other through the server.
    pub signal: Duration,
    /// How much later than other packets sent at the same moment a STUN packet lands (the lab's
    /// jitter reorders packets sent together; here a DTLS flight overtakes a STUN response).
    pub stun_lag: Duration,
    /// How much sooner than other packets sent at the same moment DTLS application data lands.
    pub data_lead: Duration,
}

/// One peer connection at one address, and what it did.
pub struct End {
    /// The stack's peer connection.
    pub pc: RTCPeerConnection,
    /// Its one host candidate's address.
    pub addr: SocketAddr,
    /// When it first heard the other end on its channel.
    pub heard_at: Option<Instant>,
    /// When it sent each STUN Binding Request.
    pub binding_requests: Vec<Instant>,
    /// Datagrams it sent.
    pub datagrams: u64,
    /// The channel, once open.
    pub channel: Option<RTCDataChannelId>,
}

impl End {
    /// A peer connection with a link's settings and its reliable channel, at `addr`.
    pub fn new(t0: Instant, addr: SocketAddr) -> End {
        let settings = crate::stack_settings(&WebRtcConfig::default(), false);
        let mut pc = RTCPeerConnectionBuilder::new().with_setting_engine(settings).build(t0).expect("peer connection");
        // The reliable channel, negotiated on stream 0 by both sides, as a link's is.
        let init = RTCDataChannelInit { negotiated: Some(0), ..Default::default() };
        pc.create_data_channel("mesh", Some(init)).expect("data channel");
        End { pc, addr, heard_at: None, binding_requests: Vec::new(), datagrams: 0, channel: None }
    }

    /// This end's one host candidate, as it would trickle it.
    pub fn candidate(&self) -> RTCIceCandidateInit {
        host_candidate(self.addr)
    }

    /// Sends `text` on the open channel at `now`.
    pub fn send(&mut self, now: Instant, text: &str) {
        let id = self.channel.expect("an open channel");
        self.pc.data_channel(id).expect("the channel").send_text(now, text).expect("a message on an open channel");
    }
}

/// The ICE host candidate at `addr`.
pub fn host(addr: SocketAddr) -> rtc_ice::candidate::Candidate {
    CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate")
}

/// The host candidate at `addr`, as a peer would trickle it.
pub fn host_candidate(addr: SocketAddr) -> RTCIceCandidateInit {
    RTCIceCandidate::from(&host(addr)).to_json().expect("candidate init")
}

/// A packet in flight: when it lands and where.
struct Flight {
    at: Instant,
    to: SocketAddr,
    from: SocketAddr,
    bytes: bytes::BytesMut,
}

/// The two peers (the offerer first) and the packets between them.
pub struct Wire {
    /// The virtual time.
    pub now: Instant,
    /// The offerer and the answerer.
    pub ends: [End; 2],
    air: Vec<Flight>,
    timing: Timing,
    /// The first datagram this picks out is lost (once).
    pub lose: Option<Pick>,
    /// Instants at which a packet landed or a timer of either end was due: the wake-ups a
    /// driver of these two connections would have had.
    pub wakes: u64,
}

impl Wire {
    /// Sets up one link from `t0`, the offer leaving then and `edit` applied to it on its way
    /// (as a rogue would), losing the first datagram `lose` picks out; returns the wire at
    /// `until`.
    pub fn link(
        t0: Instant,
        timing: Timing,
        edit: Option<&dyn Fn(RTCSessionDescription) -> RTCSessionDescription>,
        lose: Option<Pick>,
        until: Instant,
    ) -> Wire {
        let mut offerer = End::new(t0, SocketAddr::from(([198, 18, 0, 1], 5000)));
        let answerer = End::new(t0, SocketAddr::from(([198, 18, 0, 2], 5000)));
        let mut offer = offerer.pc.create_offer(None).expect("offer");
        offerer.pc.set_local_description(t0, offer.clone()).expect("local offer");
        if let Some(edit) = edit {
            offer = edit(offer);
        }
        offerer.pc.add_local_candidate(offerer.candidate()).expect("offerer's candidate");
        let offer_candidate = offerer.candidate();
        let mut wire = Wire { now: t0, ends: [offerer, answerer], air: Vec::new(), timing, lose, wakes: 0 };

        let answered = t0 + timing.signal;
        wire.run_until(answered);
        let answerer = &mut wire.ends[1];
        answerer.pc.set_remote_description(answered, offer).expect("remote offer");
        answerer.pc.add_remote_candidate(offer_candidate).expect("offerer's candidate at the answerer");
        let answer = answerer.pc.create_answer(None).expect("answer");
        answerer.pc.set_local_description(answered, answer.clone()).expect("local answer");
        let candidate = answerer.candidate();
        answerer.pc.add_local_candidate(candidate.clone()).expect("answerer's candidate");

        let back = answered + timing.signal;
        wire.run_until(back);
        let offerer = &mut wire.ends[0];
        offerer.pc.set_remote_description(back, answer).expect("remote answer");
        offerer.pc.add_remote_candidate(candidate).expect("answerer's candidate at the offerer");
        wire.run_until(until);
        wire
    }

    /// Puts every peer's outgoing packets on the wire and notes channels that opened.
    fn collect(&mut self) {
        for end in &mut self.ends {
            while let Some(packet) = end.pc.poll_write() {
                end.datagrams += 1;
                let stun = packet.message.first().is_some_and(|b| *b < 2);
                if packet.message.starts_with(&[0, 1]) {
                    end.binding_requests.push(self.now);
                }
                let data = packet.message.first() == Some(&APPLICATION_DATA);
                let at = self.now + self.timing.one_way + if stun { self.timing.stun_lag } else { Duration::ZERO }
                    - if data { self.timing.data_lead } else { Duration::ZERO };
                let (to, from) = (packet.transport.peer_addr, packet.transport.local_addr);
                if self.lose.is_some_and(|pick| pick(&packet.message)) {
                    self.lose = None;
                    continue;
                }
                self.air.push(Flight { at, to, from, bytes: packet.message });
            }
            let mut sent = false;
            while let Some(event) = end.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = event {
                    end.channel = Some(id);
                    end.send(self.now, "hello");
                    sent = true;
                }
            }
            while let Some(message) = end.pc.poll_read() {
                if let RTCMessage::DataChannelMessage(..) = message.message {
                    end.heard_at.get_or_insert(self.now);
                }
            }
            // What the message queued leaves with the next round of polling.
            if sent {
                return self.collect();
            }
        }
    }

    /// Runs until `until`: delivers packets and fires timers in time order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_packet = self.air.iter().map(|f| f.at).min();
            let next_timer = self.ends.iter_mut().filter_map(|e| e.pc.poll_timeout()).min();
            let Some(next) = [next_packet, next_timer].into_iter().flatten().min().filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            self.wakes += 1;
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
                // A packet a peer refuses is its logged rejection, not a failure.
                let _ = end.pc.handle_read(TaggedBytesMut { now: self.now, transport, message: flight.bytes });
            }
            // Everything that landed at once is read before any event is polled, as the
            // driver reads a burst of datagrams from its socket.
            for end in &mut self.ends {
                if end.pc.poll_timeout().is_some_and(|t| t <= self.now) {
                    let _ = end.pc.handle_timeout(self.now);
                }
            }
        }
    }
}
