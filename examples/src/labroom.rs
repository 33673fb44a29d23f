//! A room of real processes in the network lab: `mesh-signal` on lab host 0 and `mesh-worker`s
//! on chosen hosts, for the lab tests and `mesh-bench --lab`. Dropped in order: the processes
//! first, then the lab and everything in it.

use crate::procs::{worker_toml, WorkerProc};
use mesh_netlab::{sibling_binary, Lab};
use signaling_ws::loadgen::ServerProcess;
use std::path::PathBuf;
use std::time::Duration;

/// The port `mesh-signal` listens on in the lab.
pub const PORT: u16 = 8765;

/// A server and workers `w0..` in a lab.
pub struct LabRoom {
    /// The workers, `w{i}` at index `i`.
    pub workers: Vec<WorkerProc>,
    /// `mesh-signal` on host 0 (`None` while [`LabRoom::restart_server`] has it down).
    server: Option<ServerProcess>,
    config: PathBuf,
    hosts: Vec<usize>,
    /// Where each worker's JSON log with timeline marks goes (`w{i}.log`), if anywhere.
    timeline: Option<PathBuf>,
    /// When each worker was spawned, µs since the Unix epoch.
    pub spawned_us: Vec<u64>,
    /// The lab (dropped last).
    pub lab: Lab,
}

/// Latency and loss of a lab WAN, parsed from `rtt=80ms,jitter=10ms,loss=1%`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WanSpec {
    /// Round trip added between any two hosts (half at each receiver).
    pub rtt: Duration,
    /// Spread of each packet's added one-way delay (± half of it).
    pub jitter: Duration,
    /// Percent of packets each host drops as they arrive.
    pub loss_percent: u8,
}

impl std::str::FromStr for WanSpec {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut wan = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or(format!("`{part}`: expected key=value"))?;
            let ms =
                |v: &str| v.strip_suffix("ms").and_then(|n| n.trim().parse::<u64>().ok()).map(Duration::from_millis);
            match key.trim() {
                "rtt" => wan.rtt = ms(value).ok_or(format!("rtt: `{value}` is not like 80ms"))?,
                "jitter" => wan.jitter = ms(value).ok_or(format!("jitter: `{value}` is not like 10ms"))?,
                "loss" => {
                    wan.loss_percent = value
                        .strip_suffix('%')
                        .and_then(|n| n.trim().parse().ok())
                        .filter(|p| *p <= 100)
                        .ok_or(format!("loss: `{value}` is not like 1%"))?
                }
                other => return Err(format!("unknown lab setting `{other}` (rtt, jitter, loss)")),
            }
        }
        Ok(wan)
    }
}

impl WanSpec {
    /// Applies the WAN to every host of `lab`.
    pub fn apply(&self, lab: &Lab) -> Result<(), String> {
        if !self.rtt.is_zero() || !self.jitter.is_zero() {
            lab.set_wan(self.rtt / 2, self.jitter / 2)?;
        }
        let loss = self.loss_percent;
        lab.set_faults(|f| f.loss_percent = loss)
    }
}

impl LabRoom {
    /// The server on host 0 of `lab`, workers `w0..w{n-1}` on `hosts` (in order; later entries
    /// are for newcomers), `webrtc` extra lines in their `[webrtc]` section.
    pub fn on(lab: Lab, hosts: Vec<usize>, n: usize, webrtc: &str) -> Result<Self, String> {
        Self::logged(lab, hosts, n, webrtc, None)
    }

    /// [`LabRoom::on`], each worker logging its timeline marks as JSON to `timeline/w{i}.log`.
    pub fn logged(
        lab: Lab,
        hosts: Vec<usize>,
        n: usize,
        webrtc: &str,
        timeline: Option<PathBuf>,
    ) -> Result<Self, String> {
        let server_ip = lab.host(0).ip;
        let signal = sibling_binary("mesh-signal", "signaling-ws")?;
        let server = ServerProcess::spawn_command(lab.command(0, &signal), &format!("{server_ip}:{PORT}"))?;
        let config = std::env::temp_dir().join(format!("{}-worker.toml", lab.prefix()));
        let text = worker_toml("lab", &format!("ws://{server_ip}:{PORT}"), "0.0.0.0:0", webrtc);
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut room =
            Self { workers: Vec::new(), server: Some(server), config, hosts, timeline, spawned_us: Vec::new(), lab };
        for i in 0..n {
            room.start(i)?;
        }
        Ok(room)
    }

    /// Kills `mesh-signal` (SIGKILL, as in a crash), leaves it down for `outage`, and starts it
    /// again on the same address.
    pub fn restart_server(&mut self, outage: Duration) -> Result<(), String> {
        self.server = None;
        std::thread::sleep(outage); // the outage itself
        let signal = sibling_binary("mesh-signal", "signaling-ws")?;
        let addr = format!("{}:{PORT}", self.lab.host(0).ip);
        self.server = Some(ServerProcess::spawn_command(self.lab.command(0, &signal), &addr)?);
        Ok(())
    }

    /// Starts worker `w{i}` on its host.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        let worker = sibling_binary("mesh-worker", "mesh-examples")?;
        let host = *self.hosts.get(i).ok_or(format!("no lab host for w{i}"))?;
        let mut command = self.lab.command(host, &worker);
        if let Some(dir) = &self.timeline {
            let log = dir.join(format!("w{i}.log"));
            let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            // `LAB_RUST_LOG` widens the workers' filter for a closer look (e.g. `…,rtc=debug`).
            let filter = std::env::var("LAB_RUST_LOG").unwrap_or_else(|_| "warn,mesh_timeline=info".into());
            command.env("RUST_LOG", filter).env("MESH_LOG_FORMAT", "json").stderr(file);
        }
        self.spawned_us.push(mesh_core::timeline::unix_us());
        let proc = WorkerProc::spawn_command(command, &self.config, &format!("w{i}"))?;
        self.workers.push(proc);
        Ok(())
    }

    /// The lab host of worker `i`.
    pub fn host(&self, i: usize) -> usize {
        self.hosts[i]
    }

    /// Every worker.
    pub fn all(&self) -> Vec<&WorkerProc> {
        self.workers.iter().collect()
    }

    /// The workers at `idx`.
    pub fn some(&self, idx: &[usize]) -> Vec<&WorkerProc> {
        idx.iter().map(|i| &self.workers[*i]).collect()
    }

    /// The admin as worker 0 reports it.
    pub fn admin(&self) -> Option<String> {
        self.workers.first().and_then(|w| w.snapshot()["health"]["admin"].as_str().map(str::to_string))
    }
}

impl Drop for LabRoom {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wan_spec_reads_and_refuses_by_name() {
        let w: WanSpec = "rtt=80ms, jitter=10ms, loss=1%".parse().unwrap();
        assert_eq!((w.rtt, w.jitter, w.loss_percent), (Duration::from_millis(80), Duration::from_millis(10), 1));
        assert!("rtt=80".parse::<WanSpec>().unwrap_err().contains("rtt"));
        assert!("loss=101%".parse::<WanSpec>().unwrap_err().contains("loss"));
        assert!("delay=5ms".parse::<WanSpec>().unwrap_err().contains("delay"));
    }
}
