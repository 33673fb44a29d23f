//! The data plane's logic on explicit instants: two cores joined by one link.

use super::frame::{Fail, Frame, Kind};
use super::{DataConfig, DataCore, DataError, DataOutput, Sent};
use crate::id::PeerId;
use crate::signal::SessionId;
use crate::transport::CloseReason;
use bytes::Bytes;
use std::time::{Duration, Instant};

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// Nodes `a` and `b` linked by one session.
struct Pair {
    now: Instant,
    a: DataCore,
    b: DataCore,
    session: SessionId,
    /// Answers `a` got: (id, result).
    done: Vec<(u64, Result<Bytes, DataError>)>,
}

impl Pair {
    fn new(config: DataConfig) -> Self {
        let session = SessionId { offerer: peer("a"), seq: 1 };
        let (mut a, mut b) = (DataCore::new(config.clone()), DataCore::new(config));
        a.set_current(&peer("b"), Some(&session));
        b.set_current(&peer("a"), Some(&session));
        Self { now: Instant::now(), a, b, session, done: Vec::new() }
    }

    /// `a` starts a message or request; its frames are returned, not delivered.
    fn start(&mut self, proto: &str, len: usize, request: bool) -> (u64, Vec<Frame>) {
        let body = Bytes::from(vec![7u8; len]);
        match self.a.send(self.now, &peer("b"), proto, body, request, Duration::from_secs(5)) {
            Ok(Sent::Started { id, frames, .. }) => (id, frames),
            other => panic!("not started: {other:?}"),
        }
    }

    /// Delivers `frames` from `a` to `b`, then everything each side writes, until quiet.
    fn deliver(&mut self, frames: Vec<Frame>) {
        for f in frames {
            self.b.on_frame(&peer("a"), &self.session, f);
        }
        self.settle();
    }

    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.b.poll() {
                if let DataOutput::Write { frames, .. } = out {
                    moved = true;
                    for f in frames {
                        self.a.on_frame(&peer("b"), &self.session, f);
                    }
                }
            }
            while let Some(out) = self.a.poll() {
                match out {
                    DataOutput::Write { frames, .. } => {
                        moved = true;
                        for f in frames {
                            self.b.on_frame(&peer("a"), &self.session, f);
                        }
                    }
                    DataOutput::Done { id, result } => self.done.push((id, result)),
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn result(&self, id: u64) -> Option<&Result<Bytes, DataError>> {
        self.done.iter().find(|(i, _)| *i == id).map(|(_, r)| r)
    }
}

#[test]
fn a_message_is_acknowledged_once_it_is_in_the_inbox() {
    let mut p = Pair::new(DataConfig::default());
    assert!(p.b.open_inbox("jobs/1"));
    let (id, frames) = p.start("jobs/1", 100_000, false);
    assert_eq!(frames.len(), 100_000usize.div_ceil(super::frame::MAX_PART), "travels in parts");
    p.deliver(frames);
    assert_eq!(p.result(id), Some(&Ok(Bytes::new())));
    let got = p.b.pop("jobs/1").expect("in the inbox");
    assert_eq!((got.from.as_str(), got.body.len(), got.request), ("a", 100_000, false));
}

#[test]
fn a_full_inbox_holds_the_message_unacknowledged_until_the_application_reads() {
    let mut p = Pair::new(DataConfig { inbox_messages: 2, ..DataConfig::default() });
    p.b.open_inbox("p");
    let ids: Vec<u64> = (0..4)
        .map(|_| {
            let (id, frames) = p.start("p", 10, false);
            p.deliver(frames);
            id
        })
        .collect();
    let acked = |p: &Pair| ids.iter().filter(|id| p.result(**id).is_some()).count();
    assert_eq!(acked(&p), 2, "the senders of the third and fourth wait");
    assert!(p.b.pop("p").is_some());
    p.settle();
    assert_eq!(acked(&p), 3, "reading one makes room for one");
    let mut read = 1;
    while p.b.pop("p").is_some() {
        read += 1;
        p.settle();
    }
    assert_eq!((read, acked(&p)), (4, 4), "nothing lost");
}

#[test]
fn a_request_gets_its_response_in_parts_and_a_refusal_says_why() {
    let mut p = Pair::new(DataConfig::default());
    p.b.open_inbox("rpc");
    let (id, frames) = p.start("rpc", 10, true);
    p.deliver(frames);
    assert!(p.result(id).is_none(), "a request is not acknowledged, it is answered");
    let req = p.b.pop("rpc").unwrap();
    assert!(req.request);
    let big = 2 * super::frame::MAX_PART + 70;
    let answer = p.b.respond(req.id, Ok(Bytes::from(vec![1u8; big])));
    assert_eq!(answer.len(), 3);
    for f in answer {
        p.a.on_frame(&peer("b"), &p.session, f);
    }
    p.settle();
    assert_eq!(p.result(id).map(|r| r.as_ref().map(|b| b.len())), Some(Ok(big)));

    let (id, frames) = p.start("rpc", 10, true);
    p.deliver(frames);
    let req = p.b.pop("rpc").unwrap();
    for f in p.b.respond(req.id, Err((Fail::Responder, "no such model".into()))) {
        p.a.on_frame(&peer("b"), &p.session, f);
    }
    p.settle();
    assert_eq!(p.result(id), Some(&Err(DataError::Refused("no such model".into()))));
}

#[test]
fn a_closed_link_fails_what_waits_on_it_at_once_with_its_reason() {
    let mut p = Pair::new(DataConfig::default());
    p.b.open_inbox("rpc");
    let (left, frames) = p.start("rpc", 10, true);
    p.deliver(frames);
    p.a.link_closed(&peer("b"), &p.session, &CloseReason::Remote);
    p.settle();
    assert_eq!(p.result(left), Some(&Err(DataError::PeerLeft(peer("b")))));
    p.a.set_current(&peer("b"), Some(&p.session));
    let (lost, _) = p.start("rpc", 10, true);
    p.a.link_closed(&peer("b"), &p.session, &CloseReason::Failed("ice".into()));
    p.settle();
    assert_eq!(p.result(lost), Some(&Err(DataError::LinkLost(peer("b")))));
    let not_linked = p.a.send(p.now, &peer("b"), "rpc", Bytes::new(), true, Duration::from_secs(1));
    assert_eq!(not_linked, Err(DataError::NotLinked(peer("b"))));
}

#[test]
fn an_unanswered_request_times_out_at_its_deadline_and_a_late_answer_is_ignored() {
    let mut p = Pair::new(DataConfig::default());
    p.b.open_inbox("rpc");
    let (id, frames) = p.start("rpc", 10, true);
    p.deliver(frames);
    assert_eq!(p.a.next_deadline(), Some(p.now + Duration::from_secs(5)));
    p.a.tick(p.now + Duration::from_millis(4999));
    p.settle();
    assert!(p.result(id).is_none());
    p.a.tick(p.now + Duration::from_secs(5));
    p.settle();
    assert_eq!(p.result(id), Some(&Err(DataError::TimedOut)));
    let req = p.b.pop("rpc").unwrap();
    for f in p.b.respond(req.id, Ok(Bytes::from_static(b"late"))) {
        p.a.on_frame(&peer("b"), &p.session, f);
    }
    p.settle();
    assert_eq!(p.done.len(), 1, "the late answer finishes nothing");
    assert_eq!(p.a.next_deadline(), None);
}

#[test]
fn limits_are_checked_by_the_sender_and_again_by_the_receiver() {
    let mut p = Pair::new(DataConfig { max_message_bytes: 100_000, ..DataConfig::default() });
    p.b.open_inbox("p");
    let too_big = p.a.send(p.now, &peer("b"), "p", Bytes::from(vec![0; 100_001]), false, Duration::from_secs(1));
    assert_eq!(too_big, Err(DataError::TooLarge { size: 100_001, max: 100_000 }));
    // A sender that ignores the limit: its parts are refused once they pass it.
    let (id, _) = p.start("p", 10, false);
    let rogue = Frame::split(Kind::Message, id, "p", &Bytes::from(vec![0; 200_000]));
    p.deliver(rogue);
    assert!(matches!(p.result(id), Some(Err(DataError::Refused(why))) if why.contains("too large")), "{:?}", p.done);
    assert!(p.b.pop("p").is_none(), "nothing of it reaches the application");
    // No inbox for the protocol: refused with the reason.
    let (id, frames) = p.start("nobody", 10, false);
    p.deliver(frames);
    assert!(matches!(p.result(id), Some(Err(DataError::Refused(why))) if why.contains("no inbox")), "{:?}", p.done);
    let bad = p.a.send(p.now, &peer("b"), "a b", Bytes::new(), false, Duration::from_secs(1));
    assert_eq!(bad, Err(DataError::BadProtocol("a b".into())));
}

#[test]
fn the_window_makes_a_sender_wait_and_a_flooding_sender_is_told_busy() {
    let config = DataConfig { window_bytes: 100_000, inbox_messages: 1, ..DataConfig::default() };
    let mut p = Pair::new(config);
    p.b.open_inbox("p");
    let (_, first) = p.start("p", 60_000, false);
    let second = p.a.send(p.now, &peer("b"), "p", Bytes::from(vec![0; 60_000]), false, Duration::from_secs(1));
    assert_eq!(second, Ok(Sent::Wait), "60 kB more would pass the window");
    p.deliver(first);
    let (_, second) = p.start("p", 60_000, false);
    p.deliver(second);
    // The inbox (1 message) is full and 60 kB wait at b; a rogue ignoring the window floods.
    let rogue: Vec<Frame> =
        (0..3).flat_map(|i| Frame::split(Kind::Message, 1000 + i, "p", &Bytes::from(vec![0; 30_000]))).collect();
    for f in rogue {
        p.b.on_frame(&peer("a"), &p.session, f);
    }
    let refusals: Vec<Frame> = std::iter::from_fn(|| p.b.poll())
        .filter_map(|o| match o {
            DataOutput::Write { frames, .. } => Some(frames),
            _ => None,
        })
        .flatten()
        .filter(|f| f.kind == Kind::Fail && f.payload.first() == Some(&Fail::Busy.code()))
        .collect();
    assert_eq!(refusals.len(), 2, "40 kB more fit in the window: one rogue message held, two refused");
}

#[test]
fn answers_from_a_third_party_or_for_someone_else_finish_nothing() {
    let mut p = Pair::new(DataConfig::default());
    p.b.open_inbox("rpc");
    let (id, frames) = p.start("rpc", 10, true);
    p.deliver(frames);
    // c (a third peer on another link) answers a's request; b acks a request (acks are for messages).
    let other = SessionId { offerer: peer("c"), seq: 9 };
    p.a.on_frame(
        &peer("c"),
        &other,
        Frame { kind: Kind::Response, more: false, yours: false, id, proto: String::new(), payload: Bytes::new() },
    );
    p.a.on_frame(&peer("c"), &other, Frame::fail(id, Fail::Busy, "x"));
    p.a.on_frame(&peer("b"), &p.session, Frame::ack(id));
    p.settle();
    assert!(p.result(id).is_none(), "{:?}", p.done);
    assert_eq!(p.a.next_deadline(), Some(p.now + Duration::from_secs(5)), "still waiting for b");
}
