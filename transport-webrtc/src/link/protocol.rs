//! The link's own protocol on the reliable channel, sans IO (docs/LINK.md, framing): the open
//! handshake (HELLO, resent with backoff until the peer's is heard; skipped when the peer keeps
//! what arrives before its channel is attached), message framing and
//! reassembly within a size limit, and the closing handshake (BYE, answered by BYE_ACK). The
//! link task feeds it what the channel delivers and the time, and carries out what it asks:
//! control chunks to write, events for the node, and when to wake it next.

use crate::chunk::{self, Reassembled, Reassembler};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// First resend of the open handshake; doubles up to [`HELLO_MAX`].
pub(crate) const HELLO_FIRST: Duration = Duration::from_millis(20);
/// Longest pause between handshake resends.
pub(crate) const HELLO_MAX: Duration = Duration::from_millis(320);

/// What the protocol tells the link task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The peer's end is attached: the link is open (once).
    Open,
    /// A whole message from the peer.
    Message(Bytes),
    /// The peer said BYE (answered): the link closes, everything it sent has arrived.
    PeerClosed,
}

/// Where the closing handshake stands, once this side said BYE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goodbye {
    /// Waiting for the peer's BYE_ACK.
    Waiting,
    /// Acknowledged (or both sides closed at once): all we sent before BYE arrived.
    Done,
}

/// The protocol state of one link.
#[derive(Debug)]
pub(crate) struct LinkProtocol {
    reassembler: Reassembler,
    limit: usize,
    opened: bool,
    /// Whether the peer's HELLO has been heard.
    heard: bool,
    /// When to send HELLO next (set once our channel is open, until the peer's is heard).
    next_hello: Option<Instant>,
    hello_gap: Duration,
    goodbye: Option<Goodbye>,
    peer_said_bye: bool,
    controls: VecDeque<u8>,
    deliveries: VecDeque<Delivery>,
}

impl LinkProtocol {
    /// A link that accepts messages of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            reassembler: Reassembler::new(limit),
            limit,
            opened: false,
            heard: false,
            next_hello: None,
            hello_gap: HELLO_FIRST,
            goodbye: None,
            peer_said_bye: false,
            controls: VecDeque::new(),
            deliveries: VecDeque::new(),
        }
    }

    /// True if the peer closed with the BYE handshake.
    pub(crate) fn peer_said_bye(&self) -> bool {
        self.peer_said_bye
    }

    /// Our end of the reliable channel opened: say HELLO now, and again until the peer's is
    /// heard. With `peer_keeps_early_data` (the peer's stack keeps a message that arrives before
    /// its channel is attached: both descriptions carried SNAP's INIT), the link is open now;
    /// otherwise it opens when the peer's HELLO is heard.
    pub(crate) fn channel_open(&mut self, now: Instant, peer_keeps_early_data: bool) {
        if self.next_hello.is_none() && !self.heard {
            self.next_hello = Some(now);
            self.hello_gap = HELLO_FIRST;
        }
        if peer_keeps_early_data && !self.opened {
            // HELLO now, ahead of anything the node sends, for a peer that waits for it.
            self.tick(now);
            self.open();
        }
    }

    /// The link is open: the node may send, and hears what arrives.
    fn open(&mut self) {
        self.opened = true;
        self.deliveries.push_back(Delivery::Open);
    }

    /// Time passed: resend HELLO when due.
    pub(crate) fn tick(&mut self, now: Instant) {
        if let Some(due) = self.next_hello.filter(|due| *due <= now && !self.heard) {
            self.controls.push_back(chunk::HELLO);
            self.next_hello = Some(due + self.hello_gap);
            self.hello_gap = (self.hello_gap * 2).min(HELLO_MAX);
        }
    }

    /// When [`LinkProtocol::tick`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_hello.filter(|_| !self.heard)
    }

    /// One chunk off the reliable channel.
    pub(crate) fn on_chunk(&mut self, data: &[u8]) {
        match self.reassembler.push(data) {
            Reassembled::Partial => {}
            Reassembled::ByeAck if self.goodbye.is_some() => self.goodbye = Some(Goodbye::Done),
            Reassembled::ByeAck => {}
            Reassembled::Hello if self.heard => {}
            Reassembled::Hello => {
                mesh_core::mark!("hello_heard");
                self.controls.push_back(chunk::HELLO); // the peer may not have heard ours yet
                self.heard = true;
                self.next_hello = None;
                if !self.opened {
                    self.open();
                }
            }
            Reassembled::Bye => {
                self.controls.push_back(chunk::BYE_ACK);
                if self.goodbye.is_some() {
                    self.goodbye = Some(Goodbye::Done); // both closing at once
                } else if !self.peer_said_bye {
                    self.peer_said_bye = true;
                    self.deliveries.push_back(Delivery::PeerClosed);
                }
            }
            Reassembled::Message(_) if !self.opened => {
                tracing::warn!("peer sent data before the open handshake; dropped");
            }
            Reassembled::Message(message) => self.deliveries.push_back(Delivery::Message(message)),
            Reassembled::TooLarge => tracing::warn!(limit = self.limit, "peer sent an oversized message; dropped"),
            Reassembled::Malformed => tracing::warn!("peer sent a chunk without a valid header; dropped"),
        }
    }

    /// This side closes: BYE goes after everything sent before it. Returns false when there is
    /// no handshake to run (the link never opened).
    pub(crate) fn close(&mut self) -> bool {
        if !self.opened || self.goodbye.is_some() {
            return false;
        }
        self.controls.push_back(chunk::BYE);
        self.goodbye = Some(Goodbye::Waiting);
        true
    }

    /// Where our closing handshake stands (`None`: not closing).
    pub(crate) fn goodbye(&self) -> Option<Goodbye> {
        self.goodbye
    }

    /// The next control chunk header to write.
    pub(crate) fn poll_control(&mut self) -> Option<u8> {
        self.controls.pop_front()
    }

    /// The next event for the node.
    pub(crate) fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{split, BYE, BYE_ACK, HELLO};

    fn controls(p: &mut LinkProtocol) -> Vec<u8> {
        std::iter::from_fn(|| p.poll_control()).collect()
    }

    fn deliveries(p: &mut LinkProtocol) -> Vec<Delivery> {
        std::iter::from_fn(|| p.poll_delivery()).collect()
    }

    #[test]
    fn hello_is_resent_with_doubling_gaps_until_the_peers_is_heard() {
        let mut p = LinkProtocol::new(1024);
        let t0 = Instant::now();
        assert_eq!(p.poll_timeout(), None, "nothing before the channel opens");
        p.channel_open(t0, false);
        let mut sent_at = Vec::new();
        while let Some(due) = p.poll_timeout().filter(|due| *due < t0 + Duration::from_secs(2)) {
            p.tick(due);
            assert_eq!(controls(&mut p), [HELLO]);
            sent_at.push((due - t0).as_millis());
        }
        assert_eq!(&sent_at[..6], [0, 20, 60, 140, 300, 620], "gaps double from 20 ms");
        assert_eq!(sent_at[6] - sent_at[5], 320, "and stop growing at 320 ms");
        p.on_chunk(&[HELLO]);
        assert_eq!(controls(&mut p), [HELLO], "answered: the peer may not have heard ours");
        assert_eq!(deliveries(&mut p), [Delivery::Open]);
        assert_eq!(p.poll_timeout(), None, "no more resends once open");
        p.on_chunk(&[HELLO]);
        assert!(controls(&mut p).is_empty() && deliveries(&mut p).is_empty(), "a late HELLO changes nothing");
    }

    #[test]
    fn a_peer_that_keeps_early_data_makes_the_link_open_with_the_channel_and_still_hears_hello() {
        let mut p = LinkProtocol::new(1024);
        let t0 = Instant::now();
        p.channel_open(t0, true);
        assert_eq!(deliveries(&mut p), [Delivery::Open], "open at once, not a round trip later");
        assert_eq!(controls(&mut p), [HELLO], "HELLO first, before anything the node sends");
        // Resent until heard, for a peer that waits for it; a message from it is delivered
        // even before its HELLO.
        let due = p.poll_timeout().expect("a resend");
        assert_eq!(due - t0, HELLO_FIRST);
        p.tick(due);
        assert_eq!(controls(&mut p), [HELLO]);
        for c in split(b"early") {
            p.on_chunk(&c);
        }
        assert_eq!(deliveries(&mut p), [Delivery::Message(Bytes::from_static(b"early"))]);
        p.on_chunk(&[HELLO]);
        assert_eq!(controls(&mut p), [HELLO], "answered, as ever");
        assert!(deliveries(&mut p).is_empty(), "the link opened once");
        assert_eq!(p.poll_timeout(), None, "no more resends once heard");
        p.channel_open(t0, true);
        assert!(deliveries(&mut p).is_empty() && controls(&mut p).is_empty(), "a second open changes nothing");
    }

    #[test]
    fn data_before_the_handshake_is_dropped_and_messages_after_it_are_reassembled() {
        let mut p = LinkProtocol::new(64 * 1024);
        for c in split(b"too early") {
            p.on_chunk(&c);
        }
        assert!(deliveries(&mut p).is_empty());
        p.on_chunk(&[HELLO]);
        let big: Vec<u8> = (0..40_000).map(|i| (i % 251) as u8).collect();
        for c in split(&big) {
            p.on_chunk(&c);
        }
        assert_eq!(deliveries(&mut p), [Delivery::Open, Delivery::Message(Bytes::from(big))]);
    }

    #[test]
    fn an_oversized_or_malformed_chunk_is_dropped_and_the_link_goes_on() {
        let mut p = LinkProtocol::new(100);
        p.on_chunk(&[HELLO]);
        for c in split(&[1u8; 1000]) {
            p.on_chunk(&c);
        }
        p.on_chunk(&[]);
        p.on_chunk(&[9, 9]);
        for c in split(b"fine") {
            p.on_chunk(&c);
        }
        assert_eq!(deliveries(&mut p), [Delivery::Open, Delivery::Message(Bytes::from_static(b"fine"))]);
    }

    #[test]
    fn a_close_says_bye_and_is_done_when_the_peer_acknowledges() {
        let mut p = LinkProtocol::new(1024);
        assert!(!p.close(), "a link that never opened has no handshake to run");
        p.on_chunk(&[HELLO]);
        controls(&mut p);
        assert!(p.close());
        assert_eq!(controls(&mut p), [BYE]);
        assert_eq!(p.goodbye(), Some(Goodbye::Waiting));
        p.on_chunk(&[BYE_ACK]);
        assert_eq!(p.goodbye(), Some(Goodbye::Done));
        assert!(!p.close(), "once only");
    }

    #[test]
    fn a_peers_bye_is_acknowledged_and_closes_the_link_once() {
        let mut p = LinkProtocol::new(1024);
        p.on_chunk(&[HELLO]);
        deliveries(&mut p);
        controls(&mut p);
        p.on_chunk(&[BYE]);
        p.on_chunk(&[BYE]);
        assert_eq!(controls(&mut p), [BYE_ACK, BYE_ACK]);
        assert_eq!(deliveries(&mut p), [Delivery::PeerClosed]);
        assert!(p.peer_said_bye());
    }

    #[test]
    fn both_sides_closing_at_once_answer_each_other_and_finish() {
        let mut p = LinkProtocol::new(1024);
        p.on_chunk(&[HELLO]);
        controls(&mut p);
        p.close();
        controls(&mut p);
        p.on_chunk(&[BYE]);
        assert_eq!(controls(&mut p), [BYE_ACK]);
        assert_eq!(p.goodbye(), Some(Goodbye::Done));
        assert!(deliveries(&mut p).iter().all(|d| *d != Delivery::PeerClosed), "our close, not theirs");
    }
}
