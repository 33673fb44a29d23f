//! mesh patch (SNAP): an INIT chunk exchanged out of band.
//!
//! SNAP (draft-hancke-tsvwg-snap, "SCTP Negotiation Acceleration Protocol") carries each end's
//! SCTP INIT chunk in its SDP (`a=sctp-init`). Once both ends have both chunks, each builds its
//! association established from the two ([`crate::Endpoint::connect_snap`]): its own INIT gives
//! its verification tag and first TSN, the peer's gives the peer's. The INIT / INIT ACK /
//! COOKIE ECHO / COOKIE ACK exchange, two round trips after DTLS, never happens.

use crate::TransportConfig;
use crate::chunk::Chunk;
use crate::chunk::chunk_init::ChunkInit;
use bytes::Bytes;
use rand::random;
use shared::error::{Error, Result};

/// One end's INIT chunk for SNAP: generated locally, or parsed from the peer's SDP.
#[derive(Debug, Clone)]
pub struct SnapInit(pub(crate) ChunkInit);

/// A random `u32` that is not 0 (RFC 4960 forbids a zero Initiate Tag; a zero TSN is merely
/// avoided, as `Association::new` does).
fn nonzero_random() -> u32 {
    loop {
        let value = random::<u32>();
        if value != 0 {
            return value;
        }
    }
}

impl SnapInit {
    /// A fresh INIT for an association that will use `config`: a random tag and first TSN.
    pub fn generate(config: &TransportConfig) -> Self {
        let mut init = ChunkInit {
            is_ack: false,
            initiate_tag: nonzero_random(),
            advertised_receiver_window_credit: config.max_receive_buffer_size(),
            num_outbound_streams: config.max_num_outbound_streams(),
            num_inbound_streams: config.max_num_inbound_streams(),
            initial_tsn: nonzero_random(),
            params: vec![],
        };
        init.set_supported_extensions();
        SnapInit(init)
    }

    /// The chunk as it would travel in an SCTP packet (chunk header included).
    pub fn to_bytes(&self) -> Result<Bytes> {
        self.0.marshal()
    }

    /// Parses a peer's INIT chunk; anything that is not a valid INIT (an INIT ACK, a zero tag,
    /// zero streams, a window under 1500 bytes, a truncated chunk) is an error.
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        let init = ChunkInit::unmarshal(&Bytes::copy_from_slice(raw))?;
        if init.is_ack {
            return Err(Error::ErrChunkTypeNotTypeInit);
        }
        init.check()?;
        Ok(SnapInit(init))
    }

    /// The chunk as an `a=sctp-init` value: base64 (standard alphabet, padded) of
    /// [`SnapInit::to_bytes`].
    pub fn to_sdp_value(&self) -> Result<String> {
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD.encode(self.to_bytes()?))
    }

    /// Parses a peer's `a=sctp-init` value; what is not base64 of a valid INIT is an error.
    pub fn from_sdp_value(value: &str) -> std::result::Result<Self, String> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|err| err.to_string())?;
        Self::from_bytes(&raw).map_err(|err| err.to_string())
    }

    /// The tag the sender of this INIT expects on every packet sent to it.
    pub fn initiate_tag(&self) -> u32 {
        self.0.initiate_tag
    }
}
