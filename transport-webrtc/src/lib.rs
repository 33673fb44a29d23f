//! # transport-webrtc
//!
//! The `webrtc` [`Transport`] plugin: one WebRTC peer connection per link (`webrtc` crate, 0.21
//! line), with trickle ICE over the node's signalers.
//!
//! Each connection carries two pre-negotiated data channels (no in-band announcement round trip):
//! - stream 0, reliable and ordered, for mesh messages. Messages of any size are split into
//!   16 KiB chunks and reassembled ([`chunk`]); `send` waits while the channel holds more than
//!   `send_buffer_bytes` unacknowledged (back-pressure, nothing dropped).
//! - stream 1, unordered with a 1 s retransmission lifetime, for heartbeats, so a large transfer
//!   on stream 0 cannot delay a heartbeat into a false "peer lost".
//!
//! Candidates that arrive before the answer are held and applied once it lands, so a signaling
//! conversation may hop between paths. A link that does not open within `connect_timeout_ms`
//! closes with [`mesh_core::CloseReason::ConnectTimeout`]; a peer that goes silent is declared failed after
//! `disconnected_timeout_ms + failed_timeout_ms` of ICE silence.

pub mod chunk;
pub mod config;
mod link;
mod peer;
pub mod runtime;
pub mod testing;

pub use config::{IcePolicy, IceServer, Mdns, WebRtcConfig};
pub use link::WebRtcLink;
pub use peer::stack_settings;
/// The pace of ICE consent checks on an open link (RFC 7675's 5 s), on the wall clock's grid.
pub use rtc_ice::agent::agent_config::CONSENT_INTERVAL;

use async_trait::async_trait;
use link::LinkSetup;
use mesh_core::{LinkHandle, PeerId, SignalBody, SignalSink, Transport, TransportError};
use peer::{setup_error, Peer};
use std::sync::Arc;
use webrtc::peer_connection::RTCSessionDescription;

/// The plugin name used in configuration.
pub const NAME: &str = "webrtc";

/// Log directives that quiet the webrtc stack's own chatter (it warns about benign races, such as
/// a connectivity check arriving before the answer); append to a binary's default filter.
pub const QUIET_LOG_DIRECTIVES: &str = "rtc=error,rtc_ice=error,rtc_dtls=error,rtc_sctp=error,webrtc=error";

/// Call from a binary to make sure this crate (and its plugin registration) is linked.
pub fn link() {}

/// Builds links as WebRTC data channels.
pub struct WebRtcTransport {
    config: WebRtcConfig,
    max_message_bytes: usize,
    /// Every link's task: owned here, ended by [`Transport::shutdown`].
    links: tokio_util::task::TaskTracker,
}

impl WebRtcTransport {
    /// A transport with `config`; messages larger than `max_message_bytes` (unless the config sets
    /// its own limit) are dropped on receipt.
    pub fn new(config: WebRtcConfig, max_message_bytes: usize) -> Self {
        let max_message_bytes = config.max_message_bytes.unwrap_or(max_message_bytes);
        Self { config, max_message_bytes, links: tokio_util::task::TaskTracker::new() }
    }

    /// Link tasks still running (each ends once its link is closed and torn down).
    pub fn running_links(&self) -> usize {
        self.links.len()
    }

    /// The configuration in use.
    pub fn config(&self) -> &WebRtcConfig {
        &self.config
    }

    fn setup(&self, signals: SignalSink, described: bool) -> LinkSetup {
        LinkSetup {
            signals,
            described,
            connect_timeout: self.config.connect_timeout(),
            gather_timeout: std::time::Duration::from_millis(self.config.gather_timeout_ms),
            max_message_bytes: self.max_message_bytes,
            heartbeat_channel: self.config.heartbeat_channel,
            bulk_high_water: self.config.send_buffer_bytes * 3 / 4,
        }
    }
}

impl WebRtcTransport {
    /// Sends this side's description and starts the link; on any failure (including one while
    /// building the description) closes the connection instead.
    async fn launch(
        &self,
        conn: Peer,
        description: Result<SignalBody, TransportError>,
        signals: SignalSink,
        described: bool,
    ) -> Result<LinkHandle, TransportError> {
        let sent = match description {
            Ok(body) => signals.send(body).await.map_err(|_| TransportError::Setup("signal sink closed".into())),
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            conn.discard().await;
            return Err(err);
        }
        Ok(link::spawn(conn, self.setup(signals, described), &self.links))
    }
}

#[async_trait]
impl Transport for WebRtcTransport {
    async fn shutdown(&self) {
        // Links close when their handles go (the node closed them first); wait for their tasks
        // to finish tearing down, bounded. A transport shared by several nodes keeps the others'.
        self.links.close();
        if tokio::time::timeout(std::time::Duration::from_secs(3), self.links.wait()).await.is_err() {
            tracing::warn!(running = self.links.len(), "link tasks still tearing down at shutdown");
        }
        self.links.reopen();
    }

    fn name(&self) -> &'static str {
        NAME
    }

    async fn dial(&self, peer: &PeerId, signals: SignalSink) -> Result<LinkHandle, TransportError> {
        let conn = Peer::build(&self.config).await?;
        let offer = async {
            let offer = conn.pc.create_offer(None).await.map_err(setup_error("offer"))?;
            conn.pc.set_local_description(offer.clone()).await.map_err(setup_error("local offer"))?;
            Ok::<_, TransportError>(offer.sdp)
        }
        .await;
        tracing::debug!(remote = %peer, "webrtc offer");
        self.launch(conn, offer.map(|sdp| SignalBody::Offer { sdp }), signals, false).await
    }

    async fn accept(
        &self,
        peer: &PeerId,
        offer: SignalBody,
        signals: SignalSink,
    ) -> Result<LinkHandle, TransportError> {
        let sdp = offer.into_offer_sdp()?;
        let desc = RTCSessionDescription::offer(sdp).map_err(|e| TransportError::BadSignal(format!("offer: {e}")))?;
        let conn = Peer::build(&self.config).await?;
        let answer = async {
            conn.pc.set_remote_description(desc).await.map_err(|e| TransportError::BadSignal(format!("offer: {e}")))?;
            let answer = conn.pc.create_answer(None).await.map_err(setup_error("answer"))?;
            conn.pc.set_local_description(answer.clone()).await.map_err(setup_error("local answer"))?;
            Ok::<_, TransportError>(answer.sdp)
        }
        .await;
        tracing::debug!(remote = %peer, "webrtc answer");
        self.launch(conn, answer.map(|sdp| SignalBody::Answer { sdp }), signals, true).await
    }
}

inventory::submit! {
    mesh_core::TransportPlugin {
        name: NAME,
        description: "WebRTC data channels (section [webrtc]: ice_servers, udp_addrs, timeouts)",
        build: |ctx| {
            let config = WebRtcConfig::from_section(&ctx.section)
                .map_err(|why| mesh_core::PluginError::Config { plugin: NAME, why })?;
            Ok(Arc::new(WebRtcTransport::new(config, ctx.config.max_message_bytes)))
        },
    }
}
