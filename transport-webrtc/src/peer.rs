//! Building one peer connection with its two pre-negotiated data channels, and the event handler
//! that turns the webrtc crate's callbacks into a queue the link task reads.

use crate::config::{IcePolicy, Mdns, WebRtcConfig};
use crate::runtime::BufferedRuntime;
use crate::CONSENT_INTERVAL;
use mesh_core::TransportError;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc_ice::mdns::MulticastDnsMode;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCIceConnectionState, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, SettingEngine, SettingEngineBuilder,
};

/// Stream id of the reliable, ordered channel that carries mesh messages.
const RELIABLE_STREAM: u16 = 0;
/// Stream id of the unordered channel for heartbeats.
const HEARTBEAT_STREAM: u16 = 1;
/// How long an unacknowledged heartbeat is retransmitted before it is abandoned, in ms.
const HEARTBEAT_LIFETIME_MS: u16 = 1_000;

/// The stack settings every link's peer connection uses: ICE pace and timeouts, DTLS roles, the
/// SCTP window. Public so that tests can drive the stack's sans-IO core exactly as a link does.
pub fn stack_settings(config: &WebRtcConfig, mdns: bool) -> SettingEngine {
    // The driver also starts DTLS on this tick, so a short interval opens links sooner; the
    // number of checks keeps the give-up time per candidate pair near ICE's usual 1.4 s.
    let check = Duration::from_millis(config.ice_check_interval_ms);
    let binding_requests = (1_400 / config.ice_check_interval_ms).clamp(7, 200) as u16;
    let keepalive = Duration::from_millis(config.keepalive_ms);
    SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(Duration::from_millis(config.disconnected_timeout_ms)),
            Some(Duration::from_millis(config.failed_timeout_ms)),
            Some(keepalive),
        )
        .with_ice_connection_attempts(Some(check), Some(binding_requests))
        // Consent checks on the wall clock's grid of their interval (5 s, or the keep-alive's
        // if longer), which is on the heartbeats' (BEHAVIOUR 19): every link of a worker, and
        // its peers', checks in the wake-up of a heartbeat.
        .with_ice_consent_phase(mesh_core::wall_clock_phase(CONSENT_INTERVAL.max(keepalive)))
        // A peer's check often lands before its trickled candidate, making the pair
        // peer-reflexive; the default 1 s wait before accepting such a pair only delays us.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        // The answerer (ICE-controlled) is the DTLS client, as JSEP prefers: it selects its
        // pair first, when the offerer's nominating check arrives, half a round trip before
        // the offerer does, so its ClientHello leaves half a round trip earlier. The
        // ClientHello travels beside the STUN response that makes the offerer select; if it
        // overtakes it, the offerer's ICE keeps it until then (vendor/README.md).
        .with_answering_dtls_role(RTCDtlsRole::Client)
        // SNAP: each end's SCTP INIT travels in its description, so the association is up the
        // moment DTLS is, two round trips sooner. Used only when both descriptions carry one
        // (browsers and other stacks do not, and get the usual handshake).
        .with_sctp_snap(true)
        .with_sctp_max_receive_buffer_size(config.receive_window_bytes as u32)
        .with_multicast_dns_mode(if mdns { MulticastDnsMode::QueryOnly } else { MulticastDnsMode::Disabled })
        .build()
}

/// Whether a link's two descriptions negotiated SNAP: both carry an SCTP INIT (`a=sctp-init`)
/// and the peer's is a valid one, which is when the stack builds the association from the two.
/// Such a peer runs a stack that keeps a message arriving before its channel is attached, so
/// the link is open as soon as its channel is (docs/LINK.md, open handshake).
pub(crate) fn snap_negotiated(local_sdp: &str, remote_sdp: &str) -> bool {
    let init = |sdp: &str| sdp.lines().find_map(|line| line.trim_end().strip_prefix("a=sctp-init:")).map(str::to_owned);
    let (Some(_), Some(remote)) = (init(local_sdp), init(remote_sdp)) else {
        return false;
    };
    rtc_sctp::SnapInit::from_sdp_value(&remote).is_ok()
}

/// What the peer connection reports to its link task.
#[derive(Debug)]
pub(crate) enum PcEvent {
    /// A local ICE candidate to trickle to the other side.
    Candidate(RTCIceCandidateInit),
    /// The connection's overall state changed.
    State(RTCPeerConnectionState),
    /// Local candidate gathering finished.
    GatheringComplete,
    /// ICE found a working candidate pair (a timeline mark).
    IceConnected,
}

/// Forwards callbacks into an unbounded queue; returns at once, as the crate requires. The queue
/// stays small: a handful of candidates and state changes per connection.
struct Handler(mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.0.send(PcEvent::Candidate(init));
            }
            Err(err) => tracing::debug!(error = %err, "local candidate not serializable"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PcEvent::GatheringComplete);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            let _ = self.0.send(PcEvent::IceConnected);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }
}

/// A peer connection, its channels and its event queue.
pub(crate) struct Peer {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) reliable: Arc<dyn DataChannel>,
    pub(crate) heartbeat: Arc<dyn DataChannel>,
    pub(crate) events: mpsc::UnboundedReceiver<PcEvent>,
}

/// Why `webrtc.mdns = "query"` cannot work on a host without multicast.
const NO_MULTICAST: &str =
    "the mDNS multicast socket needs a route to 224.0.0.0/4 (set webrtc.mdns = \"auto\" or \"off\")";

/// The mDNS multicast group (224.0.0.251).
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

/// Whether this host can join the mDNS multicast group, found once by trying it on a throwaway
/// socket: false when the kernel answers ENODEV (no route to 224.0.0.0/4, as on an air-gapped or
/// namespaced host). The webrtc crate reports that failure only as text, so it is asked here.
fn multicast_joinable() -> bool {
    static JOINABLE: OnceLock<bool> = OnceLock::new();
    *JOINABLE.get_or_init(|| {
        let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|socket| socket.join_multicast_v4(&MDNS_GROUP, &Ipv4Addr::UNSPECIFIED));
        match probe {
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => {
                tracing::warn!(
                    "this host cannot join multicast (no route to 224.0.0.0/4: {err}); with webrtc.mdns = \"auto\" \
                     links use IP candidates, and peers that only offer .local candidates (browsers) need STUN or TURN"
                );
                false
            }
            _ => true,
        }
    })
}

/// Maps a webrtc error to a setup failure of step `what`.
pub(crate) fn setup_error(what: &str) -> impl Fn(webrtc::error::Error) -> TransportError + '_ {
    move |err| TransportError::Setup(format!("{what}: {err}"))
}

impl Peer {
    /// Builds the connection (binding its sockets) and both negotiated channels.
    pub(crate) async fn build(config: &WebRtcConfig) -> Result<Self, TransportError> {
        let query = match config.mdns {
            Mdns::Off => false,
            Mdns::Query if !multicast_joinable() => return Err(TransportError::Setup(NO_MULTICAST.into())),
            Mdns::Query => true,
            // Links do not need mDNS to form: a host without multicast goes on without it.
            Mdns::Auto => multicast_joinable(),
        };
        Self::build_with(config, query).await
    }

    async fn build_with(config: &WebRtcConfig, mdns: bool) -> Result<Self, TransportError> {
        let (tx, events) = mpsc::unbounded_channel();
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let settings = stack_settings(config, mdns);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .with_ice_transport_policy(match config.ice_transport_policy {
                        IcePolicy::All => RTCIceTransportPolicy::All,
                        IcePolicy::Relay => RTCIceTransportPolicy::Relay,
                    })
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler(tx)))
            .with_runtime(Arc::new(BufferedRuntime::new(config.udp_buffer_bytes)))
            .with_udp_addrs(config.udp_addrs.clone())
            .with_data_channel_send_buffer_limit(config.send_buffer_bytes)
            .build()
            .await
            .map_err(setup_error("peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        match Self::channels(&pc).await {
            Ok((reliable, heartbeat)) => Ok(Self { pc, reliable, heartbeat, events }),
            Err(err) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;
                Err(err)
            }
        }
    }

    async fn channels(
        pc: &Arc<dyn PeerConnection>,
    ) -> Result<(Arc<dyn DataChannel>, Arc<dyn DataChannel>), TransportError> {
        let reliable = RTCDataChannelInit { negotiated: Some(RELIABLE_STREAM), ..Default::default() };
        let reliable = pc.create_data_channel("mesh", Some(reliable)).await.map_err(setup_error("reliable channel"))?;
        let heartbeat = RTCDataChannelInit {
            negotiated: Some(HEARTBEAT_STREAM),
            ordered: false,
            max_packet_life_time: Some(HEARTBEAT_LIFETIME_MS),
            ..Default::default()
        };
        let heartbeat =
            pc.create_data_channel("heartbeat", Some(heartbeat)).await.map_err(setup_error("heartbeat channel"))?;
        Ok((reliable, heartbeat))
    }

    /// Closes the connection (bounded in time); used when an attempt fails before it has a link.
    pub(crate) async fn discard(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pc.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::snap_negotiated;

    /// A description's data section with this `a=sctp-init` value, or none.
    fn sdp(init: Option<&str>) -> String {
        let mut sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n".to_owned();
        if let Some(init) = init {
            sdp.push_str(&format!("a=sctp-init:{init}\r\n"));
        }
        sdp
    }

    /// An INIT chunk with tag 7, a 64 KiB window and 16 streams each way, in base64.
    const INIT: &str = "AQAAFAAAAAcAAQAAABAAEAAAAAE=";

    #[test]
    fn snap_is_negotiated_only_when_both_descriptions_carry_a_valid_init() {
        assert!(snap_negotiated(&sdp(Some(INIT)), &sdp(Some(INIT))));
        assert!(!snap_negotiated(&sdp(Some(INIT)), &sdp(None)), "the peer did not offer it");
        assert!(!snap_negotiated(&sdp(None), &sdp(Some(INIT))), "we did not");
        for rogue in ["", "not base64!", "AgAAFAAAAAcAAQAAABAAEAAAAAE=", "AQAAFAAAAAAAAQAAABAAEAAAAAE=", "AQAA"] {
            assert!(!snap_negotiated(&sdp(Some(INIT)), &sdp(Some(rogue))), "{rogue:?} is not a valid INIT");
        }
    }
}
