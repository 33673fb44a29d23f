//! mesh-bench: measurements of the mesh on this machine, one line per case with
//! min / median / max over trials. Subcommands: `link` (one WebRTC link), `formation` and
//! `messages` and `transfer` (whole meshes in one process), `failover` and `idle` (worker processes),
//! `signaling` (the `mesh-signal` server under load), `sim` (seeded failure schedules in the
//! deterministic simulator), `job` (the job flow: mesh-signal, mesh-worker and mesh-job processes).

mod anchor;
mod breakdown;
mod floor;
mod job;
mod labxfer;
mod lines;
mod link;
mod mesh;
mod procs;
mod restart;
mod signaling;
mod sim;
mod transfer;

use clap::{Parser, Subcommand};
use mesh_examples::cli::{exit, init_logging};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the worker mesh")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// One WebRTC link on loopback: time to open, message latency, throughput.
    Link(link::LinkArgs),
    /// Time to a full mesh of N workers in one process.
    Formation(mesh::FormationArgs),
    /// The admin's process is killed, frozen or leaves: time to a verified new admin, reconnects.
    Failover(procs::FailoverArgs),
    /// CPU per idle worker process in a formed mesh.
    Idle(procs::IdleArgs),
    /// The signaling server is SIGKILLed and comes back: time until a newcomer is linked to all.
    Restart(restart::RestartArgs),
    /// Two workers over the mesh: message latency and throughput.
    Messages(mesh::MessagesArgs),
    /// The signaling server under rooms x peers connections.
    Signaling(signaling::SignalingArgs),
    /// A verified transfer between two workers, beside the raw link in the same run.
    Transfer(transfer::TransferArgs),
    /// The job flow: `mesh-job run` against two workers, beside the same command run locally.
    Job(job::JobArgs),
    /// One process of `transfer --lab` inside the lab (run by the bench itself).
    #[command(hide = true)]
    LabPeer(labxfer::PeerArgs),
    /// One process of `idle --floor`'s sockets or stack part (run by the bench itself).
    #[command(hide = true)]
    FloorPeer(floor::PeerArgs),
    /// Seeded failure schedules in the deterministic simulator: invariants checked, failures.
    Sim(sim::SimArgs),
}

/// Samples of one case, reported as min / median / max.
#[derive(Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// Every sample in the order taken, rounded to whole numbers.
    pub fn runs(&self) -> String {
        self.0.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" ")
    }

    /// `min/median/max` with `digits` decimals, or `-` without samples.
    pub fn summary(&self, digits: usize) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let v = self.sorted();
        format!("{:.d$} / {:.d$} / {:.d$}", v[0], self.median(), v[v.len() - 1], d = digits)
    }

    /// The median (the upper one of an even count), or NaN without samples.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
}

/// The `q` quantile of unsorted samples.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    mesh_core::timeline::quantile(samples, q).unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !matches!(args.bench, Bench::Sim(_) | Bench::FloorPeer(_)) {
        init_logging(); // the simulator's nodes would log millions of lines
    }
    let result = match args.bench {
        Bench::Link(a) => link::run(a).await,
        Bench::Formation(a) => mesh::formation(a).await,
        Bench::Failover(a) => tokio::task::block_in_place(|| procs::failover(a)),
        Bench::Idle(a) => tokio::task::block_in_place(|| procs::idle(a)),
        Bench::Restart(a) => tokio::task::block_in_place(|| restart::run(a)),
        Bench::Messages(a) => mesh::messages(a).await,
        Bench::Signaling(a) => signaling::run(a).await,
        Bench::Transfer(a) => transfer::run(a).await,
        Bench::Job(a) => tokio::task::block_in_place(|| job::run(a)),
        Bench::LabPeer(a) => labxfer::peer(a).await,
        Bench::FloorPeer(a) => tokio::task::block_in_place(|| floor::peer(a)),
        Bench::Sim(a) => tokio::task::block_in_place(|| sim::run(a)),
    };
    exit("mesh-bench", result)
}
