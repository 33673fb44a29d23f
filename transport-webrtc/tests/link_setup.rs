//! One link's whole set-up, ICE to the first message each end hears, between two of the stack's
//! sans-IO peer connections with the settings a link uses (`stack_settings`), on a simulated
//! wire in virtual time: how many round trips it costs, and that packets the wire reorders cost
//! none. Each end sends a message the moment its channel opens, as a link sends HELLO, and the
//! link is open at an end when it hears the other's. Once open, when its ICE consent checks go.
//!
//! The offer and the answer each take a round trip through the signaling server; every packet
//! between the peers takes [`ONE_WAY`]. The lab's jitter reorders packets sent at the same
//! moment, so here a STUN packet always takes [`STUN_LAG`] longer than anything else: a DTLS
//! flight sent beside a STUN response overtakes it.

use base64::Engine;
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::time::{Duration, Instant};
use transport_webrtc::testing::wire::{Pick, Timing, Wire};
use transport_webrtc::CONSENT_INTERVAL;

/// One-way delay of every packet between the peers.
const ONE_WAY: Duration = Duration::from_millis(40);
/// Round trip between the peers.
const RTT: Duration = Duration::from_millis(80);
/// How long a description takes from one peer to the other through the server.
const SIGNAL: Duration = RTT;
/// How much later than other packets sent at the same moment a STUN packet lands.
const STUN_LAG: Duration = Duration::from_millis(3);
/// How much sooner than other packets sent at the same moment DTLS application data lands in the
/// test where data overtakes the handshake's last flight.
const DATA_LEAD: Duration = Duration::from_millis(2);
/// Virtual time simulated before giving up.
const HORIZON: Duration = Duration::from_secs(20);

/// Sets up one link from `t0`, the offer leaving then, and returns the wire after [`HORIZON`].
fn link(t0: Instant, data_lead: Duration) -> Wire {
    link_with(t0, data_lead, None)
}

/// The offer's `a=sctp-init` line replaced by `a=sctp-init:{value}`, as a rogue would send it.
fn with_sctp_init(offer: &RTCSessionDescription, value: &str) -> RTCSessionDescription {
    let sdp: Vec<String> = offer
        .sdp
        .split("\r\n")
        .map(|line| if line.starts_with("a=sctp-init:") { format!("a=sctp-init:{value}") } else { line.to_owned() })
        .collect();
    assert_ne!(sdp.join("\r\n"), offer.sdp, "a link's offer carries a=sctp-init");
    RTCSessionDescription::offer(sdp.join("\r\n")).expect("an offer that still parses")
}

/// What a rogue offerer puts in its `a=sctp-init`.
enum Rogue<'a> {
    /// This value instead of its INIT.
    Value(&'a str),
    /// Its INIT, edited.
    Edit(&'a dyn Fn(&RTCSessionDescription) -> String),
}

/// [`link`], with the offer's `a=sctp-init` replaced as `rogue` says on its way to the answerer.
fn link_with(t0: Instant, data_lead: Duration, rogue: Option<Rogue<'_>>) -> Wire {
    link_losing(t0, data_lead, rogue, None)
}

/// [`link_with`], losing the first datagram `lose` picks out.
fn link_losing(t0: Instant, data_lead: Duration, rogue: Option<Rogue<'_>>, lose: Option<Pick>) -> Wire {
    let timing = Timing { one_way: ONE_WAY, signal: SIGNAL, stun_lag: STUN_LAG, data_lead };
    let edit = move |offer: RTCSessionDescription| match &rogue {
        Some(Rogue::Value(value)) => with_sctp_init(&offer, value),
        Some(Rogue::Edit(edit)) => with_sctp_init(&offer, &edit(&offer)),
        None => offer,
    };
    Wire::link(t0, timing, Some(&edit), lose, t0 + HORIZON)
}

/// `rtts` round trips, plus the two STUN lags a link may meet and 5 ms for processing.
fn budget(rtts: u32) -> Duration {
    rtts * RTT + 2 * STUN_LAG + Duration::from_millis(5)
}

/// Checks that each end heard the other within `budget` of the answer reaching the offerer;
/// `case` names the case in a failure.
fn assert_heard_within(t0: Instant, wire: &Wire, budget: Duration, case: &str) {
    let answer_at = t0 + 2 * SIGNAL;
    for (name, end) in ["offerer", "answerer"].iter().zip(&wire.ends) {
        let at = end.heard_at.unwrap_or_else(|| panic!("{case}: the {name} never heard the other end"));
        let after = at.saturating_duration_since(answer_at);
        assert!(
            after <= budget,
            "{case}: the {name} heard the other end {after:?} after the answer; the budget is {budget:?}"
        );
    }
}

#[test]
fn a_link_opens_three_round_trips_after_the_answer_even_when_dtls_overtakes_stun() {
    let t0 = Instant::now();
    let wire = link(t0, Duration::ZERO);
    // ICE, one round trip; DTLS, 1.5 (no HelloVerifyRequest) to the answerer's Finished, when
    // the offerer's association is up at once (SNAP) and its message leaves beside its own
    // Finished; the answerer's message, half a round trip back. Without SNAP the SCTP
    // handshake adds two round trips. The lags are STUN responses that DTLS overtook.
    assert_heard_within(t0, &wire, budget(3), "in order");
}

#[test]
fn a_first_message_that_overtakes_the_last_dtls_flight_is_not_lost() {
    let t0 = Instant::now();
    // The offerer's first message lands before the Finished sent just ahead of it: the
    // answerer must keep it until its handshake completes and deliver it on the channel, not
    // drop it (which would leave this end waiting for the next message).
    let wire = link(t0, DATA_LEAD);
    assert_heard_within(t0, &wire, budget(3), "data first");
}

/// An SCTP INIT chunk (`kind` 1) or INIT ACK (2) with these fields, in base64 as SDP carries it.
fn init_chunk(kind: u8, tag: u32, window: u32, streams: u16) -> String {
    let mut chunk = vec![kind, 0, 0, 20];
    chunk.extend_from_slice(&tag.to_be_bytes());
    chunk.extend_from_slice(&window.to_be_bytes());
    chunk.extend_from_slice(&streams.to_be_bytes());
    chunk.extend_from_slice(&streams.to_be_bytes());
    chunk.extend_from_slice(&1u32.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(chunk)
}

#[test]
fn an_offer_whose_sctp_init_is_not_an_init_links_by_the_sctp_handshake() {
    let rogues = [
        ("not base64", "not base64!".to_owned()),
        ("an empty chunk", String::new()),
        ("an INIT ACK", init_chunk(2, 7, 65_536, 16)),
        ("a zero tag", init_chunk(1, 0, 65_536, 16)),
        ("zero streams", init_chunk(1, 7, 65_536, 0)),
        ("a window under 1500 bytes", init_chunk(1, 7, 1_000, 16)),
        ("a truncated chunk", base64::engine::general_purpose::STANDARD.encode([1u8, 0, 0, 20, 0, 0])),
        ("a huge length", base64::engine::general_purpose::STANDARD.encode([1u8, 0, 255, 255, 0, 0, 0, 7])),
        ("64 KiB of noise", base64::engine::general_purpose::STANDARD.encode(vec![0xa5u8; 65_536])),
    ];
    for (what, value) in rogues {
        let t0 = Instant::now();
        let wire = link_with(t0, Duration::ZERO, Some(Rogue::Value(&value)));
        // The answerer ignores the value and answers without SNAP, so both ends run the SCTP
        // handshake: two round trips more than with SNAP, and the link still opens.
        assert_heard_within(t0, &wire, budget(5), what);
    }
}

#[test]
fn an_init_that_announces_huge_numbers_is_bounded_by_this_ends_own() {
    let t0 = Instant::now();
    // The offerer's own INIT, announcing the largest window and stream counts there are: the
    // answerer uses the smaller of its own and the peer's, and the link forms by SNAP as usual.
    let huge = |offer: &RTCSessionDescription| {
        let value = offer.sdp.split("\r\n").find_map(|line| line.strip_prefix("a=sctp-init:")).expect("a=sctp-init");
        let mut chunk = base64::engine::general_purpose::STANDARD.decode(value).expect("base64");
        chunk[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        chunk[12..16].copy_from_slice(&[0xff; 4]);
        base64::engine::general_purpose::STANDARD.encode(chunk)
    };
    let wire = link_with(t0, Duration::ZERO, Some(Rogue::Edit(&huge)));
    assert_heard_within(t0, &wire, budget(3), "huge numbers");
}

#[test]
fn a_lost_handshake_datagram_costs_no_retransmission_timeout() {
    // A datagram starting with a DTLS handshake record (22) whose first message is of this
    // type, or with a ChangeCipherSpec record (20): each flight of the handshake in turn.
    let flights: [(&str, Pick); 4] = [
        ("the ClientHello", |d| d.first() == Some(&22) && d.get(13) == Some(&1)),
        ("the ServerHello flight", |d| d.first() == Some(&22) && d.get(13) == Some(&2)),
        ("the client's Certificate flight", |d| d.first() == Some(&22) && d.get(13) == Some(&11)),
        ("the server's Finished flight", |d| d.first() == Some(&20)),
    ];
    for (what, pick) in flights {
        let t0 = Instant::now();
        let wire = link_losing(t0, Duration::ZERO, None, Some(pick));
        assert!(wire.lose.is_none(), "{what} was sent");
        // Each handshake datagram goes twice, so losing one copy costs nothing; before, it cost
        // the flight's retransmission timeout (150 ms).
        assert_heard_within(t0, &wire, budget(3), &format!("losing {what}"));
    }
}

/// An open link's ICE consent checks go on the wall clock's 5 s grid, which is also the
/// heartbeats' (whole seconds since the epoch): both ends check at the same instants, and every
/// link of a worker in the same wake-up as a heartbeat, not each on a schedule of its own.
#[test]
fn consent_checks_go_on_the_wall_clocks_grid_at_both_ends_together() {
    let t0 = Instant::now();
    let phase = mesh_core::wall_clock_phase(CONSENT_INTERVAL).expect("a clock past the epoch");
    let mut wire = link(t0, Duration::ZERO);
    assert_heard_within(t0, &wire, budget(3), "before the consent checks");
    // Then a message each way on every whole second, as a link's heartbeats go, for 27 s. Each
    // end is on the grid 9 s in at the latest (4 s after its last keep-alive of the idle time
    // before, then up to 5 s to a grid point); the checks after 10 s are compared.
    let start = wire.now;
    let mut beat = phase + Duration::from_secs(start.duration_since(phase).as_secs() + 1);
    while beat < start + Duration::from_secs(27) {
        wire.run_until(beat);
        for end in &mut wire.ends {
            end.send(beat, "beat");
        }
        beat += Duration::from_secs(1);
    }
    wire.run_until(beat);
    let on_grid = start + Duration::from_secs(10);
    let checks: Vec<Vec<Instant>> =
        wire.ends.iter().map(|e| e.binding_requests.iter().copied().filter(|t| *t > on_grid).collect()).collect();
    assert!(checks[0].len() >= 3, "a consent check every 5 s for 17 s: {checks:?}");
    // (Each end's grid comes from its own reading of the clocks: a few nanoseconds apart.)
    let together = checks[0].len() == checks[1].len()
        && checks[0].iter().zip(&checks[1]).all(|(a, b)| a.max(b).duration_since(*a.min(b)) < Duration::from_millis(1));
    assert!(together, "both ends check at the same instants, once each (no check answers a check): {checks:?}");
    let step = CONSENT_INTERVAL.as_nanos();
    for at in &checks[0] {
        let off = at.duration_since(phase).as_nanos() % step;
        assert!(off.min(step - off) < 1_000_000, "a check {off} ns off the grid: {checks:?}");
    }
}
