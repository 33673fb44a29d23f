//! mesh-train: the job kind that ships, a small CPU "training" for trying the job flow without a
//! GPU. It reads a data file (any bytes), runs `--epochs` epochs, prints one progress line per
//! epoch, and writes `model.txt` (a digest of the data and the final loss) into `--out`.
//!
//! On SIGINT it writes `checkpoint.txt` with the epoch reached and exits 130, as a trainer that
//! saves its work does; on SIGTERM it exits 143 at once. With `--stubborn` it notes SIGINT and
//! SIGTERM and keeps going (to show a worker's SIGKILL after the grace period).

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(about = "A small CPU training job: epochs over a data file, a model file at the end")]
struct Args {
    /// The training data (any file).
    #[arg(long)]
    data: PathBuf,
    /// Epochs to run.
    #[arg(long, default_value_t = 5)]
    epochs: u32,
    /// Milliseconds each epoch takes at least.
    #[arg(long, default_value_t = 200)]
    epoch_ms: u64,
    /// Where model.txt (and checkpoint.txt) go.
    #[arg(long)]
    out: PathBuf,
    /// Note SIGINT and SIGTERM and keep going.
    #[arg(long)]
    stubborn: bool,
}

/// A digest of the data: FNV-1a over its bytes, and their count.
fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

fn write(path: PathBuf, text: String) -> Result<(), String> {
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

async fn train(args: Args) -> Result<ExitCode, String> {
    let data = std::fs::read(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let (mut int, mut term) = (
        signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
        signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
    );
    let sum = digest(&data);
    println!(
        "training on {} ({} bytes, digest {sum:016x}) for {} epochs",
        args.data.display(),
        data.len(),
        args.epochs
    );
    let mut loss = 1.0f64;
    for epoch in 1..=args.epochs {
        let tick = tokio::time::sleep(Duration::from_millis(args.epoch_ms));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                _ = int.recv() => {
                    write(args.out.join("checkpoint.txt"), format!("epoch {}\nloss {loss:.6}\n", epoch - 1))?;
                    println!("SIGINT: checkpoint saved at epoch {}", epoch - 1);
                    if !args.stubborn {
                        return Ok(ExitCode::from(130));
                    }
                }
                _ = term.recv() => {
                    println!("SIGTERM received");
                    if !args.stubborn {
                        return Ok(ExitCode::from(143));
                    }
                }
            }
        }
        // A loss that falls with the epochs and depends on the data.
        loss *= 0.5 + (sum.rotate_left(epoch) % 1000) as f64 / 4000.0;
        println!("epoch {epoch}/{} loss {loss:.6}", args.epochs);
        let _ = std::io::stdout().flush();
    }
    write(
        args.out.join("model.txt"),
        format!("data_bytes {}\ndata_digest {sum:016x}\nepochs {}\nloss {loss:.6}\n", data.len(), args.epochs),
    )?;
    println!("model written to {}", args.out.join("model.txt").display());
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match train(Args::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mesh-train: {err}");
            ExitCode::FAILURE
        }
    }
}
