//! Real processes for tests and benchmarks: `mesh-worker` children whose snapshot lines are read
//! as they come, signals to kill, freeze or stop them, and the sibling binaries of the caller.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use mesh_netlab::sibling_binary;

/// A worker configuration (TOML): `room`, signals by relay then the server at `url`, links bound
/// to `udp_addr`, and `webrtc_extra` lines in the `[webrtc]` section.
pub fn worker_toml(room: &str, url: &str, udp_addr: &str, webrtc_extra: &str) -> String {
    format!(
        "room = \"{room}\"\nsignaling = [\"relay\", \"ws\"]\n[ws]\nurl = \"{url}\"\n\
         [webrtc]\nudp_addrs = [\"{udp_addr}\"]\n{webrtc_extra}\n"
    )
}

/// A loopback worker configuration file for the server at `url`, in a fresh temporary directory.
pub fn worker_config(url: &str, room: &str, tag: &str) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("mesh-proc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("worker.toml");
    std::fs::write(&config, worker_toml(room, url, "127.0.0.1:0", ""))?;
    Ok((dir, config))
}

/// The last snapshot line a worker printed, and a wake-up for whoever waits on it.
#[derive(Default)]
struct Latest {
    value: Mutex<Value>,
    changed: Condvar,
}

/// A `mesh-worker` process, killed on drop; a thread reads its snapshot lines.
pub struct WorkerProc {
    child: Child,
    latest: Arc<Latest>,
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("-CONT"); // a frozen process must be able to die
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WorkerProc {
    /// Starts `binary` (`mesh-worker`) as peer `name`, reporting on every change (and each minute).
    pub fn spawn(binary: &Path, config: &Path, name: &str) -> Result<Self, String> {
        Self::spawn_command(Command::new(binary), config, name)
    }

    /// Starts the `mesh-worker` that `command` names (for example through `ip netns exec`).
    pub fn spawn_command(mut command: Command, config: &Path, name: &str) -> Result<Self, String> {
        let mut child = command
            .args(["--config", &config.to_string_lossy(), "--report-ms", "60000"])
            .env("MESH_PEER_ID", name)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let latest = Arc::new(Latest::default());
        let (out, slot) = (child.stdout.take().ok_or("no stdout")?, latest.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Ok(mut value) = slot.value.lock() {
                        *value = v;
                    }
                    slot.changed.notify_all();
                }
            }
        });
        Ok(Self { child, latest })
    }

    /// The latest snapshot (JSON `null` before the first line).
    pub fn snapshot(&self) -> Value {
        self.latest.value.lock().map(|v| v.clone()).unwrap_or(Value::Null)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a report satisfying `cond`; false at the deadline.
    pub fn wait_until(&self, deadline: Instant, cond: &impl Fn(&Value) -> bool) -> bool {
        let Ok(mut value) = self.latest.value.lock() else { return false };
        while !cond(&value) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            value = match self.latest.changed.wait_timeout(value, left) {
                Ok((v, _)) => v,
                Err(_) => return false,
            };
        }
        true
    }

    /// Sends a signal (`-KILL`, `-STOP`, `-CONT`, `-TERM`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.child.id().to_string()]).stderr(Stdio::null()).status();
    }

    /// Waits (bounded) for the process to exit; its status, if it did.
    pub fn wait_exit(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// CPU time process `pid` used so far, every thread summed, to the nanosecond (schedstat).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    sum_over_threads(pid, "schedstat", |stat| stat.split_whitespace().next()).map(Duration::from_nanos)
}

/// Times any thread of process `pid` went to sleep and was woken again so far, every thread
/// summed (`voluntary_ctxt_switches`): the wake-ups an idle process costs the machine.
pub fn wakeups_of(pid: u32) -> Option<u64> {
    sum_over_threads(pid, "status", |status| {
        status.lines().find(|l| l.starts_with("voluntary_ctxt_switches"))?.split_whitespace().nth(1)
    })
}

/// The number `pick` finds in each thread's `/proc/PID/task/TID/FILE`, summed.
fn sum_over_threads(pid: u32, file: &str, pick: impl Fn(&str) -> Option<&str>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0u64;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join(file)).ok()?;
        sum += pick(&text)?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// Waits until `cond` holds for every process's latest report at once; `Err` names what did not.
pub fn wait_all(
    procs: &[&WorkerProc],
    timeout: Duration,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !procs.iter().all(|p| cond(&p.snapshot())) {
        if !procs.iter().all(|p| p.wait_until(deadline, &cond)) {
            let health: Vec<Value> = procs.iter().map(|p| p.snapshot()["health"].clone()).collect();
            return Err(format!("{what}: not within {timeout:?}: {health:#?}"));
        }
    }
    Ok(())
}

/// A report condition: `links` links up out of `links` expected.
pub fn full(links: u64) -> impl Fn(&Value) -> bool {
    move |s| s["health"]["links_up"] == links && s["health"]["links_expected"] == links
}

/// Link attempts (dials + accepts) in a report.
pub fn attempts(s: &Value) -> u64 {
    s["counters"]["dials"].as_u64().unwrap_or(0) + s["counters"]["accepts"].as_u64().unwrap_or(0)
}

/// Waits until every one of `procs` reports the same verified admin, other than `old`; returns it.
pub fn wait_new_admin(procs: &[&WorkerProc], timeout: Duration, old: &str) -> Result<Value, String> {
    let new_admin =
        |s: &Value| s["health"]["admin_verified"] == true && s["health"]["admin"].as_str().is_some_and(|a| a != old);
    wait_all(procs, timeout, "a verified new admin", new_admin)?;
    let first = procs.first().map(|p| p.snapshot()["health"]["admin"].clone()).unwrap_or_default();
    wait_all(procs, timeout, "the same new admin everywhere", |s| new_admin(s) && s["health"]["admin"] == first)?;
    Ok(first)
}
