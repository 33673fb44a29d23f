//! [`Inbox`]: what arrives for one protocol, read by the application; [`Request`]: an arrival
//! that wants an answer.

use super::frame::Fail;
use super::{Arrival, DataPlane};
use crate::id::PeerId;
use crate::signal::SessionId;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::Notify;

/// The inbox of one protocol. While it is full its senders wait; dropping it closes the
/// protocol (later senders are refused).
pub struct Inbox {
    plane: DataPlane,
    proto: String,
    ready: Arc<Notify>,
}

/// One arrival.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A message; its sender was told it arrived.
    Message {
        /// The peer at the other end of the link it came over.
        from: PeerId,
        /// Its bytes.
        body: Bytes,
    },
    /// A request, to answer with [`Request::respond`] or [`Request::fail`].
    Request(Request),
    /// A stream the peer opened (`AsyncRead` + `AsyncWrite`).
    Stream(super::Stream),
}

impl Incoming {
    /// Who sent it.
    pub fn from(&self) -> &PeerId {
        match self {
            Self::Message { from, .. } => from,
            Self::Request(r) => &r.from,
            Self::Stream(s) => s.peer(),
        }
    }

    /// Its bytes (a stream's are read from it: empty here).
    pub fn body(&self) -> &Bytes {
        static NONE: Bytes = Bytes::new();
        match self {
            Self::Message { body, .. } => body,
            Self::Request(r) => &r.body,
            Self::Stream(_) => &NONE,
        }
    }
}

impl Inbox {
    pub(super) fn new(plane: DataPlane, proto: String, ready: Arc<Notify>) -> Self {
        Self { plane, proto, ready }
    }

    /// The protocol it serves.
    pub fn protocol(&self) -> &str {
        &self.proto
    }

    /// The next arrival, in the order they completed; `None` once the node stopped.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            let ready = self.ready.notified();
            if let Some(stream) = self.plane.pop_stream(&self.proto) {
                return Some(Incoming::Stream(stream));
            }
            match self.plane.pop(&self.proto) {
                Err(_) => return None,
                Ok(Some(arrival)) => return Some(self.incoming(arrival)),
                Ok(None) => ready.await,
            }
        }
    }

    fn incoming(&self, a: Arrival) -> Incoming {
        if !a.request {
            return Incoming::Message { from: a.from, body: a.body };
        }
        let plane = self.plane.clone();
        Incoming::Request(Request { from: a.from, body: a.body, session: a.session, id: a.id, plane, answered: false })
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.plane.unlisten(&self.proto);
    }
}

/// A request waiting for its answer; dropped unanswered, the requester hears "no response".
#[derive(Debug)]
pub struct Request {
    /// The peer at the other end of the link it came over.
    pub from: PeerId,
    /// Its bytes.
    pub body: Bytes,
    session: SessionId,
    id: u64,
    plane: DataPlane,
    answered: bool,
}

impl Request {
    /// Sends `body` as the response (on the link the request came over).
    pub async fn respond(mut self, body: impl Into<Bytes>) {
        self.answered = true;
        self.plane.respond(&self.session, self.id, Ok(body.into())).await;
    }

    /// Answers with an error; the requester gets [`super::DataError::Refused`] with `why`.
    pub async fn fail(mut self, why: &str) {
        self.answered = true;
        self.plane.respond(&self.session, self.id, Err((Fail::Responder, why.to_string()))).await;
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.plane.refuse_later(&self.session, self.id, Fail::NoResponse, "dropped without an answer");
        }
    }
}
