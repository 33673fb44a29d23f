//! `mesh-job batch FILE`: every job of the file across the matching workers at once, each worker
//! within its concurrency (a worker refuses a job beyond it, and the job waits for a slot); a job
//! whose worker is lost goes to another. Each job's log and outputs go to `OUT/NAME/`; a table
//! line shows the progress on every change, and a summary ends the run.

use crate::show::{describe, state_words};
use mesh_core::{MeshNode, PeerId, RegistryFilter};
use mesh_job::client::{self, JobError, JobSpec, Ticket, Update};
use mesh_job::wire::JobState;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line of the batch file: a job, and optionally its name (the output directory's).
#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    spec: JobSpec,
}

/// Where each job of the batch is, for the table and the summary.
#[derive(Default)]
struct Board {
    rows: BTreeMap<String, Row>,
    last_line: String,
}

#[derive(Default, Clone)]
struct Row {
    worker: String,
    state: String,
    attempts: u32,
    done: bool,
    failed: bool,
    secs: f64,
}

impl Board {
    fn set(&mut self, name: &str, f: impl FnOnce(&mut Row)) {
        f(self.rows.entry(name.to_string()).or_default());
        let (mut queued, mut running, mut done, mut failed) = (0, 0, 0, 0);
        for r in self.rows.values() {
            match (r.done, r.failed, r.worker.is_empty()) {
                (true, true, _) => failed += 1,
                (true, false, _) => done += 1,
                (false, _, true) => queued += 1,
                _ => running += 1,
            }
        }
        let line = format!("batch: {done} done, {running} placed, {queued} waiting, {failed} failed");
        if line != self.last_line {
            let detail: Vec<String> = self
                .rows
                .iter()
                .filter(|(_, r)| !r.done && !r.worker.is_empty())
                .map(|(n, r)| format!("{n}@{} {}", r.worker, r.state))
                .collect();
            eprintln!("{line}  | {}", detail.join(", "));
            self.last_line = line;
        }
    }
}

/// Runs one job of the batch to its end, moving it when its worker is lost.
async fn one(
    node: &MeshNode,
    name: &str,
    spec: JobSpec,
    filter: &RegistryFilter,
    out: &Path,
    board: &Mutex<Board>,
) -> Result<(), String> {
    let set = |f: &dyn Fn(&mut Row)| board.lock().map(|mut b| b.set(name, f)).unwrap_or(());
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let inputs = client::offer_inputs(node, &spec).await.map_err(|e| e.to_string())?;
    let mut ticket = Ticket::new(spec);
    let mut lost: Vec<PeerId> = Vec::new();
    let mut wait = Duration::from_millis(200);
    let started = Instant::now();
    loop {
        let workers = client::candidates(node, filter, &ticket.spec.kind, &lost).await.map_err(|e| e.to_string())?;
        match client::place(node, &workers, &mut ticket, &inputs).await {
            Ok(worker) => {
                let w = worker.to_string();
                set(&|r| {
                    r.worker = w.clone();
                    r.attempts += 1;
                    r.state = "placed".into();
                });
            }
            Err(JobError::NoWorker(_)) => {
                // Every worker is full (or busy placing): wait for a slot, backing off.
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(err) => return Err(err.to_string()),
        }
        wait = Duration::from_millis(200);
        ticket.next_line = 0;
        let mut log = std::fs::File::create(dir.join("log.txt")).map_err(|e| e.to_string())?;
        let end = client::follow(node, &mut ticket, |_, update| match update {
            Update::Line(line) => {
                let _ = writeln!(log, "{}", line.text);
            }
            Update::State(state) => {
                let words = state_words(&state);
                set(&|r| r.state = words.clone());
            }
            Update::Caught => {}
        })
        .await;
        match end {
            Ok(JobState::Exited { code, signal, outputs }) => {
                let worker = ticket.worker()?;
                client::download(node, &worker, &outputs, &dir, |_, _| {}).await.map_err(|e| e.to_string())?;
                let (words, secs) = (describe(code, signal), started.elapsed().as_secs_f64());
                let failed = code != Some(0);
                set(&|r| {
                    r.done = true;
                    r.failed = failed;
                    r.state = format!("exited {words}");
                    r.secs = secs;
                });
                return Ok(());
            }
            Ok(JobState::Failed { reason }) => return Err(reason),
            Ok(other) => return Err(format!("ended in state {other:?}")),
            Err(JobError::Lost(worker, _)) => {
                lost.push(ticket.worker()?);
                set(&|r| {
                    r.worker.clear();
                    r.state = format!("lost {worker}, moving");
                });
                ticket = Ticket { worker: String::new(), ..ticket };
            }
            Err(err) => return Err(err.to_string()),
        }
    }
}

/// `mesh-job batch`.
pub(crate) async fn run(node: &MeshNode, file: &Path, filter: &RegistryFilter, out: &Path) -> Result<u8, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#')) {
        let entry: Entry = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", file.display(), n + 1))?;
        let name = entry.name.unwrap_or_else(|| format!("job{:03}", jobs.len() + 1));
        if !mesh_job::kinds::valid_name(&name) || jobs.iter().any(|(other, _)| other == &name) {
            return Err(format!("{}:{}: `{name}` is not a fresh job name", file.display(), n + 1));
        }
        jobs.push((name, entry.spec));
    }
    let board = Mutex::new(Board::default());
    let started = Instant::now();
    let results = futures::future::join_all(jobs.into_iter().map(|(name, spec)| {
        let board = &board;
        async move {
            let result = one(node, &name, spec, filter, out, board).await;
            if let Err(err) = &result {
                let _ = board.lock().map(|mut b| {
                    b.set(&name, |r| {
                        r.done = true;
                        r.failed = true;
                        r.state = err.clone();
                    })
                });
            }
            (name, result)
        }
    }))
    .await;
    let board = board.into_inner().map_err(|_| "board poisoned")?;
    println!("{:<12} {:<14} {:>8} {:>8}  result", "job", "worker", "attempts", "secs");
    for (name, row) in &board.rows {
        println!("{name:<12} {:<14} {:>8} {:>8.1}  {}", row.worker, row.attempts, row.secs, row.state);
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count() + board.rows.values().filter(|r| r.failed).count();
    let total = board.rows.len();
    println!(
        "{} of {total} jobs succeeded in {:.1} s",
        total - board.rows.values().filter(|r| r.failed).count(),
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 { 0 } else { 1 })
}
