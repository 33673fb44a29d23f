//! [`DataCore`]: the data plane's logic without I/O. Ids, deadlines, reassembly, inboxes,
//! acknowledgements and the sender's window live here, driven by explicit instants; the async
//! shell ([`super::DataPlane`]) only moves frames and wakes tasks.
//!
//! - **A message** is acknowledged once it is in the receiver's inbox. An inbox that is full
//!   holds the message unacknowledged, so the sender's `send` waits (back-pressure); nothing is
//!   dropped without the sender hearing why.
//! - **The window**: a sender keeps at most `window_bytes` unanswered per peer, and a receiver
//!   holds at most that much from one link (parts being reassembled and messages waiting for room);
//!   beyond it, the receiver answers `Busy` and the sender tries again.
//! - **A request** is answered by a response or a failure; its link closing fails it at once.

mod inbound;

use super::frame::{valid_proto, Fail, Frame, Kind};
use super::DataError;
use crate::id::PeerId;
use crate::signal::SessionId;
use crate::transport::CloseReason;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Messages refused part-way that are remembered, so that their later parts are dropped.
const REFUSED_KEPT: usize = 4096;
use std::time::{Duration, Instant};

/// Limits of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConfig {
    /// Largest message, request or response accepted or sent.
    pub max_message_bytes: usize,
    /// Messages an inbox holds before its senders wait.
    pub inbox_messages: usize,
    /// Bytes in flight per peer, each way.
    pub window_bytes: usize,
    /// How long `send` waits for the acknowledgement.
    pub send_timeout: Duration,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            inbox_messages: 64,
            window_bytes: 32 * 1024 * 1024,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// Something that arrived for an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The peer at the other end of the link it came over.
    pub from: PeerId,
    /// The link it came over (a request's answer goes back on it).
    pub session: SessionId,
    /// The sender's id (a request's answer names it).
    pub id: u64,
    /// True for a request, which wants an answer.
    pub request: bool,
    /// The bytes.
    pub body: Bytes,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutput {
    /// Write `frames` (acknowledgements and refusals), in order, on `session`.
    Write {
        /// The link.
        session: SessionId,
        /// The frames.
        frames: Vec<Frame>,
    },
    /// Message or request `id` of this node finished: a message's body is empty.
    Done {
        /// Which.
        id: u64,
        /// The response, or why it failed.
        result: Result<Bytes, DataError>,
    },
    /// Protocol `proto`'s inbox has something to read.
    Ready(String),
    /// The window to `peer` has room again.
    WindowOpen(PeerId),
}

/// One of this node's messages or requests, waiting for its answer.
struct Pending {
    peer: PeerId,
    session: SessionId,
    bytes: usize,
    deadline: Instant,
    request: bool,
    /// A response being reassembled.
    response: BytesMut,
}

/// Parts of one incoming message or request (or response) so far.
struct Partial {
    proto: String,
    buf: BytesMut,
}

/// One protocol's inbox: what the application may read, and what waits for room.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<Arrival>,
    /// Complete, unacknowledged: the inbox is full.
    waiting: VecDeque<(Arrival, usize)>,
}

/// The data plane's state.
pub struct DataCore {
    config: DataConfig,
    next_id: u64,
    /// The link the state machine uses for each peer.
    current: HashMap<PeerId, SessionId>,
    pending: HashMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Unanswered bytes per peer (the sender's window).
    in_flight: HashMap<PeerId, usize>,
    partial: HashMap<(SessionId, Kind, u64), Partial>,
    /// Messages refused part-way: their later parts are dropped (at most [`REFUSED_KEPT`]).
    refused: HashSet<(SessionId, Kind, u64)>,
    /// Bytes held per link for the sender (parts and waiting messages): the receiver's window.
    held: HashMap<SessionId, usize>,
    inboxes: HashMap<String, Inbox>,
    out: VecDeque<DataOutput>,
}

/// What [`DataCore::send`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Write these frames on `session`, in order; the answer comes as `Done { id }`.
    Started {
        /// The id of the message or request.
        id: u64,
        /// The link to write on.
        session: SessionId,
        /// Its frames.
        frames: Vec<Frame>,
    },
    /// The window to the peer is full: try again after `WindowOpen`.
    Wait,
}

impl DataCore {
    /// An empty data plane with `config`.
    pub fn new(config: DataConfig) -> Self {
        Self {
            config,
            next_id: 0,
            current: HashMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            in_flight: HashMap::new(),
            partial: HashMap::new(),
            refused: HashSet::new(),
            held: HashMap::new(),
            inboxes: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &DataConfig {
        &self.config
    }

    /// The next output, if any.
    pub fn poll(&mut self) -> Option<DataOutput> {
        self.out.pop_front()
    }

    /// The earliest deadline of a waiting message or request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The link the state machine uses for `peer`.
    pub fn current(&self, peer: &PeerId) -> Option<&SessionId> {
        self.current.get(peer)
    }

    /// Sets the link the state machine uses for `peer` (`None`: not linked).
    pub fn set_current(&mut self, peer: &PeerId, session: Option<&SessionId>) {
        match session {
            Some(s) => {
                self.current.insert(peer.clone(), s.clone());
            }
            None => {
                self.current.remove(peer);
            }
        }
    }

    /// Starts a message (`request` false) or request to `peer` on `proto`.
    pub fn send(
        &mut self,
        now: Instant,
        peer: &PeerId,
        proto: &str,
        body: Bytes,
        request: bool,
        timeout: Duration,
    ) -> Result<Sent, DataError> {
        if !valid_proto(proto) {
            return Err(DataError::BadProtocol(proto.to_string()));
        }
        if body.len() > self.config.max_message_bytes {
            return Err(DataError::TooLarge { size: body.len(), max: self.config.max_message_bytes });
        }
        let session = self.current.get(peer).cloned().ok_or_else(|| DataError::NotLinked(peer.clone()))?;
        let used = self.in_flight.get(peer).copied().unwrap_or(0);
        if used > 0 && used + body.len() > self.config.window_bytes {
            return Ok(Sent::Wait);
        }
        self.next_id += 1;
        let id = self.next_id;
        *self.in_flight.entry(peer.clone()).or_default() += body.len();
        let deadline = now + timeout;
        self.deadlines.insert((deadline, id));
        let kind = if request { Kind::Request } else { Kind::Message };
        let frames = Frame::split(kind, id, proto, &body);
        let response = BytesMut::new();
        let pending =
            Pending { peer: peer.clone(), session: session.clone(), bytes: body.len(), deadline, request, response };
        self.pending.insert(id, pending);
        Ok(Sent::Started { id, session, frames })
    }

    /// Gives up `id` (its caller went away); a late answer is ignored.
    pub fn cancel(&mut self, id: u64) {
        self.finish(id, None);
    }

    /// Fails every waiting operation whose deadline passed.
    pub fn tick(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.finish(id, Some(Err(DataError::TimedOut)));
        }
    }

    /// A link closed: what waited on it fails at once, what it held for its sender is dropped.
    pub fn link_closed(&mut self, peer: &PeerId, session: &SessionId, reason: &CloseReason) {
        if self.current.get(peer) == Some(session) {
            self.current.remove(peer);
        }
        let failed: Vec<u64> = self.pending.iter().filter(|(_, p)| &p.session == session).map(|(id, _)| *id).collect();
        for id in failed {
            let err = match reason {
                CloseReason::Remote => DataError::PeerLeft(peer.clone()),
                _ => DataError::LinkLost(peer.clone()),
            };
            self.finish(id, Some(Err(err)));
        }
        self.partial.retain(|(s, _, _), _| s != session);
        self.refused.retain(|(s, _, _)| s != session);
        for inbox in self.inboxes.values_mut() {
            inbox.waiting.retain(|(a, _)| &a.session != session);
        }
        self.held.remove(session);
    }

    /// The frames that answer request `id`: a response, or a failure with its text.
    pub fn respond(&self, id: u64, result: Result<Bytes, (Fail, String)>) -> Vec<Frame> {
        match result {
            Ok(body) if body.len() > self.config.max_message_bytes => {
                let text = format!("response of {} bytes is over {}", body.len(), self.config.max_message_bytes);
                vec![Frame::fail(id, Fail::TooLarge, &text)]
            }
            Ok(body) => Frame::split(Kind::Response, id, "", &body),
            Err((why, text)) => vec![Frame::fail(id, why, &text)],
        }
    }

    /// A frame arrived from `from` over `session`.
    pub fn on_frame(&mut self, from: &PeerId, session: &SessionId, frame: Frame) {
        match frame.kind {
            Kind::Ack => self.finish_from(from, frame.id, Ok(Bytes::new()), false),
            Kind::Fail => {
                let why = frame.payload.first().map_or(Fail::Invalid, |c| Fail::from_code(*c));
                let text = String::from_utf8_lossy(frame.payload.get(1..).unwrap_or_default()).into_owned();
                let err = match why {
                    Fail::TooLarge => DataError::Refused(format!("too large for {from}: {text}")),
                    Fail::Busy => DataError::Refused(format!("{from} is busy: {text}")),
                    _ => DataError::Refused(text),
                };
                self.finish_from(from, frame.id, Err(err), true);
            }
            Kind::Response => self.on_response(from, frame),
            Kind::Message | Kind::Request => self.on_part(from, session, frame),
            // Stream frames are the shell's `Streams`'; one here is dropped.
            _ => {}
        }
    }

    fn on_response(&mut self, from: &PeerId, frame: Frame) {
        let max = self.config.max_message_bytes;
        let Some(p) = self.pending.get_mut(&frame.id).filter(|p| &p.peer == from && p.request) else {
            return tracing::debug!(%from, id = frame.id, "response to no request of ours; dropped");
        };
        if p.response.len() + frame.payload.len() > max {
            let err = DataError::Refused(format!("{from}'s response is over {max} bytes"));
            return self.finish(frame.id, Some(Err(err)));
        }
        p.response.extend_from_slice(&frame.payload);
        if !frame.more {
            let body = std::mem::take(&mut p.response).freeze();
            self.finish(frame.id, Some(Ok(body)));
        }
    }

    /// An answer from `from` for our `id` (ignored if `id` is not ours to `from`, or is a request
    /// answered by an ack).
    fn finish_from(&mut self, from: &PeerId, id: u64, result: Result<Bytes, DataError>, any_kind: bool) {
        match self.pending.get(&id) {
            Some(p) if &p.peer == from && (any_kind || !p.request) => self.finish(id, Some(result)),
            _ => tracing::debug!(%from, id, "answer to nothing of ours; dropped"),
        }
    }

    /// Forgets `id`, frees its window, and reports `result` if any.
    fn finish(&mut self, id: u64, result: Option<Result<Bytes, DataError>>) {
        let Some(p) = self.pending.remove(&id) else { return };
        self.deadlines.remove(&(p.deadline, id));
        if let Some(used) = self.in_flight.get_mut(&p.peer) {
            *used = used.saturating_sub(p.bytes);
            if *used == 0 {
                self.in_flight.remove(&p.peer);
            }
        }
        self.out.push_back(DataOutput::WindowOpen(p.peer));
        if let Some(result) = result {
            self.out.push_back(DataOutput::Done { id, result });
        }
    }
}
