//! `mesh-job run | attach | cancel`: one job, followed in this terminal.

use crate::show::{exit_code, Bars};
use mesh_core::{MeshNode, PeerId, RegistryFilter};
use mesh_job::client::{self, JobError, JobSpec, Ticket, Update};
use mesh_job::wire::{Answer, Ask, Channel, JobState};
use std::path::Path;

/// Exit status when the job was refused.
const REFUSED: u8 = 2;
/// Exit status when no worker could take it.
const NO_WORKER: u8 = 3;

/// Prints one update: log lines to stdout / stderr as the job wrote them, the rest to stderr.
fn show(bars: &mut Bars, ticket: &Ticket, update: Update) {
    match update {
        Update::Line(line) => match line.ch {
            Channel::Out => bars.line(&line.text, false),
            Channel::Err => bars.line(&line.text, true),
            Channel::Worker => bars.line(&format!("[{} on {}] {}", ticket.job, ticket.worker, line.text), true),
        },
        Update::State(JobState::Uploading { done, total }) => bars.bar("upload", done, total),
        Update::State(JobState::Running) => bars.line(&format!("[{} on {}] running", ticket.job, ticket.worker), true),
        Update::State(_) | Update::Caught => {}
    }
}

/// Follows `ticket` to its end, saving the log position as it goes; Ctrl-C cancels it (a second
/// Ctrl-C kills it at once).
async fn follow(node: &MeshNode, ticket: &mut Ticket, state: &Path) -> Result<JobState, JobError> {
    let mut bars = Bars::new();
    let (cancels, mut asked) = tokio::sync::mpsc::channel::<bool>(2);
    let interrupts = async {
        let mut count = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            count += 1;
            let _ = cancels.send(count > 1).await;
        }
    };
    let (job, key, worker) = (ticket.job.clone(), ticket.key.clone(), ticket.worker().map_err(JobError::Other)?);
    let cancel = async {
        while let Some(now) = asked.recv().await {
            eprintln!(
                "\n[{job}] {}",
                if now { "killing (SIGKILL)" } else { "cancelling: SIGINT sent (Ctrl-C again to kill)" }
            );
            let ask = Ask::Cancel { job: job.clone(), key: key.clone(), now };
            if let Err(err) = client::ask(node, &worker, &ask, client::ASK_TIMEOUT).await {
                eprintln!("[{job}] cancel not delivered: {err}");
            }
        }
    };
    // Saved once the lines of each answer are out: a client killed at any point re-reads at
    // most the lines of one answer.
    let watch = client::follow(node, ticket, |t, update| {
        if update == Update::Caught {
            let _ = t.save(state);
        }
        show(&mut bars, t, update);
    });
    let result = tokio::select! {
        r = watch => r,
        _ = interrupts => Err(JobError::Other("signals ended".into())),
        _ = cancel => Err(JobError::Other("cancel ended".into())),
    };
    let _ = ticket.save(state);
    result
}

/// Downloads the outputs of an ended job and turns its state into an exit status.
async fn finish(node: &MeshNode, ticket: &Ticket, end: JobState, out: &Path) -> Result<u8, String> {
    match end {
        JobState::Exited { code, signal, outputs } => {
            let worker = ticket.worker()?;
            let mut bars = Bars::new();
            client::download(node, &worker, &outputs, out, |name, p| {
                bars.bar(&format!("download {name}"), p.done, p.total)
            })
            .await
            .map_err(|e| e.to_string())?;
            let bytes: u64 = outputs.iter().map(|o| o.size).sum();
            eprintln!(
                "[{} on {}] exited {}; {} output file(s), {bytes} bytes, verified, in {}",
                ticket.job,
                ticket.worker,
                crate::show::describe(code, signal),
                outputs.len(),
                out.display()
            );
            Ok(exit_code(code, signal))
        }
        JobState::Failed { reason } => Err(format!("{} on {}: {reason}", ticket.job, ticket.worker)),
        other => Err(format!("{} ended in state {other:?}", ticket.job)),
    }
}

/// `mesh-job run`.
pub(crate) async fn run(
    node: &MeshNode,
    spec: JobSpec,
    filter: &RegistryFilter,
    out: &Path,
    state: &Path,
    retry: bool,
) -> Result<u8, String> {
    let inputs = client::offer_inputs(node, &spec).await.map_err(|e| e.to_string())?;
    let mut ticket = Ticket::new(spec);
    let mut lost: Vec<PeerId> = Vec::new();
    loop {
        let workers = client::candidates(node, filter, &ticket.spec.kind, &lost).await.map_err(|e| e.to_string())?;
        match client::place(node, &workers, &mut ticket, &inputs).await {
            Ok(worker) => eprintln!("[{}] accepted by {worker}", ticket.job),
            Err(JobError::Rejected(r)) => {
                eprintln!("mesh-job: the job was refused: {r}");
                return Ok(REFUSED);
            }
            Err(JobError::NoWorker(kind)) => {
                eprintln!("mesh-job: no free worker runs `{kind}` (checked {} worker(s))", workers.len());
                return Ok(NO_WORKER);
            }
            Err(err) => return Err(err.to_string()),
        }
        ticket.next_line = 0;
        ticket.save(state)?;
        match follow(node, &mut ticket, state).await {
            Ok(end) => return finish(node, &ticket, end, out).await,
            Err(JobError::Lost(worker, why)) if retry => {
                eprintln!("[{}] lost worker {worker} ({why}); running the job again elsewhere", ticket.job);
                lost.push(ticket.worker()?);
            }
            Err(err) => return Err(err.to_string()),
        }
    }
}

/// `mesh-job attach`.
pub(crate) async fn attach(node: &MeshNode, job: &str, out: &Path, state: &Path) -> Result<u8, String> {
    let mut ticket = Ticket::load(state, job)?;
    eprintln!("[{job}] attaching to {} from log line {}", ticket.worker, ticket.next_line);
    let end = follow(node, &mut ticket, state).await.map_err(|e| e.to_string())?;
    finish(node, &ticket, end, out).await
}

/// `mesh-job cancel`.
pub(crate) async fn cancel(node: &MeshNode, job: &str, now: bool, state: &Path) -> Result<u8, String> {
    let ticket = Ticket::load(state, job)?;
    let worker = ticket.worker()?;
    node.connect(&worker, std::time::Duration::from_secs(20)).await.map_err(|e| e.to_string())?;
    let ask = Ask::Cancel { job: ticket.job.clone(), key: ticket.key.clone(), now };
    match client::ask(node, &worker, &ask, client::ASK_TIMEOUT).await.map_err(|e| e.to_string())? {
        Answer::Cancelling => {
            eprintln!("[{job}] {} sent on {}", if now { "SIGKILL" } else { "SIGINT" }, ticket.worker);
            Ok(0)
        }
        Answer::Rejected(r) => Err(r.to_string()),
        other => Err(format!("odd answer: {other:?}")),
    }
}
