//! The product as separate processes: one `mesh-signal` and `mesh-worker`s on loopback. The
//! admin's process is SIGKILLed; the survivors' own snapshot lines must show their links kept,
//! no reconnects and one new verified admin; then a sixth process joins and the mesh is full.

use serde_json::Value;
use signaling_ws::loadgen::ServerProcess;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The `mesh-signal` binary of this workspace, built on demand (it belongs to another package).
fn mesh_signal() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf();
    let path = dir.join("mesh-signal");
    if !path.exists() {
        let release = dir.ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "signaling-ws", "--bin", "mesh-signal"]);
        if release {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo runs").success(), "mesh-signal builds");
    }
    path
}

/// The last snapshot line a worker printed, and a wake-up for whoever waits on it.
#[derive(Default)]
struct Latest {
    value: Mutex<Value>,
    changed: Condvar,
}

/// A worker process, killed on drop; its stdout lines are read by a thread.
struct Proc {
    child: Child,
    latest: Arc<Latest>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn worker(config: &std::path::Path, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-worker"))
            .args(["--config", config.to_str().expect("utf-8 path"), "--report-ms", "100"])
            .env("MESH_PEER_ID", name)
            .stdout(Stdio::piped())
            .spawn()
            .expect("mesh-worker starts");
        let latest = Arc::new(Latest::default());
        let (out, slot) = (child.stdout.take().expect("stdout"), latest.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    *slot.value.lock().unwrap() = v;
                    slot.changed.notify_all();
                }
            }
        });
        Self { child, latest }
    }

    fn snapshot(&self) -> Value {
        self.latest.value.lock().unwrap().clone()
    }

    /// Waits for a report satisfying `cond`; false at the deadline.
    fn wait_until(&self, deadline: Instant, cond: &impl Fn(&Value) -> bool) -> bool {
        let mut value = self.latest.value.lock().unwrap();
        while !cond(&value) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            value = self.latest.changed.wait_timeout(value, left).unwrap().0;
        }
        true
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
    }
}

/// Waits until `cond` holds for every process's latest report at once.
fn wait_all(procs: &[&Proc], what: &str, cond: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !procs.iter().all(|p| cond(&p.snapshot())) {
        let on_time = procs.iter().all(|p| p.wait_until(deadline, &cond));
        assert!(on_time, "{what}: {:#?}", procs.iter().map(|p| p.snapshot()["health"].clone()).collect::<Vec<_>>());
    }
}

fn full(links: u64) -> impl Fn(&Value) -> bool {
    move |s| s["health"]["links_up"] == links && s["health"]["links_expected"] == links
}

fn attempts(s: &Value) -> u64 {
    s["counters"]["dials"].as_u64().unwrap_or(0) + s["counters"]["accepts"].as_u64().unwrap_or(0)
}

/// A worker configuration file for the server at `url`, in a fresh directory named after `tag`.
fn worker_config(url: &str, tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("mesh-proc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!("room = \"procs\"\nsignaling = [\"relay\", \"ws\"]\n[ws]\nurl = \"{url}\"\n[webrtc]\nudp_addrs = [\"127.0.0.1:0\"]\n"),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn five_worker_processes_survive_a_sigkilled_admin_and_take_a_sixth() {
    let server = ServerProcess::spawn(&mesh_signal()).expect("mesh-signal starts");
    let (dir, config) = worker_config(&server.url, "five");

    let mut workers: Vec<Proc> = (0..5).map(|i| Proc::worker(&config, &format!("w{i}"))).collect();
    wait_all(&workers.iter().collect::<Vec<_>>(), "full mesh of 5", full(4));
    let admin_id = workers[0].snapshot()["health"]["admin"].as_str().expect("an admin").to_string();
    let idx = (0..5).find(|i| format!("w{i}") == admin_id).expect("the admin is one of ours");
    let admin = workers.remove(idx);
    // Same priority everywhere: the lowest surviving id wins the election.
    let expected = (0..5).map(|i| format!("w{i}")).find(|w| *w != admin_id).unwrap();
    let before: Vec<u64> = workers.iter().map(|p| attempts(&p.snapshot())).collect();
    admin.signal("-KILL");
    let survivors: Vec<&Proc> = workers.iter().collect();
    wait_all(&survivors, "a new verified admin", |s| {
        s["health"]["admin"] == expected.as_str()
            && s["health"]["admin_verified"] == true
            && s["health"]["links_expected"] == 3
    });
    for (p, before) in workers.iter().zip(before) {
        let s = p.snapshot();
        assert_eq!(s["health"]["links_up"], 3, "links between survivors kept: {s}");
        assert_eq!(s["counters"]["reconnects"], 0, "{s}");
        assert_eq!(attempts(&s), before, "no new link attempts: {s}");
    }
    drop(admin);

    workers.push(Proc::worker(&config, "w5"));
    wait_all(&workers.iter().collect::<Vec<_>>(), "full mesh again with w5", full(4));

    // A client process reads the registry from the new admin.
    let client = Command::new(env!("CARGO_BIN_EXE_mesh-client"))
        .args(["--config", config.to_str().unwrap(), "--json"])
        .env("MESH_PEER_ID", "reader")
        .output()
        .expect("mesh-client runs");
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    let registry: Value = serde_json::from_slice(&client.stdout).expect("registry JSON");
    let mut names: Vec<&str> =
        registry["workers"].as_array().expect("workers").iter().filter_map(|w| w["peer"].as_str()).collect();
    assert_eq!(registry["total_count"], 5, "{registry}");
    names.sort();
    let mut expected_names: Vec<String> = (1..6).map(|i| format!("w{i}")).filter(|w| *w != admin_id).collect();
    if admin_id != "w0" {
        expected_names.push("w0".into());
    }
    expected_names.sort();
    assert_eq!(names, expected_names, "the registry lists the five live workers, not the client");

    for p in &workers {
        p.signal("-TERM");
    }
    for mut p in workers {
        let status = p.child.wait().expect("worker exits");
        assert!(status.success(), "a worker stops cleanly on SIGTERM: {status}");
    }
    assert!(server.stop(), "mesh-signal stops cleanly");
    let _ = std::fs::remove_dir_all(dir);
}

/// A long-lived client (in this process, on the real stack) keeps reading the registry while the
/// admin's process is SIGKILLed, and then while the next admin's process is frozen (SIGSTOP).
#[test]
fn a_long_lived_client_follows_a_killed_then_a_frozen_admin() {
    use mesh_core::{MeshConfig, RegistryFilter, Role};
    let server = ServerProcess::spawn(&mesh_signal()).expect("mesh-signal starts");
    let (dir, config) = worker_config(&server.url, "client");
    let workers: Vec<Proc> = (0..4).map(|i| Proc::worker(&config, &format!("w{i}"))).collect();
    wait_all(&workers.iter().collect::<Vec<_>>(), "full mesh of 4", full(3));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut base = MeshConfig::load(Some(config.as_path())).expect("config");
        base.role = Role::Client;
        let stack = mesh_examples::stack::Stack::new(base).await.expect("stack");
        let client = stack.start("reader").await.expect("client starts");
        let ask = |what: &'static str| {
            let client = &client;
            async move {
                let page = client
                    .query_registry(RegistryFilter::default(), Duration::from_secs(20))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}; {:?}", client.snapshot().health));
                (page.total_count, client.snapshot().health.admin.map(|a| a.to_string()))
            }
        };
        assert_eq!(ask("first query").await, (4, Some("w0".into())));
        workers[0].signal("-KILL");
        assert_eq!(ask("after the admin was killed").await, (3, Some("w1".into())));
        workers[1].signal("-STOP");
        // The frozen w1 is still registered (its socket is open): the room counts it present.
        let (_, admin) = ask("after the next admin froze").await;
        assert_eq!(admin.as_deref(), Some("w2"));
        workers[1].signal("-CONT");
        client.leave().await;
        stack.shutdown().await;
    });
    drop(workers);
    assert!(server.stop(), "mesh-signal stops cleanly");
    let _ = std::fs::remove_dir_all(dir);
}
