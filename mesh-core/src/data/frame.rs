//! The application frame: how messages, requests and their answers travel on a link, apart from
//! the mesh's own JSON messages (docs/LINK.md, "Application frames").
//!
//! ```text
//! 0xDA | kind u8 | flags u8 | id u64 BE | proto_len u8 | proto | payload
//! ```
//! A JSON mesh message can never start with 0xDA, so one byte tells the two apart.

use bytes::{BufMut, Bytes, BytesMut};

/// The first byte of every application frame.
pub const TAG: u8 = 0xDA;
/// Most payload bytes in one frame: a larger message travels as several frames.
pub const MAX_PART: usize = 128 * 1024;
/// Longest protocol name, in bytes.
pub const MAX_PROTO: usize = 64;
/// Bytes before the protocol name.
const FIXED: usize = 12;
/// The largest frame: a link must carry messages at least this large.
pub const MAX_FRAME: usize = FIXED + MAX_PROTO + MAX_PART;
/// Flag: another part of the same message follows.
const MORE: u8 = 0x01;
/// Flag (stream frames): the stream was opened by the receiver of this frame.
const YOURS: u8 = 0x02;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A part of a message; the receiver acknowledges the whole once its inbox holds it.
    Message,
    /// A part of a request; the answer is a response or a failure.
    Request,
    /// A part of the response to request `id`.
    Response,
    /// Message `id` is in the receiver's inbox.
    Ack,
    /// Message or request `id` failed at the receiver; the payload is a [`Fail`] code and text.
    Fail,
    /// Opens stream `id` on `proto`.
    StreamOpen,
    /// Bytes of stream `id`, within the credit its receiver granted.
    StreamData,
    /// The receiver of stream `id` may take this many more bytes (payload: u32, big-endian).
    StreamCredit,
    /// The sender of stream `id` sends no more (its end of the stream).
    StreamFin,
    /// Stream `id` is given up, both ways (payload: why, as text).
    StreamReset,
}

impl Kind {
    /// True for the frames of a stream.
    pub fn is_stream(self) -> bool {
        matches!(self, Self::StreamOpen | Self::StreamData | Self::StreamCredit | Self::StreamFin | Self::StreamReset)
    }

    fn code(self) -> u8 {
        match self {
            Self::Message => 1,
            Self::Request => 2,
            Self::Response => 3,
            Self::Ack => 4,
            Self::Fail => 5,
            Self::StreamOpen => 6,
            Self::StreamData => 7,
            Self::StreamCredit => 8,
            Self::StreamFin => 9,
            Self::StreamReset => 10,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Message,
            2 => Self::Request,
            3 => Self::Response,
            4 => Self::Ack,
            5 => Self::Fail,
            6 => Self::StreamOpen,
            7 => Self::StreamData,
            8 => Self::StreamCredit,
            9 => Self::StreamFin,
            10 => Self::StreamReset,
            _ => return None,
        })
    }
}

/// Why the receiver refused a message or a request (the first payload byte of a `Fail` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// Nobody on the receiver listens on that protocol.
    NoProtocol,
    /// Larger than the receiver accepts.
    TooLarge,
    /// The receiver holds too much from this sender already; try again later.
    Busy,
    /// The responder dropped the request without answering.
    NoResponse,
    /// The responder answered with an error (the text says which).
    Responder,
    /// The frame broke the protocol (parts out of order, a kind that may not go there).
    Invalid,
}

impl Fail {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::NoProtocol => 1,
            Self::TooLarge => 2,
            Self::Busy => 3,
            Self::NoResponse => 4,
            Self::Responder => 5,
            Self::Invalid => 6,
        }
    }

    /// The failure a wire code names (an unknown code counts as `Invalid`).
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NoProtocol,
            2 => Self::TooLarge,
            3 => Self::Busy,
            4 => Self::NoResponse,
            5 => Self::Responder,
            _ => Self::Invalid,
        }
    }
}

/// One application frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// Another part of the same message follows.
    pub more: bool,
    /// A stream frame about a stream its receiver opened (ids are each opener's own).
    pub yours: bool,
    /// The sender's id of the message or request (for a response, ack or failure: the id it answers).
    pub id: u64,
    /// The protocol it is addressed to (empty on acks and failures).
    pub proto: String,
    /// The bytes it carries.
    pub payload: Bytes,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header says.
    #[error("truncated frame")]
    Truncated,
    /// The first byte is not [`TAG`].
    #[error("not an application frame")]
    NotData,
    /// An unknown kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The protocol name is not UTF-8 or too long.
    #[error("bad protocol name")]
    BadProto,
    /// More payload than one frame may carry.
    #[error("frame payload of {0} bytes is over the limit")]
    TooLarge(usize),
}

impl Frame {
    /// The frame as bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(FIXED + self.proto.len() + self.payload.len());
        out.put_u8(TAG);
        out.put_u8(self.kind.code());
        out.put_u8(if self.more { MORE } else { 0 } | if self.yours { YOURS } else { 0 });
        out.put_u64(self.id);
        out.put_u8(self.proto.len() as u8);
        out.put_slice(self.proto.as_bytes());
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Reads a frame; hostile bytes give an error, never a panic.
    pub fn decode(bytes: &Bytes) -> Result<Self, FrameError> {
        if bytes.len() < FIXED {
            return Err(if bytes.first() == Some(&TAG) { FrameError::Truncated } else { FrameError::NotData });
        }
        if bytes[0] != TAG {
            return Err(FrameError::NotData);
        }
        let kind = Kind::from_code(bytes[1]).ok_or(FrameError::UnknownKind(bytes[1]))?;
        let (more, yours) = (bytes[2] & MORE != 0, bytes[2] & YOURS != 0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[3..11]);
        let proto_len = bytes[11] as usize;
        if proto_len > MAX_PROTO {
            return Err(FrameError::BadProto);
        }
        let end = FIXED + proto_len;
        let proto = bytes.get(FIXED..end).ok_or(FrameError::Truncated)?;
        let proto = std::str::from_utf8(proto).map_err(|_| FrameError::BadProto)?.to_string();
        let payload = bytes.slice(end..);
        if payload.len() > MAX_PART {
            return Err(FrameError::TooLarge(payload.len()));
        }
        Ok(Self { kind, more, yours, id: u64::from_be_bytes(id), proto, payload })
    }

    /// True when `bytes` is an application frame rather than a mesh message.
    pub fn is_data(bytes: &[u8]) -> bool {
        bytes.first() == Some(&TAG)
    }

    /// The frames that carry `payload` as message or request (or response) `id`, in order.
    pub fn split(kind: Kind, id: u64, proto: &str, payload: &Bytes) -> Vec<Self> {
        let parts = payload.len().div_ceil(MAX_PART).max(1);
        (0..parts)
            .map(|i| {
                let end = ((i + 1) * MAX_PART).min(payload.len());
                let more = i + 1 < parts;
                Self {
                    kind,
                    more,
                    yours: false,
                    id,
                    proto: proto.to_string(),
                    payload: payload.slice(i * MAX_PART..end),
                }
            })
            .collect()
    }

    /// An acknowledgement of message `id`.
    pub fn ack(id: u64) -> Self {
        Self { kind: Kind::Ack, more: false, yours: false, id, proto: String::new(), payload: Bytes::new() }
    }

    /// A stream frame of `kind` about stream `id` (`yours`: the receiver opened it).
    pub fn stream(kind: Kind, id: u64, yours: bool, proto: &str, payload: Bytes) -> Self {
        Self { kind, more: false, yours, id, proto: proto.to_string(), payload }
    }

    /// A failure of `id`, with a code and a short text.
    pub fn fail(id: u64, why: Fail, text: &str) -> Self {
        let mut payload = vec![why.code()];
        payload.extend_from_slice(&text.as_bytes()[..text.len().min(512)]);
        Self { kind: Kind::Fail, more: false, yours: false, id, proto: String::new(), payload: payload.into() }
    }
}

/// A protocol name: 1 to 64 bytes of ASCII letters, digits and `/ _ - .`.
pub fn valid_proto(proto: &str) -> bool {
    !proto.is_empty()
        && proto.len() <= MAX_PROTO
        && proto.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_at_the_part_size() {
        let payload = Bytes::from(vec![7u8; MAX_PART * 2 + 5]);
        let frames = Frame::split(Kind::Message, 9, "jobs/1", &payload);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames.iter().map(|f| f.more).collect::<Vec<_>>(), [true, true, false]);
        for f in &frames {
            assert_eq!(&Frame::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(Frame::split(Kind::Request, 1, "p", &Bytes::new()).len(), 1, "an empty message is one frame");
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert_eq!(Frame::decode(&Bytes::from_static(b"{\"type\":1}")), Err(FrameError::NotData));
        assert_eq!(Frame::decode(&Bytes::from_static(&[TAG, 1])), Err(FrameError::Truncated));
        let mut f = Frame::ack(1).encode().to_vec();
        f[1] = 99;
        assert_eq!(Frame::decode(&f.into()), Err(FrameError::UnknownKind(99)));
        let mut f = Frame::split(Kind::Message, 1, "abc", &Bytes::new())[0].encode().to_vec();
        f[11] = 200;
        assert_eq!(Frame::decode(&f.into()), Err(FrameError::BadProto));
        let mut f = Frame::split(Kind::Message, 1, "abc", &Bytes::new())[0].encode().to_vec();
        f[11] = 10;
        assert_eq!(Frame::decode(&f.into()), Err(FrameError::Truncated));
        let big = Frame { payload: vec![0; MAX_PART + 1].into(), ..Frame::ack(1) };
        assert_eq!(Frame::decode(&big.encode()), Err(FrameError::TooLarge(MAX_PART + 1)));
        for n in 0..64u8 {
            let _ = Frame::decode(&Bytes::from(vec![TAG; n as usize]));
        }
    }

    #[test]
    fn protocol_names_are_short_and_plain() {
        assert!(valid_proto("jobs/1") && valid_proto("blob.v2_x-y"));
        assert!(!valid_proto("") && !valid_proto("a b") && !valid_proto(&"x".repeat(65)) && !valid_proto("é"));
    }
}
