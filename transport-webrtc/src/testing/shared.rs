//! Many of the stack's peer connections on one UDP socket, driven by one thread with no async
//! runtime: what a worker's links could cost if this crate drove the sans-IO core itself.
//! `mesh-bench idle --floor` runs one of these per process, a heartbeat-sized message on every
//! open channel each second of the wall clock (`mesh_core::wall_clock_phase`, as heartbeats
//! go), and measures its CPU beside the workers'.
//!
//! Datagrams are demultiplexed by their source address: each peer here has one socket, so a
//! remote address names one connection. (A real driver would also route ICE checks that arrive
//! before a pair is known by the username they carry.)

use super::wire::{host_candidate, End};
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The connections of one process and their socket.
pub struct SharedSocket {
    socket: UdpSocket,
    local: SocketAddr,
    ends: Vec<End>,
    /// Each connection's next timer, as of the last time it was touched.
    timers: Vec<Option<Instant>>,
    /// Connections touched since they were last flushed.
    dirty: Vec<usize>,
    by_remote: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
}

/// Why a description from a peer could not be used.
fn refused(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {err}"))
}

impl SharedSocket {
    /// A socket on a free loopback port, with no connections yet.
    pub fn bind() -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            ends: Vec::new(),
            timers: Vec::new(),
            dirty: Vec::new(),
            by_remote: HashMap::new(),
            buf: vec![0; 2048],
        })
    }

    /// The socket's address: every connection's one host candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A new connection to the peer at `remote`, as the offerer; its offer's SDP.
    pub fn offer(&mut self, remote: SocketAddr) -> io::Result<String> {
        let now = Instant::now();
        let mut end = End::new(now, self.local);
        let offer = end.pc.create_offer(None).map_err(|e| refused("offer", e))?;
        end.pc.set_local_description(now, offer.clone()).map_err(|e| refused("local offer", e))?;
        end.pc.add_local_candidate(end.candidate()).map_err(|e| refused("local candidate", e))?;
        self.add(end, remote);
        Ok(offer.sdp)
    }

    /// A new connection answering the peer at `remote`'s offer; the answer's SDP.
    pub fn answer(&mut self, remote: SocketAddr, offer: String) -> io::Result<String> {
        let now = Instant::now();
        let mut end = End::new(now, self.local);
        let offer = RTCSessionDescription::offer(offer).map_err(|e| refused("offer", e))?;
        end.pc.set_remote_description(now, offer).map_err(|e| refused("remote offer", e))?;
        end.pc.add_remote_candidate(host_candidate(remote)).map_err(|e| refused("remote candidate", e))?;
        let answer = end.pc.create_answer(None).map_err(|e| refused("answer", e))?;
        end.pc.set_local_description(now, answer.clone()).map_err(|e| refused("local answer", e))?;
        end.pc.add_local_candidate(end.candidate()).map_err(|e| refused("local candidate", e))?;
        self.add(end, remote);
        Ok(answer.sdp)
    }

    /// The answer of the peer at `remote` to this side's offer.
    pub fn answered(&mut self, remote: SocketAddr, answer: String) -> io::Result<()> {
        let index = *self.by_remote.get(&remote).ok_or_else(|| refused("answer", "no offer to that peer"))?;
        let end = &mut self.ends[index];
        let answer = RTCSessionDescription::answer(answer).map_err(|e| refused("answer", e))?;
        end.pc.set_remote_description(Instant::now(), answer).map_err(|e| refused("remote answer", e))?;
        end.pc.add_remote_candidate(host_candidate(remote)).map_err(|e| refused("remote candidate", e))?;
        self.dirty.push(index);
        Ok(())
    }

    fn add(&mut self, end: End, remote: SocketAddr) {
        self.by_remote.insert(remote, self.ends.len());
        self.dirty.push(self.ends.len());
        self.ends.push(end);
        self.timers.push(None);
    }

    /// Connections whose channel is open.
    pub fn open(&self) -> usize {
        self.ends.iter().filter(|e| e.channel.is_some()).count()
    }

    /// Drives every connection until `until` (or for at most `step`, to let the caller add
    /// connections), sending `beat` on each open channel at every whole second of the wall clock.
    /// Only the connections a datagram, a timer or a beat touched are polled afterwards.
    pub fn run(&mut self, until: Instant, step: Option<Duration>, beat: &str) -> io::Result<()> {
        let stop = step.map_or(until, |s| until.min(Instant::now() + s));
        let mut next_beat = next_whole_second();
        loop {
            self.flush();
            let now = Instant::now();
            if now >= next_beat {
                for (index, end) in self.ends.iter_mut().enumerate().filter(|(_, e)| e.channel.is_some()) {
                    end.send(now, beat);
                    self.dirty.push(index);
                }
                next_beat = next_whole_second();
                continue;
            }
            if now >= stop {
                return Ok(());
            }
            let timer = self.timers.iter().flatten().min().copied();
            let wake = [Some(next_beat), Some(stop), timer].into_iter().flatten().min().unwrap_or(stop);
            if wake > now {
                self.socket.set_read_timeout(Some(wake - now))?;
                match self.socket.recv_from(&mut self.buf) {
                    Ok((len, from)) => self.read(from, len),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e),
                }
            }
            let now = Instant::now();
            for (index, timer) in self.timers.iter().enumerate() {
                if timer.is_some_and(|t| t <= now) {
                    let _ = self.ends[index].pc.handle_timeout(now);
                    self.dirty.push(index);
                }
            }
        }
    }

    /// Hands one datagram to the connection its source names; others are dropped.
    fn read(&mut self, from: SocketAddr, len: usize) {
        let Some(&index) = self.by_remote.get(&from) else { return };
        let transport = TransportContext {
            local_addr: self.local,
            peer_addr: from,
            transport_protocol: TransportProtocol::UDP,
            ecn: None,
        };
        let message = bytes::BytesMut::from(&self.buf[..len]);
        let _ = self.ends[index].pc.handle_read(TaggedBytesMut { now: Instant::now(), transport, message });
        self.dirty.push(index);
    }

    /// Sends what the touched connections have to send, notes channels that opened, drops
    /// messages, and notes their next timers.
    fn flush(&mut self) {
        while let Some(index) = self.dirty.pop() {
            let end = &mut self.ends[index];
            while let Some(packet) = end.pc.poll_write() {
                end.datagrams += 1;
                if let Err(e) = self.socket.send_to(&packet.message, packet.transport.peer_addr) {
                    tracing::debug!(error = %e, "datagram not sent");
                }
            }
            while let Some(event) = end.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = event {
                    end.channel = Some(id);
                }
            }
            while end.pc.poll_read().is_some() {}
            self.timers[index] = end.pc.poll_timeout();
        }
    }
}

/// The next whole second of the wall clock, as an instant (on the heartbeats' grid).
fn next_whole_second() -> Instant {
    const SECOND: Duration = Duration::from_secs(1);
    mesh_core::wall_clock_phase(SECOND).unwrap_or_else(Instant::now) + SECOND
}
