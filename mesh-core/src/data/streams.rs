//! [`Streams`]: byte streams over a link, without I/O. Each stream has its own credit: its
//! sender may have at most what its receiver granted unread ([`WINDOW`] to start, more as the
//! reader consumes), so one slow stream never holds up another, nor mesh control. Ids are each
//! opener's own; a frame about a stream its receiver opened is flagged `yours`. A peer may hold
//! at most [`MAX_REMOTE_STREAMS`] streams it opened on one link: what it can make this node
//! buffer is bounded by their product.

use super::frame::{Frame, Kind};
use crate::id::PeerId;
use crate::signal::SessionId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// Bytes a stream's sender may send before its receiver reads any. One stream moves at most
/// this much per round trip: 4 MiB is 50 MiB/s at 80 ms (256 KiB held one stream to 19 MiB/s
/// at 10 ms in the lab, a tenth of TCP's).
pub const WINDOW: usize = 4 * 1024 * 1024;

/// Streams a peer may have open that it opened, per link; a further open is reset.
pub const MAX_REMOTE_STREAMS: usize = 16;

/// A stream: its link, who opened it (this node: `true`), and the opener's id.
pub type StreamKey = (SessionId, bool, u64);

/// What reading a stream gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Bytes, in order.
    Data(Bytes),
    /// The other side finished: no more bytes.
    End,
    /// The stream was reset (why).
    Reset(String),
    /// Nothing yet.
    Pending,
}

/// What the shell must do.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamOutput {
    /// Write `frame` on `session` (credit, fin and reset frames: small).
    Write {
        /// The link.
        session: SessionId,
        /// The frame.
        frame: Frame,
    },
    /// A reader or writer of `key` may go on.
    Wake(StreamKey),
    /// `from` opened stream `key` on `proto`.
    Opened {
        /// The opener.
        from: PeerId,
        /// The protocol.
        proto: String,
        /// The stream.
        key: StreamKey,
    },
}

#[derive(Default)]
struct Stream {
    recv: VecDeque<Bytes>,
    /// Bytes received beyond the grants (a sender over its credit is reset).
    received: usize,
    granted: usize,
    consumed_since_grant: usize,
    fin_in: bool,
    credit: usize,
    fin_out: bool,
    reset: Option<String>,
}

/// Every stream of a node.
#[derive(Default)]
pub struct Streams {
    streams: HashMap<StreamKey, Stream>,
    next_id: u64,
    out: VecDeque<StreamOutput>,
}

fn frame(kind: Kind, key: &StreamKey, payload: Bytes) -> Frame {
    // The receiver of this frame opened the stream exactly when this node did not.
    Frame::stream(kind, key.2, !key.1, "", payload)
}

impl Streams {
    /// The next output, if any.
    pub fn poll(&mut self) -> Option<StreamOutput> {
        self.out.pop_front()
    }

    /// Opens a stream on `session` for `proto`; the frame to send first.
    pub fn open(&mut self, session: &SessionId, proto: &str) -> (StreamKey, Frame) {
        self.next_id += 1;
        let key = (session.clone(), true, self.next_id);
        self.streams.insert(key.clone(), Stream { credit: WINDOW, granted: WINDOW, ..Default::default() });
        (key.clone(), Frame::stream(Kind::StreamOpen, key.2, false, proto, Bytes::new()))
    }

    /// A stream frame from `from` over `session`.
    pub fn on_frame(&mut self, from: &PeerId, session: &SessionId, f: Frame) {
        let key = (session.clone(), f.yours, f.id);
        if f.kind == Kind::StreamOpen {
            if f.yours || self.streams.contains_key(&key) {
                return; // an open of our own id, or a second open: ignored
            }
            let theirs = self.streams.keys().filter(|k| &k.0 == session && !k.1).count();
            if theirs >= MAX_REMOTE_STREAMS {
                tracing::warn!(peer = %from, theirs, "refused a stream: too many open on this link");
                let why = Bytes::from_static(b"too many streams open on this link");
                let frame = frame(Kind::StreamReset, &key, why);
                return self.out.push_back(StreamOutput::Write { session: session.clone(), frame });
            }
            self.streams.insert(key.clone(), Stream { credit: WINDOW, granted: WINDOW, ..Default::default() });
            let proto = f.proto;
            self.out.push_back(StreamOutput::Opened { from: from.clone(), proto, key });
            return;
        }
        let Some(s) = self.streams.get_mut(&key) else { return };
        match f.kind {
            Kind::StreamData if !s.fin_in && s.reset.is_none() => {
                s.received += f.payload.len();
                if s.received > s.granted {
                    return self.reset(&key, "sent over its credit");
                }
                s.recv.push_back(f.payload);
            }
            Kind::StreamCredit => {
                let more = f.payload.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
                s.credit = s.credit.saturating_add(more).min(16 * WINDOW);
            }
            Kind::StreamFin => s.fin_in = true,
            Kind::StreamReset => {
                s.reset = Some(String::from_utf8_lossy(&f.payload).into_owned());
            }
            _ => return,
        }
        self.out.push_back(StreamOutput::Wake(key));
    }

    /// Takes up to `max` bytes of `key`; grants the sender more as the reader consumes.
    pub fn read(&mut self, key: &StreamKey, max: usize) -> Read {
        let Some(s) = self.streams.get_mut(key) else { return Read::Reset("no such stream".into()) };
        if let Some(why) = &s.reset {
            return Read::Reset(why.clone());
        }
        let Some(mut head) = s.recv.pop_front() else {
            return if s.fin_in { Read::End } else { Read::Pending };
        };
        if head.len() > max {
            let rest = head.split_off(max);
            s.recv.push_front(rest);
        }
        s.consumed_since_grant += head.len();
        if s.consumed_since_grant >= WINDOW / 2 {
            let grant = std::mem::take(&mut s.consumed_since_grant);
            s.granted += grant;
            let payload = Bytes::copy_from_slice(&(grant as u32).to_be_bytes());
            self.out.push_back(StreamOutput::Write {
                session: key.0.clone(),
                frame: frame(Kind::StreamCredit, key, payload),
            });
        }
        Read::Data(head)
    }

    /// Reserves up to `want` bytes of credit to send on `key`: `Ok(0)` means wait for credit.
    pub fn reserve(&mut self, key: &StreamKey, want: usize) -> Result<usize, String> {
        let s = self.streams.get_mut(key).ok_or("no such stream")?;
        if let Some(why) = &s.reset {
            return Err(why.clone());
        }
        if s.fin_out {
            return Err("this side finished the stream".into());
        }
        let n = want.min(s.credit).min(super::frame::MAX_PART);
        s.credit -= n;
        Ok(n)
    }

    /// The data frame that carries `bytes` on `key` (reserved first).
    pub fn data(&self, key: &StreamKey, bytes: Bytes) -> Frame {
        frame(Kind::StreamData, key, bytes)
    }

    /// This side sends no more on `key`.
    pub fn finish(&mut self, key: &StreamKey) {
        if let Some(s) = self.streams.get_mut(key).filter(|s| !s.fin_out && s.reset.is_none()) {
            s.fin_out = true;
            self.out.push_back(StreamOutput::Write {
                session: key.0.clone(),
                frame: frame(Kind::StreamFin, key, Bytes::new()),
            });
        }
    }

    /// Gives `key` up both ways, telling the other side why.
    pub fn reset(&mut self, key: &StreamKey, why: &str) {
        if let Some(s) = self.streams.get_mut(key).filter(|s| s.reset.is_none()) {
            s.reset = Some(why.to_string());
            let payload = Bytes::copy_from_slice(why.as_bytes());
            self.out.push_back(StreamOutput::Write {
                session: key.0.clone(),
                frame: frame(Kind::StreamReset, key, payload),
            });
            self.out.push_back(StreamOutput::Wake(key.clone()));
        }
    }

    /// The stream's handle is gone: reset unless both sides finished, then forget it.
    pub fn drop_stream(&mut self, key: &StreamKey) {
        let done = self.streams.get(key).is_some_and(|s| s.fin_out && s.fin_in);
        if !done {
            self.reset(key, "the other side dropped the stream");
        }
        self.streams.remove(key);
    }

    /// The link closed: every stream on it is reset.
    pub fn link_closed(&mut self, session: &SessionId) {
        for (key, s) in self.streams.iter_mut().filter(|(k, _)| &k.0 == session) {
            if s.reset.is_none() {
                s.reset = Some("the link closed".into());
            }
            self.out.push_back(StreamOutput::Wake(key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionId {
        SessionId { offerer: PeerId::new("a").unwrap(), seq: 1 }
    }

    #[test]
    fn a_peer_opening_more_streams_than_allowed_gets_resets_and_the_first_ones_still_work() {
        let (mut a, mut b) = (Streams::default(), Streams::default());
        let keys: Vec<StreamKey> = (0..MAX_REMOTE_STREAMS + 3)
            .map(|_| {
                let (key, open) = a.open(&session(), "p");
                b.on_frame(&PeerId::new("a").unwrap(), &session(), open);
                key
            })
            .collect();
        let mut opened = 0;
        while let Some(out) = b.poll() {
            match out {
                StreamOutput::Opened { .. } => opened += 1,
                StreamOutput::Write { frame, .. } => a.on_frame(&PeerId::new("b").unwrap(), &session(), frame),
                StreamOutput::Wake(_) => {}
            }
        }
        assert_eq!(opened, MAX_REMOTE_STREAMS, "only the allowed ones reach the application");
        let reset = |k: &StreamKey, s: &mut Streams| matches!(s.reserve(k, 1), Err(why) if why.contains("too many"));
        assert!(keys[..MAX_REMOTE_STREAMS].iter().all(|k| !reset(k, &mut a)), "the allowed ones stay open");
        assert!(keys[MAX_REMOTE_STREAMS..].iter().all(|k| reset(k, &mut a)), "the extra ones are reset");
    }

    /// Moves every frame `from` wrote to `to`.
    fn carry(from: &mut Streams, to: &mut Streams, sender: &str) -> usize {
        let mut n = 0;
        while let Some(out) = from.poll() {
            if let StreamOutput::Write { frame, .. } = out {
                to.on_frame(&PeerId::new(sender).unwrap(), &session(), frame);
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_sender_stops_at_its_credit_and_reading_grants_more() {
        let (mut a, mut b) = (Streams::default(), Streams::default());
        let (key, open) = a.open(&session(), "logs/1");
        b.on_frame(&PeerId::new("a").unwrap(), &session(), open);
        let Some(StreamOutput::Opened { key: theirs, proto, .. }) = b.poll() else { panic!("opened") };
        assert_eq!(proto, "logs/1");
        let mut sent = 0;
        loop {
            let n = a.reserve(&key, 64 * 1024).unwrap();
            if n == 0 {
                break;
            }
            b.on_frame(&PeerId::new("a").unwrap(), &session(), a.data(&key, Bytes::from(vec![1u8; n])));
            sent += n;
        }
        assert_eq!(sent, WINDOW, "no more than the window unread");
        let mut read = 0;
        while let Read::Data(d) = b.read(&theirs, 1 << 20) {
            read += d.len();
        }
        assert_eq!(read, WINDOW);
        assert!(carry(&mut b, &mut a, "b") >= 1, "credit went back");
        assert!(a.reserve(&key, 64 * 1024).unwrap() > 0, "the sender may go on");
        a.finish(&key);
        carry(&mut a, &mut b, "a");
        while b.poll().is_some() {}
        assert_eq!(b.read(&theirs, 10), Read::End);
    }

    #[test]
    fn a_sender_over_its_credit_is_reset_and_a_closed_link_resets_its_streams() {
        let (mut a, mut b) = (Streams::default(), Streams::default());
        let (key, open) = a.open(&session(), "p");
        b.on_frame(&PeerId::new("a").unwrap(), &session(), open);
        let Some(StreamOutput::Opened { key: theirs, .. }) = b.poll() else { panic!("opened") };
        let flood = a.data(&key, Bytes::from(vec![0u8; WINDOW + 1]));
        b.on_frame(&PeerId::new("a").unwrap(), &session(), flood);
        assert!(matches!(b.read(&theirs, 10), Read::Reset(why) if why.contains("credit")));
        carry(&mut b, &mut a, "b");
        assert!(a.reserve(&key, 10).is_err(), "the sender hears the reset");
        let (other, _) = a.open(&session(), "q");
        a.link_closed(&session());
        assert!(matches!(a.read(&other, 10), Read::Reset(why) if why.contains("link")));
    }
}
