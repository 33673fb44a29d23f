//! [`Stream`]: one byte stream to a peer, as tokio's `AsyncRead` and `AsyncWrite`, over the
//! sans-IO [`Streams`](super::streams::Streams). Its frames go out on the link's bulk queue, in
//! order; its credit and resets on the control queue.

use super::frame::Kind;
use super::plane::State;
use super::streams::{Read, StreamKey, StreamOutput};
use super::{DataError, DataPlane};
use crate::id::PeerId;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Streams opened to this node waiting for their inbox's reader, per protocol, at most.
const ARRIVALS: usize = 64;

/// A byte stream to one peer: read its bytes, write yours, `shutdown` to finish your side.
/// Dropping it before both sides finished resets it.
pub struct Stream {
    plane: DataPlane,
    key: StreamKey,
    peer: PeerId,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({} #{})", self.peer, self.key.2)
    }
}

/// Carries out what the streams queued: frames to their queues, wake-ups, arrivals to inboxes.
pub(super) fn carry_out(state: &mut State) {
    while let Some(out) = state.streams.poll() {
        match out {
            StreamOutput::Write { session, frame } => {
                if let Some(entry) = state.links.get(&session) {
                    let queue = if matches!(frame.kind, Kind::StreamFin) { &entry.bulk } else { &entry.replies };
                    let _ = queue.send(frame.encode());
                }
            }
            StreamOutput::Wake(key) => {
                for w in state.stream_wakers.remove(&key).unwrap_or_default() {
                    w.wake();
                }
            }
            StreamOutput::Opened { from, proto, key } => {
                let waiting = state.stream_arrivals.get(&proto).map_or(0, |q| q.len());
                if !DataPlane::has_inbox(state, &proto) {
                    state.streams.reset(&key, &format!("no inbox for protocol {proto}"));
                } else if waiting >= ARRIVALS {
                    state.streams.reset(&key, "busy: too many streams waiting");
                } else {
                    state.stream_arrivals.entry(proto.clone()).or_default().push_back((from, key));
                    DataPlane::ready(state, &proto);
                }
            }
        }
    }
}

impl DataPlane {
    /// Opens a stream to `peer` on `proto`.
    pub(crate) fn open_stream(&self, peer: &PeerId, proto: &str) -> Result<Stream, DataError> {
        if !super::frame::valid_proto(proto) {
            return Err(DataError::BadProtocol(proto.to_string()));
        }
        let mut state = self.lock();
        let session = DataPlane::current_link(&state, peer).ok_or_else(|| DataError::NotLinked(peer.clone()))?;
        let (key, open) = state.streams.open(&session, proto);
        if let Some(entry) = state.links.get(&session) {
            let _ = entry.bulk.send(open.encode());
        }
        Ok(Stream { plane: self.clone(), key, peer: peer.clone() })
    }

    /// A stream that arrived for `proto`, if any.
    pub(super) fn pop_stream(&self, proto: &str) -> Option<Stream> {
        let mut state = self.lock();
        let (peer, key) = state.stream_arrivals.get_mut(proto)?.pop_front()?;
        Some(Stream { plane: self.clone(), key, peer })
    }
}

impl Stream {
    /// The peer at the other end.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    fn wait(state: &mut State, key: &StreamKey, cx: &Context<'_>) {
        let wakers = state.stream_wakers.entry(key.clone()).or_default();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.plane.lock();
        let read = state.streams.read(&self.key, buf.remaining());
        carry_out(&mut state);
        match read {
            Read::Data(bytes) => {
                buf.put_slice(&bytes);
                Poll::Ready(Ok(()))
            }
            Read::End => Poll::Ready(Ok(())),
            Read::Reset(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, why))),
            Read::Pending => {
                Stream::wait(&mut state, &self.key, cx);
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.plane.lock();
        match state.streams.reserve(&self.key, buf.len()) {
            Err(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, why))),
            Ok(0) if !buf.is_empty() => {
                Stream::wait(&mut state, &self.key, cx);
                Poll::Pending
            }
            Ok(n) => {
                let frame = state.streams.data(&self.key, Bytes::copy_from_slice(&buf[..n]));
                match state.links.get(&self.key.0) {
                    Some(entry) if entry.bulk.send(frame.encode()).is_ok() => Poll::Ready(Ok(n)),
                    _ => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the link closed"))),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // written bytes are queued on the link; the credit bounds them
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.plane.lock();
        state.streams.finish(&self.key);
        carry_out(&mut state);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut state = self.plane.lock();
        state.streams.drop_stream(&self.key);
        state.stream_wakers.remove(&self.key);
        carry_out(&mut state);
    }
}
