//! Two `mesh-signal` processes on one real `redis-server`, and `mesh-worker` processes split
//! between them (`ws.urls` in two orders). One server is SIGKILLed: its workers register again
//! on the other within seconds, nobody is told they left, every link stays up, a newcomer joins
//! through the survivor, and the dead server's lease is swept from Redis.

use futures::{SinkExt, StreamExt};
use mesh_examples::procs::{full, sibling_binary, wait_all, WorkerProc};
use mesh_netlab::RedisServer;
use signaling_ws::loadgen::ServerProcess;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const LEASE_MS: u64 = 1_500;

fn mesh_signal(redis: &RedisServer) -> ServerProcess {
    let mut command = Command::new(sibling_binary("mesh-signal", "signaling-ws").expect("mesh-signal"));
    command.args(["--redis", &redis.url()]).env("MESH_SIGNAL_LEASE_MS", LEASE_MS.to_string());
    ServerProcess::spawn_command(command, "127.0.0.1:0").expect("mesh-signal starts on redis")
}

fn worker(dir: &Path, name: &str, urls: &[&str]) -> WorkerProc {
    let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "room = \"cluster\"\nsignaling = [\"relay\", \"ws\"]\n[ws]\nurls = [{}]\n[webrtc]\nudp_addrs = [\"127.0.0.1:0\"]\n",
        list.join(", ")
    );
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml).expect("config written");
    WorkerProc::spawn(Path::new(env!("CARGO_BIN_EXE_mesh-worker")), &config, name).expect("mesh-worker starts")
}

/// Room notices a client registered on `url` hears, as they come: (when, type, peer).
fn observe(rt: &tokio::runtime::Runtime, url: String) -> std::sync::mpsc::Receiver<(Instant, String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("observer connects");
        let register = r#"{"type":"register","room":"cluster","peer":"observer","role":"client"}"#;
        ws.send(tokio_tungstenite::tungstenite::Message::Text(register.into())).await.expect("sent");
        while let Some(Ok(msg)) = ws.next().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(msg.to_text().unwrap_or_default()) else { continue };
            let kind = v["type"].as_str().unwrap_or_default().to_string();
            let peer = v["peer"].as_str().or(v["member"]["peer"].as_str()).unwrap_or_default().to_string();
            if tx.send((Instant::now(), kind, peer)).is_err() {
                return;
            }
        }
    });
    let (_, kind, _) = rx.recv_timeout(WAIT).expect("the observer is answered");
    assert_eq!(kind, "registered");
    rx
}

fn all(w: &[WorkerProc]) -> Vec<&WorkerProc> {
    w.iter().collect()
}

/// Lines of `redis-cli SUBSCRIBE` to the changes of key `key` (keyspace notifications on).
fn watch_key(redis: &RedisServer, key: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let cli = |args: &[&str]| Command::new("redis-cli").args(["-p", &redis.port().to_string()]).args(args).output();
    cli(&["CONFIG", "SET", "notify-keyspace-events", "Ksg"]).expect("redis-cli runs");
    let mut child = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "SUBSCRIBE", &format!("__keyspace@0__:{key}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli subscribes");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

#[test]
fn workers_fail_over_to_the_surviving_server_with_their_links_untouched() {
    let redis = RedisServer::start().expect("redis-server starts");
    let (a, b) = (mesh_signal(&redis), mesh_signal(&redis));
    let dir = std::env::temp_dir().join(format!("mesh-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // w0 and w1 start on a, w2 and w3 on b: the room spans both servers.
    let mut workers: Vec<WorkerProc> = (0..4)
        .map(|i| {
            let urls = if i < 2 { [a.url.as_str(), b.url.as_str()] } else { [b.url.as_str(), a.url.as_str()] };
            worker(&dir, &format!("w{i}"), &urls)
        })
        .collect();
    wait_all(&all(&workers), WAIT, "one full mesh across two servers", full(3)).unwrap();
    let heard = observe(&rt, b.url.clone());
    let (mut watcher, insts) = watch_key(&redis, "mesh:insts");

    let killed = Instant::now();
    let _ = Command::new("kill").args(["-KILL", &a.pid().to_string()]).status();
    let (mut back, mut left) = (Vec::new(), Vec::new());
    while back.len() < 2 {
        let (at, kind, peer) = heard.recv_timeout(WAIT).expect("w0 and w1 register on b in time");
        match kind.as_str() {
            "peer_joined" if peer == "w0" || peer == "w1" => back.push(at.duration_since(killed)),
            "peer_left" => left.push(peer),
            _ => {}
        }
    }
    assert!(left.is_empty(), "nobody is told a worker left: {left:?}");
    for w in &workers {
        let s = w.snapshot();
        let (up, reconnects) = (s["health"]["links_up"].as_u64(), s["counters"]["reconnects"].as_u64());
        assert_eq!((up, reconnects), (Some(3), Some(0)), "links untouched: {s}");
    }
    eprintln!("failover: the killed server's workers registered on the survivor {back:?} after the SIGKILL");

    workers.push(worker(&dir, "w4", &[b.url.as_str()]));
    wait_all(&all(&workers), WAIT, "the newcomer, through the survivor, in a full mesh of 5", full(4)).unwrap();
    // The sweep takes the dead server off the list of servers once its lease has expired.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = insts.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        if line.expect("the dead server is swept in time") == "srem" {
            break;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    drop(workers);
    let _ = b.stop();
    let _ = std::fs::remove_dir_all(dir);
}
