//! The tokio runtime of the webrtc crate with larger UDP socket buffers. The kernel default
//! (about 208 KiB on Linux) overflows under a burst of 16 KiB chunks: datagrams are dropped, SCTP
//! waits out retransmission timers, and loopback throughput swings between 5 and 90 MiB/s.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime, TokioRuntime,
};

/// [`TokioRuntime`] whose UDP sockets ask for `buffer_bytes` of send and receive buffer (the
/// kernel caps the request at `net.core.rmem_max` / `wmem_max`).
pub struct BufferedRuntime {
    inner: TokioRuntime,
    buffer_bytes: usize,
}

impl BufferedRuntime {
    /// A runtime whose sockets request `buffer_bytes` each way.
    pub fn new(buffer_bytes: usize) -> Self {
        Self { inner: TokioRuntime, buffer_bytes }
    }
}

impl fmt::Debug for BufferedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedRuntime").field("buffer_bytes", &self.buffer_bytes).finish()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for BufferedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(&self, pool: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = socket2::SockRef::from(&socket);
        if let Err(err) = sock.set_recv_buffer_size(self.buffer_bytes) {
            tracing::debug!(error = %err, "could not enlarge the UDP receive buffer");
        }
        if let Err(err) = sock.set_send_buffer_size(self.buffer_bytes) {
            tracing::debug!(error = %err, "could not enlarge the UDP send buffer");
        }
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(&'a self, remote: SocketAddr) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (buffered UDP)"
    }
}
