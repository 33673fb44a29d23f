//! The real server's cases again, with rooms on a real `redis-server` (started per test on a
//! free loopback port, with no persistence, stopped at the end).

mod cases;

/// A fresh Redis for each test's server.
fn redis() -> Option<mesh_netlab::RedisServer> {
    Some(mesh_netlab::RedisServer::start().expect("redis-server starts (scripts/test installs it)"))
}
