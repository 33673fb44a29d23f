//! The worker's side: serves `mesh/job/1` asks, runs accepted jobs (`run.rs`), keeps each job's
//! log and outputs for a while after it ends, and shows its load in the worker's record
//! (`busy` while every kind is at its concurrency, metadata `jobs` with the kinds and running
//! jobs).

mod run;
mod table;

use crate::kinds::{valid_name, Kinds, Rejection};
use crate::wire::{Answer, Ask, FileRef, MAX_LINES, MAX_WAIT_MS, PROTOCOL};
use mesh_core::{Incoming, MeshNode, PeerId, Request};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use table::{Job, Table};
use tokio::task::JoinSet;

/// How a worker runs jobs.
#[derive(Debug, Clone)]
pub struct WorkerJobs {
    /// The kinds it runs.
    pub kinds: Kinds,
    /// Where job directories (`jobs/ID`) and fetched inputs (`cache/BLOB`) live.
    pub root: PathBuf,
    /// How long an ended job's log and outputs are kept for its owner.
    pub keep: Duration,
}

impl WorkerJobs {
    /// Takes the job sections out of a worker's configuration (the node's plugins would refuse
    /// them): `[jobs.NAME]`, and `[job_options]` with `dir` (default: a directory under the
    /// system's temporary one) and `keep_secs` (default an hour).
    pub fn take_from(config: &mut mesh_core::MeshConfig) -> Result<Self, String> {
        let kinds = Kinds::from_section(&config.plugins.remove("jobs").unwrap_or_default())?;
        let options = config.plugins.remove("job_options").unwrap_or_default();
        if let Some(bad) =
            options.as_object().and_then(|o| o.keys().find(|k| !["dir", "keep_secs"].contains(&k.as_str())))
        {
            return Err(format!("[job_options]: unknown key `{bad}` (dir, keep_secs)"));
        }
        let root = options
            .get("dir")
            .and_then(|d| d.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join(format!("mesh-jobs-{}", config.peer_id)));
        let keep = Duration::from_secs(options.get("keep_secs").and_then(|k| k.as_u64()).unwrap_or(3600));
        Ok(Self { kinds, root, keep })
    }
}

/// A running job server; dropping it kills the jobs it runs.
pub struct JobServer {
    tasks: JoinSet<()>,
}

impl JobServer {
    /// Stops serving and kills every job.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Serves jobs on `node` (a worker) with `jobs`.
pub async fn serve(node: Arc<MeshNode>, jobs: WorkerJobs) -> Result<JobServer, String> {
    std::fs::create_dir_all(jobs.root.join("cache")).map_err(|e| format!("{}: {e}", jobs.root.display()))?;
    let inbox = node.listen(PROTOCOL).map_err(|e| e.to_string())?;
    let table = Table::new(jobs.kinds.clone());
    table.publish(&node).await;
    let mut tasks = JoinSet::new();
    tasks.spawn(accept(node, Arc::new(jobs), table, inbox));
    Ok(JobServer { tasks })
}

/// Asks answered at once, beyond which a further ask is refused (polls wait up to 30 s each).
const MAX_ASKS: usize = 512;

/// Takes asks until the node stops; every ask and every job is a task owned here.
async fn accept(node: Arc<MeshNode>, jobs: Arc<WorkerJobs>, table: Table, mut inbox: mesh_core::Inbox) {
    let (mut tasks, mut runs) = (JoinSet::new(), JoinSet::new());
    let (accepted, mut to_run) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        tokio::select! {
            incoming = inbox.recv() => match incoming {
                Some(Incoming::Request(req)) if tasks.len() >= MAX_ASKS => {
                    tracing::warn!(from = %req.from, "refused a job ask: too many at once");
                    req.fail("busy: too many job asks at once").await;
                }
                Some(Incoming::Request(req)) => {
                    let (node, jobs, table, accepted) = (node.clone(), jobs.clone(), table.clone(), accepted.clone());
                    tasks.spawn(async move { answer(&node, &jobs, &table, req, &accepted).await });
                }
                Some(_) => {} // a message or a stream: nothing this protocol sends
                None => return,
            },
            Some(id) = to_run.recv() => {
                runs.spawn(run::run(node.clone(), jobs.clone(), table.clone(), id));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
        }
    }
}

/// Answers one ask; the id of a job it accepts goes to `accepted`, to be run.
async fn answer(
    node: &MeshNode,
    jobs: &WorkerJobs,
    table: &Table,
    req: Request,
    accepted: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let ask: Ask = match serde_json::from_slice(&req.body) {
        Ok(ask) => ask,
        Err(err) => {
            tracing::warn!(from = %req.from, %err, "refused a job ask that does not parse");
            return req.fail(&format!("not a job ask: {err}")).await;
        }
    };
    let from = req.from.clone();
    let answer = match ask {
        Ask::Submit { job, key, kind, params, inputs } => {
            match submit(node, jobs, table, &from, job, &key, &kind, params, inputs) {
                Ok(Some(id)) => {
                    let _ = accepted.send(id);
                    table.publish(node).await;
                    Answer::Accepted
                }
                Ok(None) => Answer::Accepted,
                Err(rejection) => {
                    tracing::info!(from = %from, %rejection, "job refused");
                    Answer::Rejected(rejection)
                }
            }
        }
        Ask::Poll { job, key, from: line, wait_ms } => match table.owned(&job, &key) {
            Err(r) => Answer::Rejected(r),
            Ok(mut version) => {
                let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
                if !table.has_news(&job, line) {
                    let _ = tokio::time::timeout(wait, version.changed()).await;
                }
                let (lines, next, state) = table.read(&job, line, MAX_LINES);
                Answer::Log { lines, next, state }
            }
        },
        Ask::Cancel { job, key, now } => match table.owned(&job, &key).and_then(|_| table.cancel(&job, now)) {
            Ok(()) => Answer::Cancelling,
            Err(r) => Answer::Rejected(r),
        },
        Ask::List => Answer::Listed { jobs: table.list() },
    };
    match serde_json::to_vec(&answer) {
        Ok(body) => req.respond(body).await,
        Err(err) => req.fail(&format!("answer not encodable: {err}")).await,
    }
}

/// Checks a submission and enters it in the table: `Some(job)` to run, `None` when the same job
/// with the same key is there already.
#[allow(clippy::too_many_arguments)]
fn submit(
    node: &MeshNode,
    jobs: &WorkerJobs,
    table: &Table,
    from: &PeerId,
    job: String,
    key: &str,
    kind: &str,
    params: std::collections::BTreeMap<String, String>,
    inputs: Vec<FileRef>,
) -> Result<Option<String>, Rejection> {
    if !valid_name(&job) {
        return Err(Rejection::new("job", "an id is 1-64 of A-Z a-z 0-9 _ -"));
    }
    if key.len() < 16 || key.len() > 256 {
        return Err(Rejection::new("key", "a key is 16 to 256 characters"));
    }
    if table.owned(&job, key).is_ok() {
        return Ok(None);
    }
    if table.exists(&job) {
        return Err(Rejection::new("job", "another owner's job has this id"));
    }
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
        return Err(Rejection::new(format!("input.{dup}"), "given twice"));
    }
    let (spec, params) = jobs.kinds.check(kind, &params, &names)?;
    for input in &inputs {
        let field = format!("input.{}", input.name);
        input.blob.parse::<mesh_core::transfer::BlobId>().map_err(|e| Rejection::new(&field, e))?;
        let plain = !input.file.is_empty()
            && input.file.len() <= 255
            && !input.file.contains(['/', '\\', '\0'])
            && input.file != "."
            && input.file != "..";
        if !plain {
            return Err(Rejection::new(&field, format!("`{}` is not a plain file name", input.file)));
        }
    }
    match node.lease_holder() {
        Some(holder) if &holder != from => return Err(Rejection::new("worker", "reserved by another peer")),
        _ => {}
    }
    let dir = jobs.root.join("jobs").join(&job);
    let slots = spec.concurrency;
    match table.insert_within(&job, Job::new(kind, spec.clone(), params, inputs, from.clone(), key, dir), slots) {
        Ok(()) => Ok(Some(job)),
        Err(running) => Err(Rejection::new("worker", format!("busy: {running} of {slots} `{kind}` jobs running"))),
    }
}
