//! The worker's jobs: state, log and owner of each, shared by the ask handlers and the runs.

use crate::kinds::{KindSpec, Kinds, Rejection};
use crate::wire::{Channel, FileRef, JobInfo, JobState, LogLine};
use mesh_core::{MeshNode, PeerId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Bytes of log kept per job; later lines are counted and dropped, with a note.
const MAX_LOG_BYTES: usize = 16 << 20;

/// One job.
pub(super) struct Job {
    pub(super) kind: String,
    pub(super) spec: KindSpec,
    pub(super) params: BTreeMap<String, String>,
    pub(super) inputs: Vec<FileRef>,
    pub(super) owner: PeerId,
    key_hash: [u8; 32],
    pub(super) dir: PathBuf,
    state: JobState,
    log: Vec<LogLine>,
    log_bytes: usize,
    accepted: Instant,
    /// Bumped on every new line and change of state; pollers wait on it.
    version: watch::Sender<u64>,
    /// Tells the run to stop the program (`true`: at once).
    pub(super) stop: Option<mpsc::Sender<bool>>,
    /// Cancelled before its program started: it never starts.
    pub(super) cancelled: bool,
}

fn hash(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

impl Job {
    /// A job just accepted: uploading its inputs.
    pub(super) fn new(
        kind: &str,
        spec: KindSpec,
        params: BTreeMap<String, String>,
        inputs: Vec<FileRef>,
        owner: PeerId,
        key: &str,
        dir: PathBuf,
    ) -> Self {
        let total = inputs.iter().map(|i| i.size).sum();
        Self {
            kind: kind.to_string(),
            spec,
            params,
            inputs,
            owner,
            key_hash: hash(key),
            dir,
            state: JobState::Uploading { done: 0, total },
            log: Vec::new(),
            log_bytes: 0,
            accepted: Instant::now(),
            version: watch::channel(0).0,
            stop: None,
            cancelled: false,
        }
    }
}

/// The jobs of one worker.
#[derive(Clone)]
pub(super) struct Table {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    kinds: Kinds,
}

impl Table {
    pub(super) fn new(kinds: Kinds) -> Self {
        Self { jobs: Arc::default(), kinds }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Job>) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut jobs)
    }

    /// Enters `job` unless `slots` jobs of its kind run already (then: how many run).
    pub(super) fn insert_within(&self, id: &str, job: Job, slots: usize) -> Result<(), usize> {
        self.with(|jobs| {
            let running = jobs.values().filter(|j| j.kind == job.kind && !j.state.ended()).count();
            if running >= slots {
                return Err(running);
            }
            jobs.insert(id.to_string(), job);
            Ok(())
        })
    }

    pub(super) fn remove(&self, id: &str) -> Option<JobState> {
        self.with(|jobs| jobs.remove(id).map(|j| j.state))
    }

    pub(super) fn exists(&self, id: &str) -> bool {
        self.with(|jobs| jobs.contains_key(id))
    }

    /// The job's change counter, if `key` is its owner's.
    pub(super) fn owned(&self, id: &str, key: &str) -> Result<watch::Receiver<u64>, Rejection> {
        self.with(|jobs| match jobs.get(id) {
            Some(job) if job.key_hash == hash(key) => Ok(job.version.subscribe()),
            _ => Err(Rejection::new("job", format!("no job `{id}` of that key on this worker"))),
        })
    }

    /// Applies `f` to job `id` (if it is still here) and wakes its pollers.
    pub(super) fn update<R>(&self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.with(|jobs| {
            let job = jobs.get_mut(id)?;
            let r = f(job);
            job.version.send_modify(|v| *v += 1);
            Some(r)
        })
    }

    pub(super) fn set_state(&self, id: &str, state: JobState) {
        self.update(id, |job| job.state = state);
    }

    /// Appends a log line (dropped beyond the job's log budget, with one note saying so).
    pub(super) fn log(&self, id: &str, ch: Channel, text: String) {
        self.update(id, |job| {
            if job.log_bytes > MAX_LOG_BYTES {
                return;
            }
            job.log_bytes += text.len() + 1;
            let line = if job.log_bytes > MAX_LOG_BYTES {
                LogLine { ch: Channel::Worker, text: "log over 16 MiB: later lines are not kept".into() }
            } else {
                LogLine { ch, text }
            };
            job.log.push(line);
        });
    }

    /// Whether a poll from line `from` has something to take now.
    pub(super) fn has_news(&self, id: &str, from: u64) -> bool {
        self.with(|jobs| jobs.get(id).is_some_and(|j| (j.log.len() as u64) > from || j.state.ended()))
    }

    /// Up to `max` lines from `from` (at most about 1 MiB of them), the next line to ask for,
    /// and the state.
    pub(super) fn read(&self, id: &str, from: u64, max: usize) -> (Vec<LogLine>, u64, JobState) {
        self.with(|jobs| {
            let Some(job) = jobs.get(id) else {
                return (Vec::new(), from, JobState::Failed { reason: "the job is gone".into() });
            };
            let start = (from as usize).min(job.log.len());
            let mut bytes = 0;
            let lines: Vec<LogLine> = job.log[start..]
                .iter()
                .take(max)
                .take_while(|l| {
                    bytes += l.text.len() + 16;
                    bytes < 1 << 20
                })
                .cloned()
                .collect();
            let next = (start + lines.len()) as u64;
            (lines, next, job.state.clone())
        })
    }

    /// Asks the run of job `id` to stop it (a job still uploading never starts).
    pub(super) fn cancel(&self, id: &str, now: bool) -> Result<(), Rejection> {
        let stop = self.with(|jobs| {
            let job = jobs.get_mut(id)?;
            job.cancelled |= job.stop.is_none();
            Some((job.stop.clone(), job.state.ended()))
        });
        match stop {
            Some((_, true)) => Err(Rejection::new("job", "it has ended already")),
            Some((Some(stop), false)) => {
                let _ = stop.try_send(now);
                Ok(())
            }
            Some((None, false)) => Ok(()),
            None => Err(Rejection::new("job", "no such job")),
        }
    }

    pub(super) fn list(&self) -> Vec<JobInfo> {
        self.with(|jobs| {
            let mut list: Vec<JobInfo> = jobs
                .iter()
                .map(|(id, j)| JobInfo {
                    job: id.clone(),
                    kind: j.kind.clone(),
                    owner: j.owner.to_string(),
                    state: j.state.clone(),
                    lines: j.log.len() as u64,
                    age_ms: j.accepted.elapsed().as_millis() as u64,
                })
                .collect();
            list.sort_by(|a, b| a.job.cmp(&b.job));
            list
        })
    }

    /// Shows the load in the worker's record: metadata `jobs` (per kind: running and slots; the
    /// running jobs) and `busy` while every kind is full.
    pub(super) async fn publish(&self, node: &MeshNode) {
        let (kinds, running, full) = self.with(|jobs| {
            let mut kinds = serde_json::Map::new();
            let mut full = !self.kinds.0.is_empty();
            for (name, spec) in &self.kinds.0 {
                let n = jobs.values().filter(|j| &j.kind == name && !j.state.ended()).count();
                full &= n >= spec.concurrency;
                kinds.insert(name.clone(), serde_json::json!({ "running": n, "slots": spec.concurrency }));
            }
            let mut running: Vec<&String> = jobs.iter().filter(|(_, j)| !j.state.ended()).map(|(id, _)| id).collect();
            running.sort();
            (kinds, serde_json::json!(running), full)
        });
        let _ = node.set_metadata("jobs", serde_json::json!({ "kinds": kinds, "running": running })).await;
        let _ = node.set_busy(full).await;
    }
}
