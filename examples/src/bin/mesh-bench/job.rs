//! `mesh-bench job`: the job flow as a user runs it, `mesh-signal`, two `mesh-worker`s that
//! declare the shipped `mesh-train` kind and a `mesh-job run` process, on loopback or in the
//! network lab. Per trial: the time from starting `mesh-job run` to the job's first log line,
//! the upload's throughput (a fresh input each trial, so no worker holds it already), and the
//! whole run beside the same `mesh-train` command run locally in the same run.

use crate::lines::LineProc;
use crate::Samples;
use mesh_examples::labroom::{LabRoom, WanSpec, PORT};
use mesh_examples::procs::{full, sibling_binary, wait_all, worker_toml, WorkerProc};
use mesh_netlab::Lab;
use signaling_ws::loadgen::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(600);

/// Options of `mesh-bench job`.
#[derive(clap::Args, Debug)]
pub(crate) struct JobArgs {
    /// Trials.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// MiB of input per job.
    #[arg(long, default_value_t = 64)]
    mib: usize,
    /// Epochs of the job.
    #[arg(long, default_value_t = 5)]
    epochs: u32,
    /// Milliseconds per epoch.
    #[arg(long, default_value_t = 100)]
    epoch_ms: u64,
    /// Run in the network lab with this WAN (`rtt=80ms,loss=1%`; needs root): server on host 0,
    /// workers on hosts 1 and 2, the client on host 3.
    #[arg(long)]
    lab: Option<WanSpec>,
}

/// The `[jobs.train]` section for `train` (the mesh-train binary), and a job directory under
/// `dir` (removed after the run), so no worker holds an input from an earlier run already.
fn kind(train: &Path, dir: &Path) -> String {
    format!("{}[job_options]\ndir = \"{}\"\n", kind_only(train), dir.join("jobs").display())
}

/// The `[jobs.train]` section alone.
fn kind_only(train: &Path) -> String {
    format!(
        "[jobs.train]\ncommand = [\"{}\", \"--data\", \"{{input.data}}\", \"--epochs\", \"{{param.epochs}}\", \
         \"--epoch-ms\", \"{{param.epoch_ms}}\", \"--out\", \"{{output}}\"]\ninputs = [\"data\"]\n\
         [jobs.train.params.epochs]\ntype = \"int\"\n[jobs.train.params.epoch_ms]\ntype = \"int\"\n",
        train.display()
    )
}

/// Where the room runs.
enum Room {
    Local { _workers: Vec<WorkerProc>, _server: ServerProcess, url: String },
    Lab(Box<LabRoom>),
}

impl Room {
    fn start(wan: Option<WanSpec>, dir: &Path, train: &Path) -> Result<Self, String> {
        match wan {
            None => {
                let server = ServerProcess::spawn(&sibling_binary("mesh-signal", "signaling-ws")?)?;
                let config = dir.join("worker.toml");
                let text = format!("{}{}", worker_toml("bench", &server.url, "127.0.0.1:0", ""), kind(train, dir));
                std::fs::write(&config, text).map_err(|e| e.to_string())?;
                let worker = sibling_binary("mesh-worker", "mesh-examples")?;
                let workers = (0..2)
                    .map(|i| WorkerProc::spawn(&worker, &config, &format!("w{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                wait_all(&workers.iter().collect::<Vec<_>>(), WAIT, "full mesh", full(1))?;
                let url = server.url.clone();
                Ok(Room::Local { _workers: workers, _server: server, url })
            }
            Some(wan) => {
                let lab = Lab::new(4)?;
                wan.apply(&lab)?;
                let room = LabRoom::on(lab, vec![1, 2], 2, &kind(train, dir))?;
                wait_all(&room.all(), WAIT, "full mesh", full(1))?;
                Ok(Room::Lab(Box::new(room)))
            }
        }
    }

    /// The client's configuration and a command that runs `program` where the client lives.
    fn client(&self, program: &Path, dir: &Path) -> Result<(PathBuf, Command), String> {
        let (url, room, command) = match self {
            Room::Local { url, .. } => (url.clone(), "bench", Command::new(program)),
            Room::Lab(room) => (format!("ws://{}:{PORT}", room.lab.host(0).ip), "lab", room.lab.command(3, program)),
        };
        let udp = if matches!(self, Room::Local { .. }) { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let config = dir.join("client.toml");
        std::fs::write(&config, worker_toml(room, &url, udp, "")).map_err(|e| e.to_string())?;
        Ok((config, command))
    }
}

/// One `mesh-job run`: (ms to the first log line, upload MiB/s, seconds in all).
fn one(room: &Room, args: &JobArgs, dir: &Path, trial: usize) -> Result<(f64, f64, f64), String> {
    let data = dir.join(format!("data-{trial}"));
    mesh_examples::blob::write_pattern(&data, args.mib).map_err(|e| e.to_string())?;
    // A byte of its own: a fresh content id, so no worker holds this input already.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[trial as u8]))
        .map_err(|e| e.to_string())?;
    let (config, mut command) = room.client(&sibling_binary("mesh-job", "mesh-job")?, dir)?;
    command
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["run", "train", "--param", &format!("epochs={}", args.epochs)])
        .args(["--param", &format!("epoch_ms={}", args.epoch_ms), "--input"])
        .arg(format!("data={}", data.display()))
        .arg("--out")
        .arg(dir.join(format!("out-{trial}")))
        .env("MESH_PEER_ID", format!("bench-c{trial}"));
    let t0 = Instant::now();
    let run = LineProc::spawn(command, true)?;
    let (mut accepted, mut running, mut first) = (None, None, None);
    while let Some((at, is_err, line)) = run.next(WAIT) {
        match (is_err, &line) {
            (true, l) if l.contains("accepted by") => accepted = Some(at),
            (true, l) if l.ends_with("] running") => running = Some(at),
            (false, _) if first.is_none() => first = Some(at),
            _ => {}
        }
    }
    let mut run = run;
    let status = run.child.wait().map_err(|e| e.to_string())?;
    let total = t0.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("mesh-job run exited {status}"));
    }
    let (Some(accepted), Some(running), Some(first)) = (accepted, running, first) else {
        return Err("mesh-job printed no accepted / running / log line".into());
    };
    let upload = (args.mib as f64) / running.duration_since(accepted).as_secs_f64().max(1e-6);
    Ok((first.duration_since(t0).as_secs_f64() * 1000.0, upload, total))
}

/// Per trial in a fresh room: one `mesh-job run`; and the same command locally, in the same run.
pub(crate) fn run(args: JobArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("mesh-bench-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let train = sibling_binary("mesh-train", "mesh-job")?;
    let (mut first, mut upload, mut total, mut local) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let result = (|| {
        for trial in 0..args.trials {
            let room = Room::start(args.lab, &dir, &train)?;
            let (f, u, t) = one(&room, &args, &dir, trial)?;
            drop(room);
            first.push(f);
            upload.push(u);
            total.push(t);
            let t0 = Instant::now();
            let status = Command::new(&train)
                .arg("--data")
                .arg(dir.join(format!("data-{trial}")))
                .args(["--epochs", &args.epochs.to_string(), "--epoch-ms", &args.epoch_ms.to_string(), "--out"])
                .arg(dir.join("local"))
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("mesh-train locally: {status}"));
            }
            local.push(t0.elapsed().as_secs_f64());
        }
        Ok::<_, String>(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let at = crate::procs::lab_label(args.lab);
    let label = format!("mesh-job run, {} MiB input, {} epochs x {} ms{at}", args.mib, args.epochs, args.epoch_ms);
    println!(
        "{label}: start to the job's first log line (ms)  min/median/max {}  trials {}",
        first.summary(0),
        args.trials
    );
    println!("{label}: upload, verified (MiB/s)  min/median/max {}", upload.summary(1));
    println!("{label}: whole run (s)  min/median/max {}", total.summary(2));
    println!("the same mesh-train command run locally, same run (s)  min/median/max {}", local.summary(2));
    Ok(())
}
