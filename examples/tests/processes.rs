//! The product as separate processes: one `mesh-signal` and `mesh-worker`s on loopback. The
//! admin's process is SIGKILLed; the survivors' own snapshot lines must show their links kept,
//! no reconnects and one new verified admin; then a sixth process joins and the mesh is full.

use mesh_examples::procs::{attempts, full, sibling_binary, wait_all, worker_config, WorkerProc};
use serde_json::Value;
use signaling_ws::loadgen::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn mesh_signal() -> PathBuf {
    sibling_binary("mesh-signal", "signaling-ws").expect("mesh-signal")
}

fn worker(config: &Path, name: &str) -> WorkerProc {
    WorkerProc::spawn(Path::new(env!("CARGO_BIN_EXE_mesh-worker")), config, name).expect("mesh-worker starts")
}

fn all(procs: &[WorkerProc]) -> Vec<&WorkerProc> {
    procs.iter().collect()
}

#[test]
fn five_worker_processes_survive_a_sigkilled_admin_and_take_a_sixth() {
    let server = ServerProcess::spawn(&mesh_signal()).expect("mesh-signal starts");
    let (dir, config) = worker_config(&server.url, "procs", "five").expect("config");

    let mut workers: Vec<WorkerProc> = (0..5).map(|i| worker(&config, &format!("w{i}"))).collect();
    wait_all(&all(&workers), WAIT, "full mesh of 5", full(4)).unwrap();
    let admin_id = workers[0].snapshot()["health"]["admin"].as_str().expect("an admin").to_string();
    let idx = (0..5).find(|i| format!("w{i}") == admin_id).expect("the admin is one of ours");
    let admin = workers.remove(idx);
    // Same priority everywhere: the lowest surviving id wins the election.
    let expected = (0..5).map(|i| format!("w{i}")).find(|w| *w != admin_id).unwrap();
    let before: Vec<u64> = workers.iter().map(|p| attempts(&p.snapshot())).collect();
    admin.signal("-KILL");
    wait_all(&all(&workers), WAIT, "a new verified admin", |s| {
        s["health"]["admin"] == expected.as_str()
            && s["health"]["admin_verified"] == true
            && s["health"]["links_expected"] == 3
    })
    .unwrap();
    for (p, before) in workers.iter().zip(before) {
        let s = p.snapshot();
        assert_eq!(s["health"]["links_up"], 3, "links between survivors kept: {s}");
        assert_eq!(s["counters"]["reconnects"], 0, "{s}");
        assert_eq!(attempts(&s), before, "no new link attempts: {s}");
    }
    drop(admin);

    workers.push(worker(&config, "w5"));
    wait_all(&all(&workers), WAIT, "full mesh again with w5", full(4)).unwrap();

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

    // Filters travel to the admin: every worker is available, at most two come back.
    let client = Command::new(env!("CARGO_BIN_EXE_mesh-client"))
        .args(["--config", config.to_str().unwrap(), "--json", "--status", "available", "--max", "2"])
        .env("MESH_PEER_ID", "reader2")
        .output()
        .expect("mesh-client runs");
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    let page: Value = serde_json::from_slice(&client.stdout).expect("registry JSON");
    assert_eq!(page["workers"].as_array().map(|w| w.len()), Some(2), "{page}");
    assert_eq!((page["matched_count"].as_u64(), page["total_count"].as_u64()), (Some(5), Some(5)), "{page}");

    for p in &workers {
        p.signal("-TERM");
    }
    for p in workers {
        let status = p.wait_exit(Duration::from_secs(10)).expect("worker exits");
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
    let (dir, config) = worker_config(&server.url, "procs", "client").expect("config");
    let workers: Vec<WorkerProc> = (0..4).map(|i| worker(&config, &format!("w{i}"))).collect();
    wait_all(&all(&workers), WAIT, "full mesh of 4", full(3)).unwrap();
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
        // Whoever registered first is the admin; after it, the lowest surviving id (equal priorities).
        let index = |admin: &Option<String>| {
            let admin = admin.clone().expect("an admin");
            (0..4).find(|i| format!("w{i}") == admin).expect("one of ours")
        };
        let lowest_but = |gone: &[usize]| (0..4).find(|i| !gone.contains(i)).map(|i| format!("w{i}"));
        let (total, first) = ask("first query").await;
        assert_eq!(total, 4);
        let first = index(&first);
        workers[first].signal("-KILL");
        let (total, second) = ask("after the admin was killed").await;
        assert_eq!((total, second.clone()), (3, lowest_but(&[first])));
        let second = index(&second);
        workers[second].signal("-STOP");
        // The frozen worker is still registered (its socket is open): the room counts it present.
        // The query is answered; the client then names the next admin (it may have answered
        // before the client's own view moved on, so that is awaited, not read at once).
        let _ = ask("after the next admin froze").await;
        let next = lowest_but(&[first, second]);
        let followed =
            client.wait_for(Duration::from_secs(20), |s| s.health.admin.as_ref().map(|a| a.to_string()) == next).await;
        assert!(followed.is_ok(), "the client follows {next:?}; it names {:?}", client.snapshot().health.admin);
        workers[second].signal("-CONT");
        client.leave().await;
        stack.shutdown().await;
    });
    drop(workers);
    assert!(server.stop(), "mesh-signal stops cleanly");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_with_no_server_warns_naming_the_url_and_the_retry() {
    use std::io::{BufRead, BufReader};
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let url = format!("ws://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-worker"))
        .env("MESH_WS__URL", &url)
        .env("MESH_PEER_ID", "lonely")
        .env_remove("RUST_LOG") // the default log level, as a newcomer runs it
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("mesh-worker starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let warning = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("WARN") && line.contains(&url) => break line,
            Ok(_) => continue,
            Err(e) => panic!("no warning naming {url}: {e}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(warning.contains("cannot reach the signaling server") && warning.contains("retry_in"), "{warning}");
}

#[test]
fn print_key_prints_the_public_key_of_the_key_file_every_time() {
    let dir = std::env::temp_dir().join(format!("mesh-print-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("node.key");
    let print = || {
        Command::new(env!("CARGO_BIN_EXE_mesh-worker"))
            .arg("--print-key")
            .env("MESH_KEY_FILE", &key_file)
            .output()
            .expect("mesh-worker runs")
    };
    let first = print();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let key = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    let again = print();
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), key, "the same key from the same file");
    let secret = std::fs::read_to_string(&key_file).unwrap();
    assert!(!secret.contains(&key), "the file holds the secret, the output the public half");
    let none = Command::new(env!("CARGO_BIN_EXE_mesh-worker"))
        .arg("--print-key")
        .env_remove("MESH_KEY_FILE")
        .output()
        .unwrap();
    assert!(!none.status.success(), "no key_file: refused");
    assert!(String::from_utf8_lossy(&none.stderr).contains("key_file"));
    let _ = std::fs::remove_dir_all(&dir);
}
