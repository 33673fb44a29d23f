//! One job's run on the worker: fetch its inputs from the owner (verified; kept in a cache by
//! content, so content the worker holds already is not sent again), start the declared command
//! in a fresh job directory, log its output lines, stop it on cancel or at its time limit
//! (SIGINT, then SIGTERM, then SIGKILL, a grace period apart), then serve what it left in its
//! output directory. The ended job stays for `keep`, then its directory goes.

use super::table::Table;
use super::WorkerJobs;
use crate::wire::{Channel, FileRef, JobState};
use mesh_core::transfer::{BlobId, Progress};
use mesh_core::MeshNode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

/// Runs job `id` to its end, keeps it for `keep`, then forgets it.
pub(super) async fn run(node: Arc<MeshNode>, jobs: Arc<WorkerJobs>, table: Table, id: String) {
    let state = match prepare(&node, &jobs, &table, &id).await {
        Err(reason) => JobState::Failed { reason },
        Ok(inputs) => match execute(&node, &table, &id, inputs).await {
            Err(reason) => JobState::Failed { reason },
            Ok(state) => state,
        },
    };
    tracing::info!(job = %id, ?state, "job ended");
    table.set_state(&id, state);
    table.publish(&node).await;
    tokio::time::sleep(jobs.keep).await;
    if let Some(JobState::Exited { outputs, .. }) = table.remove(&id) {
        for out in outputs {
            if let Ok(blob) = out.blob.parse::<BlobId>() {
                node.unprovide(&blob);
            }
        }
    }
    let _ = std::fs::remove_dir_all(jobs.root.join("jobs").join(&id));
}

/// Fetches the inputs into the cache and links them into the job directory: name -> path.
async fn prepare(
    node: &MeshNode,
    jobs: &WorkerJobs,
    table: &Table,
    id: &str,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let (inputs, owner, dir) =
        table.update(id, |j| (j.inputs.clone(), j.owner.clone(), j.dir.clone())).ok_or("the job is gone")?;
    let total: u64 = inputs.iter().map(|i| i.size).sum();
    // A fresh directory: what an earlier run of this id left (this worker restarted, or shares
    // its job directory) must not become this run's input or output. A hard link left in place
    // would even be truncated by the copy below.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).map_err(|e| format!("job directory: {e}"))?;
    let mut paths = BTreeMap::new();
    let mut before = 0u64;
    for input in inputs {
        let blob: BlobId = input.blob.parse()?;
        let cached = jobs.root.join("cache").join(&input.blob);
        let (progress, mut seen) = watch::channel(Progress::default());
        let fetch = node.fetch(&owner, &blob, &cached, Some(&progress));
        let show = async {
            while seen.changed().await.is_ok() {
                let done = before + seen.borrow_and_update().done;
                table.set_state(id, JobState::Uploading { done, total });
            }
        };
        let report = tokio::select! {
            r = fetch => r.map_err(|e| format!("input {}: {e}", input.name))?,
            _ = show => return Err("progress ended".into()),
        };
        before += report.size;
        let note = if report.already_held { "held already, not sent" } else { "fetched and verified" };
        table.log(id, Channel::Worker, format!("input {} ({} bytes): {note}", input.name, report.size));
        let place = dir.join("in").join(&input.name);
        std::fs::create_dir_all(&place).map_err(|e| format!("job directory: {e}"))?;
        let path = place.join(&input.file);
        if std::fs::hard_link(&cached, &path).is_err() {
            std::fs::copy(&cached, &path).map_err(|e| format!("input {}: {e}", input.name))?;
        }
        paths.insert(input.name, path);
    }
    table.set_state(id, JobState::Uploading { done: total, total });
    Ok(paths)
}

/// Sends `signal` to the job's process group.
fn signal_group(pid: Option<u32>, signal: i32) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) on a process group this worker created; no memory is involved.
        unsafe { libc::kill(-(pid as i32), signal) };
    }
}

/// Kills the job's process group when the run ends early (the server shuts down).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
    }
}

/// Starts the command and follows it to its exit; then serves its outputs.
async fn execute(
    node: &MeshNode,
    table: &Table,
    id: &str,
    inputs: BTreeMap<String, PathBuf>,
) -> Result<JobState, String> {
    let (spec, params, dir, cancelled) =
        table.update(id, |j| (j.spec.clone(), j.params.clone(), j.dir.clone(), j.cancelled)).ok_or("gone")?;
    if cancelled {
        return Err("cancelled before it started".into());
    }
    let out = dir.join("out");
    let argv = spec.argv(&params, &inputs, &out, id);
    // A relative program path with a directory in it means the worker's own directory, not the
    // job's (the child starts in the job's).
    let program = match Path::new(&argv[0]) {
        p if p.is_relative() && p.components().count() > 1 => {
            std::env::current_dir().map(|d| d.join(p)).unwrap_or(p.into())
        }
        p => p.to_path_buf(),
    };
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&argv[1..])
        .current_dir(&dir)
        .env_clear()
        .envs(["PATH", "HOME"].iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))))
        .envs(&spec.env)
        .env("MESH_JOB_ID", id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl in the child before exec, async-signal-safe: the job dies with the worker.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let guard = GroupGuard(child.id());
    let (stop_tx, mut stop) = mpsc::channel(4);
    table.update(id, |j| j.stop = Some(stop_tx));
    table.set_state(id, JobState::Running);
    table.log(id, Channel::Worker, format!("started: {}", argv.join(" ")));
    let lines = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, ch: Channel| {
        let table = table.clone();
        async move {
            let Some(pipe) = pipe else { return };
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                table.log(id, ch, line);
            }
        }
    };
    let stdout = lines(child.stdout.take().map(|p| Box::new(p) as _), Channel::Out);
    let stderr = lines(child.stderr.take().map(|p| Box::new(p) as _), Channel::Err);
    let limit = spec.time_limit();
    let grace = Duration::from_secs(spec.grace_secs);
    let follow = async {
        let mut steps: Vec<(i32, &str)> = Vec::new();
        let mut next_step = None::<tokio::time::Instant>;
        let started = tokio::time::Instant::now();
        loop {
            let limit_at = limit.map(|l| started + l).filter(|_| steps.is_empty());
            tokio::select! {
                status = child.wait() => return status.map_err(|e| e.to_string()),
                now = stop.recv() => {
                    if now == Some(true) {
                        table.log(id, Channel::Worker, "cancel at once: SIGKILL".into());
                        signal_group(guard.0, libc::SIGKILL);
                    } else if steps.is_empty() {
                        steps = vec![(libc::SIGKILL, "SIGKILL"), (libc::SIGTERM, "SIGTERM")];
                        table.log(id, Channel::Worker, "cancel: SIGINT".into());
                        signal_group(guard.0, libc::SIGINT);
                        next_step = Some(tokio::time::Instant::now() + grace);
                    }
                }
                _ = sleep_until(limit_at) => {
                    steps = vec![(libc::SIGKILL, "SIGKILL"), (libc::SIGTERM, "SIGTERM")];
                    table.log(id, Channel::Worker, format!("time limit of {}s reached: SIGINT", limit.unwrap_or_default().as_secs()));
                    signal_group(guard.0, libc::SIGINT);
                    next_step = Some(tokio::time::Instant::now() + grace);
                }
                _ = sleep_until(next_step) => match steps.pop() {
                    Some((sig, name)) => {
                        table.log(id, Channel::Worker, format!("still running after {}s: {name}", grace.as_secs()));
                        signal_group(guard.0, sig);
                        next_step = Some(tokio::time::Instant::now() + grace);
                    }
                    None => next_step = None,
                },
            }
        }
    };
    let (status, (), ()) = tokio::join!(follow, stdout, stderr);
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = (status.code(), status.signal());
    table.log(id, Channel::Worker, format!("exited: {status}"));
    let outputs = serve_outputs(node, &out, &out).await?;
    Ok(JobState::Exited { code, signal, outputs })
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves every regular file under `dir` (symbolic links are not followed); names relative to `base`.
async fn serve_outputs(node: &MeshNode, base: &Path, dir: &Path) -> Result<Vec<FileRef>, String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("outputs: {e}"))?;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let name = path.strip_prefix(base).map_err(|e| e.to_string())?.to_string_lossy().into_owned();
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let blob = node.provide(&path).await.map_err(|e| format!("output {name}: {e}"))?;
                let file = entry.file_name().to_string_lossy().into_owned();
                files.push(FileRef { name, file, blob: blob.to_string(), size });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
