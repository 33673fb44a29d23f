//! The job flow as a user runs it: one `mesh-signal`, three `mesh-worker`s declaring the shipped
//! `mesh-train` kind, and `mesh-job` commands, all separate processes on loopback. A worker or
//! a client that dies is SIGKILLed.

use mesh_examples::procs::{full, sibling_binary, wait_all, worker_toml, WorkerProc};
use signaling_ws::loadgen::ServerProcess;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    Stdout,
    Stderr,
}

/// A server, three workers, and the files of one test.
struct Room {
    workers: Vec<WorkerProc>,
    _server: ServerProcess,
    dir: PathBuf,
    client_config: PathBuf,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.workers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The worker configuration: the shipped trainer as `train`, and as `stubborn` (it notes SIGINT
/// and SIGTERM and keeps going), each at most one at a time, a second of grace.
fn kinds(train: &Path) -> String {
    let train = train.display();
    let params = "[jobs.KIND.params.epochs]\ntype = \"int\"\ndefault = \"3\"\nmin = 1\nmax = 1000\n\
                  [jobs.KIND.params.epoch_ms]\ntype = \"int\"\ndefault = \"50\"\nmin = 0\nmax = 10000\n";
    let kind = |name: &str, extra: &str| {
        format!(
            "[jobs.{name}]\ncommand = [\"{train}\", \"--data\", \"{{input.data}}\", \"--epochs\", \"{{param.epochs}}\", \
             \"--epoch-ms\", \"{{param.epoch_ms}}\", \"--out\", \"{{output}}\"{extra}]\ninputs = [\"data\"]\ngrace_secs = 1\n{}",
            params.replace("KIND", name)
        )
    };
    format!("{}{}", kind("train", ""), kind("stubborn", ", \"--stubborn\""))
}

impl Room {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mesh-jobs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let server = ServerProcess::spawn(&sibling_binary("mesh-signal", "signaling-ws").expect("mesh-signal"))
            .expect("mesh-signal starts");
        let train = sibling_binary("mesh-train", "mesh-job").expect("mesh-train");
        let base = worker_toml("jobs", &server.url, "127.0.0.1:0", "");
        let client_config = dir.join("client.toml");
        std::fs::write(&client_config, &base).expect("client config");
        let mut workers = Vec::new();
        for i in 0..3 {
            let config = dir.join(format!("w{i}.toml"));
            let jobs_dir = dir.join(format!("w{i}-jobs"));
            let text = format!("{base}{}[job_options]\ndir = \"{}\"\n", kinds(&train), jobs_dir.display());
            std::fs::write(&config, text).expect("worker config");
            let bin = Path::new(env!("CARGO_BIN_EXE_mesh-worker"));
            workers.push(WorkerProc::spawn(bin, &config, &format!("w{i}")).expect("mesh-worker starts"));
        }
        wait_all(&workers.iter().collect::<Vec<_>>(), WAIT, "full mesh of 3", full(2)).expect("mesh forms");
        Self { workers, _server: server, dir, client_config }
    }

    /// A data file of `n` bytes in the test directory.
    fn data(&self, n: usize) -> PathBuf {
        let path = self.dir.join("data.bin");
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, bytes).expect("data file");
        path
    }

    /// Starts `mesh-job ARGS` as client `name`.
    fn job(&self, name: &str, args: &[&str]) -> JobProc {
        let bin = sibling_binary("mesh-job", "mesh-job").expect("mesh-job");
        JobProc::start(Command::new(bin), &self.client_config, &self.dir.join("state"), name, args)
    }

    /// The worker named `name`.
    fn worker(&self, name: &str) -> &WorkerProc {
        &self.workers[name.trim_start_matches('w').parse::<usize>().expect("wN")]
    }
}

/// A running `mesh-job`, killed on drop; every line it printed so far in `seen`.
struct JobProc {
    child: Child,
    lines: mpsc::Receiver<(Out, String)>,
    seen: Vec<(Out, String)>,
}

impl Drop for JobProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JobProc {
    /// Runs `command` (mesh-job, perhaps inside a lab host) with `config` and `state` as client
    /// `name`.
    fn start(mut command: Command, config: &Path, state: &Path, name: &str, args: &[&str]) -> Self {
        let mut child = command
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .env("MESH_PEER_ID", name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mesh-job starts");
        let (tx, lines) = mpsc::channel();
        for (pipe, which) in [
            (child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>), Out::Stdout),
            (child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>), Out::Stderr),
        ] {
            let (tx, pipe) = (tx.clone(), pipe.expect("pipe"));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((which, line)).is_err() {
                        break;
                    }
                }
            });
        }
        JobProc { child, lines, seen: Vec::new() }
    }

    /// Waits for a line that `pred` accepts; returns it.
    fn wait_line(&mut self, what: &str, pred: impl Fn(Out, &str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((which, line)) => {
                    self.seen.push((which, line.clone()));
                    if pred(which, &line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what}; seen:\n{}", self.transcript()),
            }
        }
    }

    /// Waits for the process to exit; returns its status (every line read by then).
    fn finish(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => break status,
                None if Instant::now() > deadline => panic!("mesh-job did not end; seen:\n{}", self.transcript()),
                None => match self.lines.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) => self.seen.push(line),
                    Err(_) => continue,
                },
            }
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        status
    }

    fn transcript(&self) -> String {
        self.seen.iter().map(|(w, l)| format!("{w:?}: {l}\n")).collect()
    }

    fn stdout(&self) -> Vec<&str> {
        self.seen.iter().filter(|(w, _)| *w == Out::Stdout).map(|(_, l)| l.as_str()).collect()
    }

    /// The job id and worker from the `[job-…] accepted by wN` line.
    fn accepted(&mut self) -> (String, String) {
        let line = self.wait_line("accepted by", |w, l| w == Out::Stderr && l.contains("accepted by"));
        let job = line.trim_start_matches('[').split(']').next().expect("job id").to_string();
        let worker = line.rsplit(' ').next().expect("worker").to_string();
        (job, worker)
    }
}

/// The digest mesh-train writes for `bytes` (FNV-1a).
fn digest(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("{h:016x}")
}

fn assert_model(out: &Path, data: &Path, epochs: u32) {
    let model = std::fs::read_to_string(out.join("model.txt")).expect("model.txt downloaded");
    let bytes = std::fs::read(data).expect("data");
    assert!(model.contains(&format!("data_digest {}", digest(&bytes))), "the worker trained on our data: {model}");
    assert!(model.contains(&format!("epochs {epochs}\n")), "{model}");
}

#[test]
fn a_job_runs_with_its_input_streams_its_log_and_brings_back_its_output() {
    let room = Room::new("run");
    let data = room.data(3 << 20);
    let out = room.dir.join("out");
    let mut run = room.job(
        "c1",
        &[
            "run",
            "train",
            "--input",
            &format!("data={}", data.display()),
            "--param",
            "epochs=4",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let status = run.finish();
    assert!(status.success(), "exit {status}; seen:\n{}", run.transcript());
    let stdout = run.stdout();
    let epochs: Vec<&&str> = stdout.iter().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 4, "each epoch line once, in order: {stdout:?}");
    assert!(epochs[3].starts_with("epoch 4/4"), "{stdout:?}");
    assert_model(&out, &data, 4);

    // The same input again: the worker that has it does not fetch it again.
    let mut again = room
        .job("c2", &["run", "train", "--input", &format!("data={}", data.display()), "--out", out.to_str().unwrap()]);
    assert!(again.finish().success(), "{}", again.transcript());
    let held = again.seen.iter().any(|(_, l)| l.contains("held already, not sent"));
    let fetched = again.seen.iter().any(|(_, l)| l.contains("fetched and verified"));
    assert!(held || fetched, "the worker says how it got the input: {}", again.transcript());
}

#[test]
fn a_bad_parameter_or_an_unknown_kind_is_refused_with_the_field_and_why() {
    let room = Room::new("refuse");
    let data = room.data(1000);
    let input = format!("data={}", data.display());
    let mut bad = room.job("c1", &["run", "train", "--input", &input, "--param", "epochs=many"]);
    let status = bad.finish();
    assert_eq!(status.code(), Some(2), "{}", bad.transcript());
    assert!(
        bad.seen.iter().any(|(_, l)| l.contains("param.epochs") && l.contains("not a whole number")),
        "{}",
        bad.transcript()
    );

    let mut shell = room.job("c2", &["run", "train", "--input", &input, "--param", "cmd=rm -rf /"]);
    assert_eq!(shell.finish().code(), Some(2), "{}", shell.transcript());
    assert!(shell.seen.iter().any(|(_, l)| l.contains("param.cmd")), "{}", shell.transcript());

    let mut unknown = room.job("c3", &["run", "mine-bitcoin", "--input", &input]);
    assert_eq!(unknown.finish().code(), Some(3), "{}", unknown.transcript());
    assert!(
        unknown.seen.iter().any(|(_, l)| l.contains("no free worker runs `mine-bitcoin`")),
        "{}",
        unknown.transcript()
    );
}

#[test]
fn cancel_sends_sigint_then_sigterm_then_sigkill() {
    let room = Room::new("cancel");
    let data = room.data(1000);
    let input = format!("data={}", data.display());
    let mut run =
        room.job("c1", &["run", "stubborn", "--input", &input, "--param", "epochs=1000", "--param", "epoch_ms=100"]);
    let (job, _) = run.accepted();
    run.wait_line("a first epoch", |w, l| w == Out::Stdout && l.starts_with("epoch 1/"));
    let mut cancel = room.job("c2", &["cancel", &job]);
    assert!(cancel.finish().success(), "{}", cancel.transcript());
    let status = run.finish();
    assert_eq!(status.code(), Some(128 + 9), "the job ended on SIGKILL: {}", run.transcript());
    // In order within each output (stdout and stderr are separate pipes, so only lines a grace
    // period apart can be compared across them).
    let in_order = |lines: Vec<&str>, order: &[&str]| {
        let mut at = 0;
        for line in lines {
            if at < order.len() && line.contains(order[at]) {
                at += 1;
            }
        }
        at == order.len()
    };
    let worker = ["cancel: SIGINT", "after 1s: SIGTERM", "after 1s: SIGKILL", "exited: signal: 9"];
    let stderr: Vec<&str> = run.seen.iter().filter(|(w, _)| *w == Out::Stderr).map(|(_, l)| l.as_str()).collect();
    assert!(in_order(stderr, &worker), "the worker's signals in order {worker:?}; seen:\n{}", run.transcript());
    let job = ["SIGINT: checkpoint saved", "SIGTERM received"];
    assert!(in_order(run.stdout(), &job), "the job saw {job:?} in order; seen:\n{}", run.transcript());
    let at = |text: &str| run.seen.iter().position(|(_, l)| l.contains(text)).unwrap_or(usize::MAX);
    assert!(at("SIGINT: checkpoint saved") < at("after 1s: SIGTERM"), "SIGINT first: {}", run.transcript());
}

#[test]
fn a_job_whose_worker_is_sigkilled_runs_again_on_another_and_completes() {
    let room = Room::new("kill");
    let data = room.data(1 << 20);
    let out = room.dir.join("out");
    let input = format!("data={}", data.display());
    let mut run = room.job(
        "c1",
        &[
            "run",
            "train",
            "--input",
            &input,
            "--param",
            "epochs=40",
            "--param",
            "epoch_ms=100",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let (_, first) = run.accepted();
    run.wait_line("epoch 2", |w, l| w == Out::Stdout && l.starts_with("epoch 2/"));
    room.worker(&first).signal("-KILL");
    run.wait_line("the loss noticed", |w, l| w == Out::Stderr && l.contains(&format!("lost worker {first}")));
    let (_, second) = run.accepted();
    assert_ne!(first, second, "another worker");
    let status = run.finish();
    assert!(status.success(), "{}", run.transcript());
    assert_model(&out, &data, 40);
}

#[test]
fn a_sigkilled_client_reattaches_and_gets_the_rest_of_the_log_and_the_outputs() {
    let room = Room::new("attach");
    let data = room.data(1 << 16);
    let out = room.dir.join("out");
    let input = format!("data={}", data.display());
    let mut run =
        room.job("c1", &["run", "train", "--input", &input, "--param", "epochs=30", "--param", "epoch_ms=100"]);
    let (job, _) = run.accepted();
    run.wait_line("epoch 5", |w, l| w == Out::Stdout && l.starts_with("epoch 5/"));
    run.child.kill().expect("SIGKILL the client");
    let _ = run.child.wait();

    let mut attach = room.job("c1b", &["attach", &job, "--out", out.to_str().unwrap()]);
    let status = attach.finish();
    assert!(status.success(), "{}", attach.transcript());
    let stdout = attach.stdout();
    assert!(stdout.iter().any(|l| l.starts_with("epoch 30/30")), "the rest of the log: {stdout:?}");
    assert!(!stdout.iter().any(|l| l.starts_with("epoch 1/30")), "not replayed from the start: {stdout:?}");
    assert_model(&out, &data, 30);
}

#[test]
fn a_batch_of_twelve_on_three_workers_survives_a_sigkilled_worker_and_runs_each_once() {
    let room = Room::new("batch");
    let data = room.data(1 << 16);
    let file = room.dir.join("jobs.jsonl");
    let lines: String = (0..12)
        .map(|i| {
            format!(
                "{{\"name\": \"j{i:02}\", \"kind\": \"train\", \"params\": {{\"epochs\": \"{}\", \"epoch_ms\": \"100\"}}, \"inputs\": {{\"data\": \"{}\"}}}}\n",
                10 + i,
                data.display()
            )
        })
        .collect();
    std::fs::write(&file, lines).expect("batch file");
    let out = room.dir.join("out");
    let mut batch = room.job("c1", &["batch", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    batch.wait_line("every worker busy", |w, l| w == Out::Stderr && l.contains("3 placed"));
    let victim = &room.workers[1];
    victim.signal("-KILL");
    let status = batch.finish();
    assert!(status.success(), "{}", batch.transcript());
    assert!(batch.stdout().iter().any(|l| l.starts_with("12 of 12 jobs succeeded")), "{}", batch.transcript());
    for i in 0..12 {
        let dir = out.join(format!("j{i:02}"));
        assert_model(&dir, &data, 10 + i);
        let log = std::fs::read_to_string(dir.join("log.txt")).expect("log");
        let last = format!("epoch {0}/{0}", 10 + i);
        assert_eq!(log.matches(&last).count(), 1, "j{i:02} completed once: {log}");
    }
}

#[test]
fn list_shows_a_running_job_with_its_worker_and_owner() {
    let room = Room::new("list");
    let data = room.data(1000);
    let input = format!("data={}", data.display());
    let mut run =
        room.job("owner1", &["run", "train", "--input", &input, "--param", "epochs=100", "--param", "epoch_ms=100"]);
    let (job, worker) = run.accepted();
    run.wait_line("running", |w, l| w == Out::Stdout && l.starts_with("epoch 1/"));
    let mut list = room.job("lister", &["list"]);
    assert!(list.finish().success(), "{}", list.transcript());
    let row = list.stdout().into_iter().find(|l| l.starts_with(&job)).map(str::to_string);
    let row = row.unwrap_or_else(|| panic!("{job} listed: {}", list.transcript()));
    assert!(row.contains(&worker) && row.contains("owner1") && row.contains("running"), "{row}");
}

#[test]
fn over_an_80_ms_wan_a_job_runs_and_moves_when_its_worker_is_sigkilled() {
    use mesh_examples::labroom::{LabRoom, WanSpec, PORT};
    let lab = mesh_netlab::Lab::new(5).expect("the lab (needs root)");
    let wan: WanSpec = "rtt=80ms".parse().expect("wan");
    wan.apply(&lab).expect("WAN");
    let dir = std::env::temp_dir().join(format!("mesh-jobs-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let train = sibling_binary("mesh-train", "mesh-job").expect("mesh-train");
    let extra = format!("{}[job_options]\ndir = \"{}\"\n", kinds(&train), dir.join("jobs").display());
    let room = LabRoom::on(lab, vec![1, 2, 3], 3, &extra).expect("room");
    wait_all(&room.all(), WAIT, "full mesh of 3 at 80 ms", full(2)).expect("mesh forms");
    let config = dir.join("client.toml");
    let url = format!("ws://{}:{PORT}", room.lab.host(0).ip);
    std::fs::write(&config, worker_toml("lab", &url, "0.0.0.0:0", "")).expect("client config");
    let data = dir.join("data.bin");
    std::fs::write(&data, (0..(2 << 20)).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).expect("data");
    let out = dir.join("out");
    let bin = sibling_binary("mesh-job", "mesh-job").expect("mesh-job");
    let input = format!("data={}", data.display());
    let args = ["run", "train", "--input", &input, "--param", "epochs=40", "--param", "epoch_ms=100", "--out"];
    let mut args: Vec<&str> = args.to_vec();
    let out_arg = out.to_string_lossy().into_owned();
    args.push(&out_arg);
    let mut run = JobProc::start(room.lab.command(4, &bin), &config, &dir.join("state"), "c1", &args);
    let (_, first) = run.accepted();
    run.wait_line("epoch 2", |w, l| w == Out::Stdout && l.starts_with("epoch 2/"));
    let idx: usize = first.trim_start_matches('w').parse().expect("wN");
    room.workers[idx].signal("-KILL");
    run.wait_line("the loss noticed", |w, l| w == Out::Stderr && l.contains(&format!("lost worker {first}")));
    let status = run.finish();
    assert!(status.success(), "{}", run.transcript());
    assert_model(&out, &data, 40);
    drop(room);
    let _ = std::fs::remove_dir_all(&dir);
}
