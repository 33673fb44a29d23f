//! Message framing on the reliable channel: a mesh message of any size travels as one or more
//! SCTP messages of at most [`CHUNK_PAYLOAD`] bytes plus a one-byte header, and is reassembled on
//! the other side. Chunks of one message are contiguous because the channel is ordered and the
//! sender holds its send lock for the whole message.
//!
//! Header byte: [`MORE`] when another chunk of the same message follows, [`LAST`] on the final
//! chunk, [`HELLO`] for the readiness handshake and [`BYE`] / [`BYE_ACK`] for the closing one
//! (control chunks that may arrive between the chunks of a message and leave reassembly alone).
//! Anything else is a protocol violation.

use bytes::{Bytes, BytesMut};

/// Payload bytes per chunk: 16 KiB, which every WebRTC implementation accepts. (60 KiB chunks
/// about double loopback throughput but also the memory a stalled reader can pin: the webrtc
/// crate queues up to 256 chunks per channel.)
pub const CHUNK_PAYLOAD: usize = 16 * 1024;
/// Header: another chunk of this message follows.
pub const MORE: u8 = 1;
/// Header: this chunk ends the message.
pub const LAST: u8 = 0;
/// Header: "my end of the channel is ready" (see the link's open handshake).
pub const HELLO: u8 = 2;
/// Header: "I am closing; everything I sent precedes this".
pub const BYE: u8 = 3;
/// Header: "your BYE arrived, and so did everything before it".
pub const BYE_ACK: u8 = 4;

/// Splits `data` into framed chunks (an empty message is one empty final chunk).
pub fn split(data: &[u8]) -> impl Iterator<Item = BytesMut> + '_ {
    let count = data.len().div_ceil(CHUNK_PAYLOAD).max(1);
    (0..count).map(move |i| {
        let start = i * CHUNK_PAYLOAD;
        let end = (start + CHUNK_PAYLOAD).min(data.len());
        let mut chunk = BytesMut::with_capacity(1 + end - start);
        chunk.extend_from_slice(&[if i + 1 == count { LAST } else { MORE }]);
        chunk.extend_from_slice(&data[start..end]);
        chunk
    })
}

/// What one incoming chunk produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// Part of a message; nothing to deliver yet.
    Partial,
    /// A whole message.
    Message(Bytes),
    /// The peer's readiness handshake.
    Hello,
    /// The peer is closing the link.
    Bye,
    /// The peer received our BYE.
    ByeAck,
    /// The message grew past the limit; it is being discarded up to its final chunk.
    TooLarge,
    /// The chunk had no header or an unknown one; it was dropped.
    Malformed,
}

/// Reassembles chunks into messages, refusing to buffer more than `limit` bytes.
#[derive(Debug)]
pub struct Reassembler {
    limit: usize,
    buf: BytesMut,
    discarding: bool,
}

impl Reassembler {
    /// A reassembler for messages of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, buf: BytesMut::new(), discarding: false }
    }

    /// Takes one chunk off the wire.
    pub fn push(&mut self, chunk: &[u8]) -> Reassembled {
        let Some((&header, payload)) = chunk.split_first() else {
            return Reassembled::Malformed;
        };
        let last = match header {
            LAST => true,
            MORE => false,
            HELLO => return Reassembled::Hello,
            BYE => return Reassembled::Bye,
            BYE_ACK => return Reassembled::ByeAck,
            _ => return Reassembled::Malformed,
        };
        if self.discarding {
            if last {
                self.discarding = false;
            }
            return Reassembled::Partial;
        }
        if self.buf.len() + payload.len() > self.limit {
            self.buf = BytesMut::new();
            self.discarding = !last;
            return Reassembled::TooLarge;
        }
        if last && self.buf.is_empty() {
            return Reassembled::Message(Bytes::copy_from_slice(payload));
        }
        self.buf.extend_from_slice(payload);
        if last {
            Reassembled::Message(std::mem::take(&mut self.buf).freeze())
        } else {
            Reassembled::Partial
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], limit: usize) -> Vec<Reassembled> {
        let mut r = Reassembler::new(limit);
        split(data).map(|c| r.push(&c)).filter(|o| *o != Reassembled::Partial).collect()
    }

    #[test]
    fn messages_of_every_boundary_size_survive_the_round_trip() {
        for len in [0, 1, CHUNK_PAYLOAD - 1, CHUNK_PAYLOAD, CHUNK_PAYLOAD + 1, 3 * CHUNK_PAYLOAD, 256 * 1024 + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert!(split(&data).all(|c| c.len() <= CHUNK_PAYLOAD + 1));
            assert_eq!(roundtrip(&data, 1 << 20), vec![Reassembled::Message(Bytes::from(data))], "len {len}");
        }
    }

    #[test]
    fn an_oversized_message_is_dropped_and_the_next_one_still_arrives() {
        let mut r = Reassembler::new(2 * CHUNK_PAYLOAD);
        let big = vec![7u8; 5 * CHUNK_PAYLOAD];
        let outcomes: Vec<_> = split(&big).map(|c| r.push(&c)).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == Reassembled::TooLarge).count(), 1);
        assert!(!outcomes.iter().any(|o| matches!(o, Reassembled::Message(_))));
        let small = b"after".to_vec();
        let next: Vec<_> = split(&small).map(|c| r.push(&c)).collect();
        assert_eq!(next, vec![Reassembled::Message(Bytes::from(small))]);
    }

    #[test]
    fn chunks_without_a_known_header_are_rejected() {
        let mut r = Reassembler::new(1024);
        assert_eq!(r.push(&[]), Reassembled::Malformed);
        assert_eq!(r.push(&[9, 1, 2]), Reassembled::Malformed);
        assert_eq!(r.push(&[LAST, 1, 2]), Reassembled::Message(Bytes::from_static(&[1, 2])));
    }

    #[test]
    fn a_hello_between_chunks_leaves_the_message_intact() {
        let mut r = Reassembler::new(1 << 20);
        let data = vec![5u8; 2 * CHUNK_PAYLOAD + 3];
        let mut chunks = split(&data);
        assert_eq!(r.push(&chunks.next().unwrap()), Reassembled::Partial);
        assert_eq!(r.push(&[HELLO]), Reassembled::Hello);
        let rest: Vec<_> = chunks.map(|c| r.push(&c)).collect();
        assert_eq!(rest.last(), Some(&Reassembled::Message(Bytes::from(data))));
    }
}
