//! The receiving half of [`DataCore`]: reassembly within the limits and the window, and the
//! per-protocol inboxes that hold a message unacknowledged while they are full.

use super::{Arrival, DataCore, DataOutput, Inbox, Partial, REFUSED_KEPT};
use crate::data::frame::{valid_proto, Fail, Frame, Kind};
use crate::id::PeerId;
use crate::signal::SessionId;
use bytes::BytesMut;

impl DataCore {
    /// Opens the inbox of `proto`; false if it is open already.
    pub fn open_inbox(&mut self, proto: &str) -> bool {
        if self.inboxes.contains_key(proto) {
            return false;
        }
        self.inboxes.insert(proto.to_string(), Inbox::default());
        true
    }

    /// Closes the inbox of `proto`: what waited for room is refused.
    pub fn close_inbox(&mut self, proto: &str) {
        let Some(inbox) = self.inboxes.remove(proto) else { return };
        for (a, bytes) in inbox.waiting {
            self.release(&a.session, bytes);
            self.refuse(&a.session, a.id, Fail::NoProtocol, &format!("protocol {proto} closed"));
        }
        if !inbox.queue.is_empty() {
            tracing::warn!(proto, unread = inbox.queue.len(), "inbox closed with arrivals unread");
        }
    }

    /// The next arrival in `proto`'s inbox; one waiting for room takes its place and is
    /// acknowledged.
    pub fn pop(&mut self, proto: &str) -> Option<Arrival> {
        let inbox = self.inboxes.get_mut(proto)?;
        let next = inbox.queue.pop_front()?;
        if let Some((a, bytes)) = inbox.waiting.pop_front() {
            let (session, id, request) = (a.session.clone(), a.id, a.request);
            inbox.queue.push_back(a);
            self.release(&session, bytes);
            if !request {
                self.out.push_back(DataOutput::Write { session, frames: vec![Frame::ack(id)] });
            }
        }
        Some(next)
    }

    pub(super) fn on_part(&mut self, from: &PeerId, session: &SessionId, frame: Frame) {
        let key = (session.clone(), frame.kind, frame.id);
        if self.refused.contains(&key) {
            if !frame.more {
                self.refused.remove(&key);
            }
            return;
        }
        let held = self.held.get(session).copied().unwrap_or(0);
        if !self.partial.contains_key(&key) && !valid_proto(&frame.proto) {
            return self.refuse(session, frame.id, Fail::Invalid, "bad protocol name");
        }
        if held + frame.payload.len() > self.config.window_bytes {
            let text = format!("over the window of {} bytes", self.config.window_bytes);
            return self.drop_partial(&key, frame.more, Fail::Busy, &text);
        }
        let part = self
            .partial
            .entry(key.clone())
            .or_insert_with(|| Partial { proto: frame.proto.clone(), buf: BytesMut::new() });
        if part.proto != frame.proto {
            return self.drop_partial(&key, frame.more, Fail::Invalid, "protocol changed between parts");
        }
        if part.buf.len() + frame.payload.len() > self.config.max_message_bytes {
            let text = format!("over {} bytes", self.config.max_message_bytes);
            return self.drop_partial(&key, frame.more, Fail::TooLarge, &text);
        }
        part.buf.extend_from_slice(&frame.payload);
        *self.held.entry(session.clone()).or_default() += frame.payload.len();
        if frame.more {
            return;
        }
        let Some(part) = self.partial.remove(&key) else { return };
        let bytes = part.buf.len();
        let request = frame.kind == Kind::Request;
        let arrival =
            Arrival { from: from.clone(), session: session.clone(), id: frame.id, request, body: part.buf.freeze() };
        let limit = self.config.inbox_messages;
        let Some(inbox) = self.inboxes.get_mut(&part.proto) else {
            self.release(session, bytes);
            let text = format!("no inbox for protocol {}", part.proto);
            return self.refuse(session, frame.id, Fail::NoProtocol, &text);
        };
        if inbox.queue.len() < limit {
            inbox.queue.push_back(arrival);
            self.release(session, bytes);
            if !request {
                self.out.push_back(DataOutput::Write { session: session.clone(), frames: vec![Frame::ack(frame.id)] });
            }
            self.out.push_back(DataOutput::Ready(part.proto));
        } else {
            inbox.waiting.push_back((arrival, bytes)); // held until the application reads
        }
    }

    /// Drops a message being reassembled and tells its sender why; its later parts (if `more`
    /// follow) are dropped as they come.
    fn drop_partial(&mut self, key: &(SessionId, Kind, u64), more: bool, why: Fail, text: &str) {
        if let Some(part) = self.partial.remove(key) {
            self.release(&key.0, part.buf.len());
        }
        if more {
            if self.refused.len() >= REFUSED_KEPT {
                self.refused.clear();
            }
            self.refused.insert(key.clone());
        }
        self.refuse(&key.0, key.2, why, text);
    }

    pub(super) fn refuse(&mut self, session: &SessionId, id: u64, why: Fail, text: &str) {
        tracing::debug!(%session, id, ?why, text, "application frame refused");
        self.out.push_back(DataOutput::Write { session: session.clone(), frames: vec![Frame::fail(id, why, text)] });
    }

    pub(super) fn release(&mut self, session: &SessionId, bytes: usize) {
        if let Some(h) = self.held.get_mut(session) {
            *h = h.saturating_sub(bytes);
        }
    }
}
