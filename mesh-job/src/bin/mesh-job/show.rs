//! What mesh-job prints: progress bars, exit statuses, the room's jobs.

use mesh_core::{MeshNode, RegistryFilter};
use mesh_job::client;
use mesh_job::wire::{Answer, Ask, JobState};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress bars on stderr: redrawn in place on a terminal, every quarter otherwise.
pub(crate) struct Bars {
    tty: bool,
    drawn: bool,
    last: Option<(String, u64)>,
    /// When the current bar began, and its bytes then (its rate counts from there).
    started: (Instant, u64),
}

impl Bars {
    pub(crate) fn new() -> Self {
        Self { tty: std::io::stderr().is_terminal(), drawn: false, last: None, started: (Instant::now(), 0) }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }

    /// A log line (stderr when `err`), above the bar.
    pub(crate) fn line(&mut self, text: &str, err: bool) {
        self.clear();
        if err {
            eprintln!("{text}");
        } else {
            println!("{text}");
            let _ = std::io::stdout().flush();
        }
    }

    /// `what` is at `done` of `total` bytes.
    pub(crate) fn bar(&mut self, what: &str, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let quarter = pct / 25;
        let fresh = self.last.as_ref().is_none_or(|(w, _)| w != what);
        if fresh {
            self.started = (Instant::now(), done);
        }
        if !self.tty && !fresh && self.last.as_ref().is_some_and(|(_, q)| *q == quarter) {
            return;
        }
        self.last = Some((what.to_string(), quarter));
        let secs = self.started.0.elapsed().as_secs_f64();
        let rate = match secs > 0.2 {
            true => format!("{:.1} MiB/s", done.saturating_sub(self.started.1) as f64 / secs / 1048576.0),
            false => "-".to_string(),
        };
        let width = 30;
        let filled = (pct as usize * width / 100).min(width);
        let text = format!(
            "{what} [{}{}] {pct:>3}%  {:.1}/{:.1} MiB  {rate}",
            "#".repeat(filled),
            " ".repeat(width - filled),
            done as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        if self.tty {
            eprint!("\r\x1b[2K{text}");
            self.drawn = done < total;
            if done >= total {
                eprintln!();
            }
        } else {
            eprintln!("{text}");
        }
    }
}

/// A job's end in words.
pub(crate) fn describe(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("with status {c}"),
        (None, Some(s)) => format!("on signal {s}"),
        _ => "(no status)".into(),
    }
}

/// The shell's convention: the exit code, or 128 + the signal.
pub(crate) fn exit_code(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// A state in a few words.
pub(crate) fn state_words(state: &JobState) -> String {
    match state {
        JobState::Uploading { done, total } => {
            format!("uploading {}%", if *total == 0 { 100 } else { done * 100 / total })
        }
        JobState::Running => "running".into(),
        JobState::Exited { code, signal, .. } => format!("exited {}", describe(*code, *signal)),
        JobState::Failed { reason } => format!("failed: {reason}"),
    }
}

/// `mesh-job list`: every worker's jobs.
pub(crate) async fn list(node: &MeshNode) -> Result<u8, String> {
    let page = node.query_registry(RegistryFilter::default(), client::ASK_TIMEOUT).await.map_err(|e| e.to_string())?;
    println!("{:<16} {:<10} {:<14} {:<20} {:>6}  state", "job", "kind", "worker", "owner", "lines");
    let mut unreachable = Vec::new();
    for worker in page.workers.iter().filter(|w| w.record.metadata.contains_key("jobs")) {
        let peer = &worker.peer;
        let listed = async {
            node.connect(peer, std::time::Duration::from_secs(20)).await.map_err(|e| e.to_string())?;
            client::ask(node, peer, &Ask::List, client::ASK_TIMEOUT).await.map_err(|e| e.to_string())
        };
        match listed.await {
            Ok(Answer::Listed { jobs }) => {
                for j in jobs {
                    let owner = j.owner.chars().take(20).collect::<String>();
                    println!(
                        "{:<16} {:<10} {:<14} {:<20} {:>6}  {}",
                        j.job,
                        j.kind,
                        peer,
                        owner,
                        j.lines,
                        state_words(&j.state)
                    );
                }
            }
            Ok(other) => unreachable.push(format!("{peer}: odd answer {other:?}")),
            Err(err) => unreachable.push(format!("{peer}: {err}")),
        }
        let _ = node.disconnect(peer).await;
    }
    for u in &unreachable {
        eprintln!("mesh-job: not listed: {u}");
    }
    Ok(0)
}
