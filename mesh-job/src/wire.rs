//! The job protocol, `mesh/job/1`: JSON requests from a client to a worker and their answers.
//! Input and output files travel as blobs (`mesh/blob/1`): the worker fetches a job's inputs from
//! the client that submitted it, and the client fetches the outputs from the worker.
//!
//! Every ask but `List` names the job and carries its key: the owner's secret, which the worker
//! keeps only as a hash; without the key nobody can read a job's log, fetch its outputs or stop it.

use crate::kinds::Rejection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol name of job asks.
pub const PROTOCOL: &str = "mesh/job/1";

/// Log lines one `Poll` answer carries at most.
pub const MAX_LINES: usize = 1000;

/// Longest wait of a `Poll` for news.
pub const MAX_WAIT_MS: u64 = 30_000;

/// A file of a job: its name in the job, its file name, and the blob holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The input's declared name, or the output's path relative to the output directory.
    pub name: String,
    /// The file's own name (inputs: kept by the worker, so programs that look at it still work).
    pub file: String,
    /// The blob id (SHA-256 manifest) of the content.
    pub blob: String,
    /// Bytes.
    pub size: u64,
}

/// A client's ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum Ask {
    /// Run job `job` of `kind`; the worker fetches `inputs` from the asker. Asking again with the
    /// same job and key is answered like the first time (nothing runs twice).
    Submit {
        /// The job's id, chosen by the client (1-64 of `[A-Za-z0-9_-]`).
        job: String,
        /// The owner's secret.
        key: String,
        /// The declared kind.
        kind: String,
        /// Parameter values.
        #[serde(default)]
        params: BTreeMap<String, String>,
        /// One file per declared input.
        #[serde(default)]
        inputs: Vec<FileRef>,
    },
    /// The job's log from line `from`, and its state; waits up to `wait_ms` for something new.
    Poll {
        /// The job.
        job: String,
        /// The owner's secret.
        key: String,
        /// The first log line wanted.
        from: u64,
        /// How long to wait for a line or a change of state.
        wait_ms: u64,
    },
    /// Stop the job: SIGINT, then SIGTERM, then SIGKILL a grace period apart; `now`: SIGKILL.
    Cancel {
        /// The job.
        job: String,
        /// The owner's secret.
        key: String,
        /// Kill at once.
        #[serde(default)]
        now: bool,
    },
    /// Every job this worker holds.
    List,
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// The worker is fetching the inputs.
    Uploading {
        /// Bytes of inputs held and verified.
        done: u64,
        /// Bytes of inputs in all.
        total: u64,
    },
    /// The program runs.
    Running,
    /// The program has ended; its outputs can be fetched.
    Exited {
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// The files it left in its output directory.
        outputs: Vec<FileRef>,
    },
    /// The job could not run (an input could not be fetched, the program could not start).
    Failed {
        /// Why.
        reason: String,
    },
}

impl JobState {
    /// Whether the job has ended.
    pub fn ended(&self) -> bool {
        matches!(self, JobState::Exited { .. } | JobState::Failed { .. })
    }
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The program's standard output.
    Out,
    /// The program's standard error.
    Err,
    /// The worker, about the job (signals sent, limits hit).
    Worker,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Where it came from.
    pub ch: Channel,
    /// The line, without its end.
    pub text: String,
}

/// A job as `List` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's id.
    pub job: String,
    /// Its kind.
    pub kind: String,
    /// The peer that submitted it.
    pub owner: String,
    /// Where it is.
    pub state: JobState,
    /// Log lines so far.
    pub lines: u64,
    /// Milliseconds since it was accepted.
    pub age_ms: u64,
}

/// A worker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// The job is taken (or was already).
    Accepted,
    /// The job is refused; nothing ran.
    Rejected(Rejection),
    /// Log lines `from..next` and the job's state.
    Log {
        /// The lines.
        lines: Vec<LogLine>,
        /// The line to ask for next.
        next: u64,
        /// The state.
        state: JobState,
    },
    /// The stop has begun.
    Cancelling,
    /// The worker's jobs.
    Listed {
        /// The jobs.
        jobs: Vec<JobInfo>,
    },
}
