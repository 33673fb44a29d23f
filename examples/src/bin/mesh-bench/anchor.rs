//! The baseline of `mesh-bench idle --anchor`: a room of stock matchbox 0.15 peers (on
//! matchbox's own, unpatched webrtc 0.21), measured the way our workers are. The anchor lives in
//! `anchors/matchbox`, outside the workspace, with its own lock file; it is built on first use
//! into `target/anchors`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The anchor's processes (the server first), killed on drop.
pub(crate) struct AnchorRoom {
    procs: Vec<Child>,
}

impl AnchorRoom {
    /// The peers' process ids (not the server's).
    pub(crate) fn peer_pids(&self) -> Vec<u32> {
        self.procs.iter().skip(1).map(Child::id).collect()
    }
}

impl Drop for AnchorRoom {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Builds the anchor (a no-op once built) and returns its binary.
fn binary() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no repository root")?;
    let target = root.join("target").join("anchors");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--quiet", "--manifest-path"])
        .arg(root.join("anchors/matchbox/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("cannot run cargo to build the matchbox anchor: {e}"))?;
    if !status.success() {
        return Err("the matchbox anchor did not build (cargo build in anchors/matchbox)".into());
    }
    Ok(target.join("release").join("matchbox-anchor"))
}

/// Starts `binary` with `args`; its stdout lines arrive on the receiver.
fn spawn(binary: &Path, args: &[&str]) -> Result<(Child, Receiver<String>), String> {
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, rx))
}

/// Waits (until `deadline`) for a line satisfying `want`; the line.
fn wait_line(rx: &Receiver<String>, deadline: Instant, want: impl Fn(&str) -> bool) -> Option<String> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// A matchbox server and `n` peers in one room on loopback, every peer connected to every
/// other; the time from the first peer's start until the last reports them all.
pub(crate) fn matchbox_room(n: usize) -> Result<(AnchorRoom, Duration), String> {
    let binary = binary()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (server, lines) = spawn(&binary, &["server"])?;
    let mut room = AnchorRoom { procs: vec![server] };
    let listening =
        wait_line(&lines, deadline, |l| l.starts_with("LISTENING ")).ok_or("the matchbox server did not start")?;
    let url = format!("ws://{}/idle", listening.trim_start_matches("LISTENING "));
    let t = Instant::now();
    let mut peers = Vec::new();
    for _ in 0..n {
        let (child, lines) = spawn(&binary, &["peer", &url])?;
        room.procs.push(child);
        peers.push(lines);
    }
    let full = format!("PEERS {}", n - 1);
    for (i, lines) in peers.iter().enumerate() {
        wait_line(lines, deadline, |l| l == full).ok_or(format!("matchbox peer {i} did not reach {full} in 120 s"))?;
    }
    Ok((room, t.elapsed()))
}
