//! Shared pieces of the runnable programs (`mesh-demo`, `mesh-worker`, `mesh-bench`, the client):
//! building a worker stack by name, with an embedded signaling server when the stack needs one,
//! and running real worker processes for tests and benchmarks.

pub mod blob;
pub mod cli;
pub mod labroom;
pub mod procs;
pub mod stack;
