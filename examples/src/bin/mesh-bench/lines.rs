//! A child process whose output lines the bench reads as they come, each with the time it
//! arrived; killed (SIGKILL) and reaped on drop.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One line: when it arrived, whether on stderr, and the text.
pub(crate) type Line = (Instant, bool, String);

/// A child process and its lines.
pub(crate) struct LineProc {
    pub(crate) child: Child,
    lines: mpsc::Receiver<Line>,
}

impl LineProc {
    /// Starts `command` with stdout (and stderr, if `stderr`) read line by line.
    pub(crate) fn spawn(mut command: Command, stderr: bool) -> Result<Self, String> {
        command.stdout(Stdio::piped());
        if stderr {
            command.stderr(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let (tx, lines) = mpsc::channel();
        let mut pipes: Vec<(Box<dyn std::io::Read + Send>, bool)> = Vec::new();
        if let Some(out) = child.stdout.take() {
            pipes.push((Box::new(out), false));
        }
        if let Some(err) = child.stderr.take() {
            pipes.push((Box::new(err), true));
        }
        for (pipe, is_err) in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((Instant::now(), is_err, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self { child, lines })
    }

    /// The next line within `wait`; `None` when the process closed its output or time is up.
    pub(crate) fn next(&self, wait: Duration) -> Option<Line> {
        self.lines.recv_timeout(wait).ok()
    }

    /// The rest of the next stdout line that starts with `word`, within `wait`.
    pub(crate) fn expect(&self, word: &str, wait: Duration) -> Result<String, String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, is_err, line) = self.next(left).ok_or(format!("no `{word}` line"))?;
            if let Some(rest) = line.strip_prefix(word).filter(|_| !is_err) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    /// SIGKILL, then reaped.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
