//! The real server on a free loopback port, with rooms in the process (the default store).

mod cases;

/// No Redis: the in-process store.
fn redis() -> Option<mesh_netlab::RedisServer> {
    None
}
