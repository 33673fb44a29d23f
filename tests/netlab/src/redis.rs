//! A real `redis-server` on a free loopback port, with no persistence, for the signaling
//! cluster's tests and benchmarks. It can be restarted on the same port (its data is gone, as
//! after a real restart) and is stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it accepts connections.
    pub fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        Ok(Self { child: spawn(port)?, port })
    }

    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.start_again()
    }

    /// Starts a fresh, empty one on the same port (after [`RedisServer::stop`]).
    pub fn start_again(&mut self) -> Result<(), String> {
        self.child = spawn(self.port)?;
        Ok(())
    }

    /// Kills it (SIGKILL): its clients find it gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--loglevel", "notice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server (the redis-server package; scripts/test installs it): {e}"))?;
    if !crate::await_line(&mut child, "Ready to accept connections", "NETLAB_REDIS_LOG", Duration::from_secs(20)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("redis-server on port {port} was not ready within 20 s"));
    }
    Ok(child)
}
