//! `mesh-bench transfer`: a verified transfer between two workers of a mesh in this process,
//! beside the raw WebRTC link's throughput measured in the same run.

use crate::link::raw_link_mib_s;
use crate::mesh::{leave_all, start_all, wait_full, StackArgs};
use crate::Samples;
use std::time::Instant;

/// Options of `mesh-bench transfer`.
#[derive(clap::Args, Debug)]
pub(crate) struct TransferArgs {
    /// Trials.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// MiB per transfer.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    #[command(flatten)]
    stack: StackArgs,
}

/// Per trial: the raw link, then `fetch` of a file of the same size between two workers.
pub(crate) async fn run(args: TransferArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("mesh-bench-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("blob");
    let data: Vec<u8> =
        (0..args.mib * 1024 * 1024).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]).collect();
    std::fs::write(&src, &data).map_err(|e| e.to_string())?;
    drop(data);
    let (mut raw, mut fetched, mut share) = (Samples::default(), Samples::default(), Samples::default());
    let result = async {
        for _ in 0..args.trials {
            let baseline = raw_link_mib_s(args.mib).await?;
            let stack = args.stack.stack().await?;
            let nodes = start_all(&stack, 2).await?;
            wait_full(&nodes).await?;
            let id = nodes[0].provide(&src).await.map_err(|e| e.to_string())?;
            let dest = dir.join("copy");
            let _ = std::fs::remove_file(&dest);
            let t = Instant::now();
            let report = nodes[1].fetch(nodes[0].peer_id(), &id, &dest, None).await.map_err(|e| e.to_string())?;
            let mib_s = args.mib as f64 / t.elapsed().as_secs_f64();
            if report.fetched != (args.mib * 1024 * 1024) as u64 {
                return Err(format!("fetched {} bytes", report.fetched));
            }
            raw.push(baseline);
            fetched.push(mib_s);
            share.push(100.0 * mib_s / baseline);
            leave_all(nodes).await;
            stack.shutdown().await;
        }
        Ok::<_, String>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let label = format!("transfer w0 -> w1, {} MiB ({})", args.mib, args.stack.label());
    println!("raw link, 64 KiB messages (MiB/s)        min/median/max {}  trials {}", raw.summary(1), args.trials);
    println!("{label}: fetch, verified (MiB/s)  min/median/max {}", fetched.summary(1));
    println!("{label}: min/median/max {} % of the raw link in the same run", share.summary(0));
    Ok(())
}
