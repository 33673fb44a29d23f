//! The client's side: pick a worker for a kind, reserve it, submit, follow the log, fetch the
//! outputs. Every step is a request on the data plane with a timeout; a worker that leaves shows
//! as [`Lost`], and the caller runs the job again elsewhere.

use crate::kinds::Rejection;
use crate::wire::{Answer, Ask, FileRef, JobState, LogLine, PROTOCOL};
use mesh_core::transfer::{BlobId, Progress};
use mesh_core::{DataError, MeshNode, PeerId, RegistryFilter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// How long one ask (other than a poll) waits for its answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a poll waits on the worker for news.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// How long a client waits for a direct link to a worker.
const LINK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a reservation lasts while the job is placed.
const LEASE: Duration = Duration::from_secs(120);

/// A job to run: its kind, parameters and input files (by declared name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The declared kind.
    pub kind: String,
    /// Parameter values.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Input name -> local file.
    #[serde(default)]
    pub inputs: BTreeMap<String, PathBuf>,
}

/// What a client keeps of a job it handed out, to follow it again later (`mesh-job attach`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The job's id.
    pub job: String,
    /// The owner's secret.
    pub key: String,
    /// The worker that runs it.
    pub worker: String,
    /// The job.
    pub spec: JobSpec,
    /// The first log line not yet read.
    pub next_line: u64,
}

impl Ticket {
    /// A fresh job id and key for `spec`.
    pub fn new(spec: JobSpec) -> Self {
        let hex = |n: usize| (0..n).map(|_| format!("{:02x}", rand::random::<u8>())).collect::<String>();
        Self { job: format!("job-{}", hex(6)), key: hex(24), worker: String::new(), spec, next_line: 0 }
    }

    /// Where the ticket of `job` is kept under `dir`.
    pub fn path(dir: &Path, job: &str) -> PathBuf {
        dir.join(format!("{job}.json"))
    }

    /// Writes the ticket under `dir` (only the owner may read it: it holds the key).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = Self::path(dir, &self.job);
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::io::Write::write_all(&mut file, &body).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads the ticket of `job` from `dir`.
    pub fn load(dir: &Path, job: &str) -> Result<Self, String> {
        let path = Self::path(dir, job);
        let body = std::fs::read(&path).map_err(|e| format!("no ticket for {job} ({}): {e}", path.display()))?;
        serde_json::from_slice(&body).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The worker as a peer id.
    pub fn worker(&self) -> Result<PeerId, String> {
        PeerId::new(self.worker.clone()).map_err(|e| e.to_string())
    }
}

/// Why a job could not be placed or followed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// A worker refused the job itself (a bad parameter, a missing input).
    #[error("refused: {0}")]
    Rejected(Rejection),
    /// No worker of the room runs the kind with a free slot (matching the filter).
    #[error("no free worker runs `{0}`")]
    NoWorker(String),
    /// The worker left, or forgot the job (it restarted): run it again elsewhere.
    #[error("lost the worker {0}: {1}")]
    Lost(String, String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Sends `ask` to `worker` and decodes the answer.
pub async fn ask(node: &MeshNode, worker: &PeerId, ask: &Ask, timeout: Duration) -> Result<Answer, DataError> {
    let body = serde_json::to_vec(ask).map_err(|e| DataError::Refused(e.to_string()))?;
    let answer = node.request(worker, PROTOCOL, body, timeout).await?;
    serde_json::from_slice(&answer).map_err(|e| DataError::Refused(format!("not a job answer: {e}")))
}

/// Workers matching `filter` that run `kind` with a free slot, best first (highest priority),
/// leaving out `exclude`.
pub async fn candidates(
    node: &MeshNode,
    filter: &RegistryFilter,
    kind: &str,
    exclude: &[PeerId],
) -> Result<Vec<PeerId>, JobError> {
    let page = node.query_registry(filter.clone(), ASK_TIMEOUT).await.map_err(|e| JobError::Other(e.to_string()))?;
    Ok(page
        .workers
        .into_iter()
        .filter(|w| w.record.status != mesh_core::WorkerStatus::Leaving && !exclude.contains(&w.peer))
        .filter(|w| {
            let slot = &w.record.metadata.get("jobs").map(|j| j["kinds"][kind].clone()).unwrap_or_default();
            slot["running"].as_u64().zip(slot["slots"].as_u64()).is_some_and(|(r, s)| r < s)
        })
        .map(|w| w.peer)
        .collect())
}

/// Serves the inputs of `spec` from `node` and describes them for a submission.
pub async fn offer_inputs(node: &MeshNode, spec: &JobSpec) -> Result<Vec<FileRef>, JobError> {
    let mut refs = Vec::new();
    for (name, path) in &spec.inputs {
        let blob = node.provide(path).await.map_err(|e| JobError::Other(format!("{}: {e}", path.display())))?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.clone());
        refs.push(FileRef { name: name.clone(), file, blob: blob.to_string(), size });
    }
    Ok(refs)
}

/// Links to `worker` when this node is a client (workers are linked to every worker already).
async fn link(node: &MeshNode, worker: &PeerId) -> Result<(), String> {
    if node.snapshot().health.peers.iter().any(|p| &p.peer == worker && p.state == mesh_core::LinkStatus::Up) {
        return Ok(());
    }
    node.connect(worker, LINK_TIMEOUT).await.map_err(|e| e.to_string())
}

/// Hands `ticket`'s job to the first of `workers` that takes it: link, reserve, submit, release.
/// Sets `ticket.worker`; a worker that is busy, reserved or unreachable is skipped.
pub async fn place(
    node: &MeshNode,
    workers: &[PeerId],
    ticket: &mut Ticket,
    inputs: &[FileRef],
) -> Result<PeerId, JobError> {
    let submit = Ask::Submit {
        job: ticket.job.clone(),
        key: ticket.key.clone(),
        kind: ticket.spec.kind.clone(),
        params: ticket.spec.params.clone(),
        inputs: inputs.to_vec(),
    };
    for worker in workers {
        if let Err(err) = link(node, worker).await {
            tracing::info!(%worker, %err, "worker not reachable; trying the next");
            continue;
        }
        let lease = match node.reserve(worker, LEASE).await {
            Ok(lease) => lease,
            Err(err) => {
                tracing::info!(%worker, %err, "worker not reservable; trying the next");
                continue;
            }
        };
        let answer = ask(node, worker, &submit, ASK_TIMEOUT).await;
        let _ = node.release(&lease).await;
        match answer {
            Ok(Answer::Accepted) => {
                ticket.worker = worker.to_string();
                return Ok(worker.clone());
            }
            Ok(Answer::Rejected(r)) if r.field == "worker" => tracing::info!(%worker, %r, "trying the next worker"),
            Ok(Answer::Rejected(r)) => return Err(JobError::Rejected(r)),
            Ok(other) => tracing::warn!(%worker, ?other, "odd answer to a submission"),
            Err(err) => tracing::info!(%worker, %err, "submission failed; trying the next"),
        }
    }
    Err(JobError::NoWorker(ticket.spec.kind.clone()))
}

/// What following a job reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A log line (in order, each once).
    Line(LogLine),
    /// The job's state changed.
    State(JobState),
    /// Every line of one answer was told: `ticket.next_line` is worth saving now.
    Caught,
}

/// Whether `worker` is still a member of the room.
async fn present(node: &MeshNode, worker: &PeerId) -> Result<bool, JobError> {
    let page = node
        .query_registry(RegistryFilter::default(), ASK_TIMEOUT)
        .await
        .map_err(|e| JobError::Other(e.to_string()))?;
    Ok(page.workers.iter().any(|w| &w.peer == worker && w.record.status != mesh_core::WorkerStatus::Leaving))
}

/// Follows `ticket`'s job from `ticket.next_line` until it ends, telling `on` each line and
/// change of state; returns the final state. A link that drops while the worker stays in the
/// room is linked again; a worker that left (or restarted and forgot the job) is [`JobError::Lost`].
pub async fn follow(
    node: &MeshNode,
    ticket: &mut Ticket,
    mut on: impl FnMut(&Ticket, Update),
) -> Result<JobState, JobError> {
    let worker = ticket.worker().map_err(JobError::Other)?;
    let mut last_state = None;
    let mut failures = 0u32;
    loop {
        let poll = Ask::Poll {
            job: ticket.job.clone(),
            key: ticket.key.clone(),
            from: ticket.next_line,
            wait_ms: POLL_WAIT.as_millis() as u64,
        };
        match ask(node, &worker, &poll, POLL_WAIT + ASK_TIMEOUT).await {
            Ok(Answer::Log { lines, next, state }) => {
                failures = 0;
                for line in lines {
                    ticket.next_line += 1;
                    on(ticket, Update::Line(line));
                }
                ticket.next_line = next;
                on(ticket, Update::Caught);
                if last_state.as_ref() != Some(&state) {
                    last_state = Some(state.clone());
                    on(ticket, Update::State(state.clone()));
                }
                if state.ended() {
                    return Ok(state);
                }
            }
            Ok(Answer::Rejected(r)) => return Err(JobError::Lost(worker.to_string(), r.to_string())),
            Ok(other) => return Err(JobError::Other(format!("odd answer to a poll: {other:?}"))),
            Err(DataError::Stopped) => return Err(JobError::Other("the node stopped".into())),
            Err(err) => {
                failures += 1;
                if !present(node, &worker).await? {
                    return Err(JobError::Lost(worker.to_string(), format!("it left the room ({err})")));
                }
                tracing::info!(%worker, %err, failures, "poll failed; the worker is still in the room, linking again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
                let _ = link(node, &worker).await;
            }
        }
    }
}

/// A safe local path for output `name` under `dir`: relative, no `..`, no root.
pub fn output_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.components().next().is_some();
    plain.then(|| dir.join(rel))
}

/// Fetches `outputs` from `worker` into `dir`, verified; `progress` is told (name, progress).
pub async fn download(
    node: &MeshNode,
    worker: &PeerId,
    outputs: &[FileRef],
    dir: &Path,
    mut progress: impl FnMut(&str, Progress),
) -> Result<(), JobError> {
    for out in outputs {
        let path = output_path(dir, &out.name)
            .ok_or_else(|| JobError::Other(format!("output name {:?} refused", out.name)))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| JobError::Other(format!("{}: {e}", parent.display())))?;
        }
        let blob: BlobId = out.blob.parse().map_err(JobError::Other)?;
        let (tx, mut rx) = watch::channel(Progress::default());
        let fetch = node.fetch(worker, &blob, &path, Some(&tx));
        tokio::pin!(fetch);
        let report = loop {
            tokio::select! {
                r = &mut fetch => break r,
                Ok(()) = rx.changed() => progress(&out.name, *rx.borrow_and_update()),
            }
        };
        let report = report.map_err(|e| JobError::Other(format!("output {}: {e}", out.name)))?;
        progress(&out.name, Progress { done: report.size, total: report.size, rate: 0.0, eta: None });
    }
    Ok(())
}
