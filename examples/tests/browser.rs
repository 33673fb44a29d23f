//! The room dashboard in a real browser: `mesh-signal` and three `mesh-worker` processes, the page
//! opened in headless Chromium (driven through the DevTools protocol), and what the page's DOM
//! shows checked as the room changes: three workers and the admin, a new admin within the
//! heartbeat timeout + 2 s after the admin's process is SIGKILLed, a newcomer. A screenshot is
//! saved in the test's output directory.

use futures::{SinkExt, StreamExt};
use mesh_examples::procs::{full, sibling_binary, wait_all, worker_config, WorkerProc};
use serde_json::{json, Value};
use signaling_ws::loadgen::ServerProcess;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

/// Headless Chromium, killed on drop, with its DevTools endpoint.
struct Browser {
    child: Child,
    dir: std::path::PathBuf,
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Browser {
    fn open() -> Browser {
        let dir = std::env::temp_dir().join(format!("mesh-browser-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
            // On a host with only loopback, WebRTC gathers no candidate without this.
            .arg("--allow-loopback-in-peer-connection")
            .args(["--remote-debugging-port=0", "--window-size=1100,700"])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts (the chromium package; scripts/test installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_ws = rx.recv_timeout(WAIT).expect("chromium's DevTools endpoint");
        let devtools = browser_ws.trim_start_matches("ws://").split('/').next().unwrap_or_default().to_string();
        Browser { child, dir, devtools }
    }

    /// The DevTools WebSocket of its page.
    fn page(&self) -> String {
        let mut tcp = std::net::TcpStream::connect(&self.devtools).expect("devtools http");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(tcp, "GET /json/list HTTP/1.1\r\nHost: {}\r\n\r\n", self.devtools).expect("sent");
        // The endpoint keeps the connection open: read the head, then Content-Length bytes.
        let mut reader = BufReader::new(tcp);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("head line");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let targets: Value = serde_json::from_slice(&body).expect("targets JSON");
        let page = targets.as_array().into_iter().flatten().find(|t| t["type"] == "page").expect("a page");
        page["webSocketDebuggerUrl"].as_str().expect("page websocket").to_string()
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools command on the page; its `result`.
async fn cdp(ws: &mut Ws, id: &mut u64, method: &str, params: Value) -> Value {
    *id += 1;
    let call = json!({"id": *id, "method": method, "params": params});
    ws.send(Message::Text(call.to_string().into())).await.expect("cdp send");
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("cdp json");
                    if v["id"] == *id {
                        return v;
                    }
                }
                other => panic!("devtools connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("devtools answers");
    assert!(reply.get("error").is_none(), "{method}: {reply}");
    reply["result"].clone()
}

/// Evaluates `expression` in the page (awaiting a promise); its value, or the exception text.
async fn eval(ws: &mut Ws, id: &mut u64, expression: &str) -> Result<Value, String> {
    let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
    let result = cdp(ws, id, "Runtime.evaluate", params).await;
    match result.get("exceptionDetails") {
        Some(e) => Err(e.to_string()),
        None => Ok(result["result"]["value"].clone()),
    }
}

/// Resolves once `condition` (JavaScript over the page's DOM) holds, within `ms`.
fn when(condition: &str, ms: u64) -> String {
    format!("meshDash.when(() => {condition}, {ms})")
}

fn rows() -> &'static str {
    "[...document.querySelectorAll('#workers tr')].map(r => r.dataset.peer).sort().join(',')"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_the_room_and_follows_its_admin() {
    let server = ServerProcess::spawn(&sibling_binary("mesh-signal", "signaling-ws").expect("mesh-signal"))
        .expect("mesh-signal");
    let (dir, config) = worker_config(&server.url, "lab", "browser").expect("config");
    let worker = |name: &str| {
        WorkerProc::spawn(Path::new(env!("CARGO_BIN_EXE_mesh-worker")), &config, name).expect("mesh-worker starts")
    };
    let mut workers: Vec<WorkerProc> = ["w0", "w1", "w2"].into_iter().map(worker).collect();
    tokio::task::block_in_place(|| wait_all(&workers.iter().collect::<Vec<_>>(), WAIT, "three workers", full(2)))
        .unwrap();
    let admin = workers[0].snapshot()["health"]["admin"].as_str().expect("an admin").to_string();

    let page_url = format!("http://{}/?room=lab", server.url.trim_start_matches("ws://"));
    let browser = Browser::open();
    eprintln!("browser: devtools on {}", browser.devtools);
    let page = tokio::task::block_in_place(|| browser.page());
    eprintln!("browser: page {page}");
    let (mut ws, _) = tokio_tungstenite::connect_async(page).await.expect("devtools page");
    let mut id = 0;
    cdp(&mut ws, &mut id, "Page.enable", json!({})).await;
    let loaded = Instant::now();
    cdp(&mut ws, &mut id, "Page.navigate", json!({"url": page_url})).await;
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(Message::Text(t))) = ws.next().await {
            if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["method"] == "Page.loadEventFired") {
                return;
            }
        }
    })
    .await
    .expect("the page loads");
    let linked = |n: usize| {
        format!("[...document.querySelectorAll('#workers td.links')].every(td => td.textContent === '{n}/{n}')")
    };
    let shown = format!(
        "{} === 'w0,w1,w2' && document.querySelector('tr.admin')?.dataset.peer === '{admin}' && {}",
        rows(),
        linked(2)
    );
    eval(&mut ws, &mut id, &when(&shown, 30_000)).await.expect("three workers and the admin shown");
    let first_ms = eval(&mut ws, &mut id, "meshDash.state.firstRegistryMs").await.expect("timing");
    eprintln!(
        "dashboard: registry first shown {first_ms} ms after the page's script started ({:?} after navigating)",
        loaded.elapsed()
    );

    // The admin's process dies: the page shows the new admin within heartbeat timeout + 2 s.
    let idx = workers
        .iter()
        .position(|w| w.snapshot()["health"]["admin"] == admin.as_str() && w.snapshot()["health"]["role"] == "admin");
    let dead = workers.remove(idx.expect("the admin's process"));
    let survivors: Vec<String> = ["w0", "w1", "w2"].iter().map(|s| s.to_string()).filter(|w| *w != admin).collect();
    let expected = survivors[0].clone();
    let killed = Instant::now();
    dead.signal("-KILL");
    let moved = format!(
        "document.querySelector('tr.admin')?.dataset.peer === '{expected}' && {} === '{}'",
        rows(),
        survivors.join(",")
    );
    eval(&mut ws, &mut id, &when(&moved, 5_000)).await.expect("the new admin within 5 s");
    eprintln!("dashboard: new admin {expected} shown {:?} after the SIGKILL", killed.elapsed());
    drop(dead);

    workers.push(worker("w3"));
    let mut names = survivors.clone();
    names.push("w3".into());
    let grown = format!("{} === '{}' && {}", rows(), names.join(","), linked(2));
    eval(&mut ws, &mut id, &when(&grown, 30_000)).await.expect("the newcomer shown");

    let shot = cdp(&mut ws, &mut id, "Page.captureScreenshot", json!({"format": "png"})).await;
    let png =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap_or_default())
            .expect("png");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, png).expect("screenshot saved");
    eprintln!("dashboard: screenshot in {}", out.display());
    drop(browser);
    drop(workers);
    let _ = server.stop();
    let _ = std::fs::remove_dir_all(dir);
}
