//! Jobs on the workers of a mesh room, on mesh-core's data plane.
//!
//! A worker declares the kinds of job it runs (`[jobs.NAME]`, [`kinds`]) and serves them
//! ([`worker::serve`]); nothing else can run on it. A client ([`client`]) picks the best free
//! worker for a kind from the registry, reserves it, submits the job, and the worker fetches the
//! inputs from the client as verified, resumable blobs. The client follows the job's log by
//! polling (so a client that went away reattaches where it stopped reading), fetches the outputs,
//! and runs the job again elsewhere if its worker leaves. The asks are [`wire`].

pub mod client;
pub mod kinds;
pub mod wire;
pub mod worker;

pub use kinds::{KindSpec, Kinds, ParamSpec, ParamType, Rejection};
pub use wire::{Answer, Ask, FileRef, JobInfo, JobState, LogLine};
pub use worker::{serve, JobServer, WorkerJobs};
