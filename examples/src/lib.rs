//! Shared pieces of the runnable programs (`mesh-demo`, `mesh-worker`, `mesh-bench`, the client):
//! building a worker stack by name, with an embedded signaling server when the stack needs one.

pub mod cli;
pub mod stack;
