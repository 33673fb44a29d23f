//! The demo's transfer step: one worker serves a file, another fetches it, verified chunk by
//! chunk, with its progress.

use crate::scenario::Demo;
use serde_json::json;
use std::time::Instant;

/// Size of the demo's file.
const MIB: usize = 4;

impl Demo<'_> {
    /// The first worker serves a 4 MiB file; the last one fetches it, with progress.
    pub(crate) async fn transfer(&mut self) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("mesh-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let result = self.transfer_in(&dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn transfer_in(&mut self, dir: &std::path::Path) -> Result<(), String> {
        let (src, dest) = (dir.join("model.bin"), dir.join("model.copy"));
        mesh_examples::blob::write_pattern(&src, MIB).map_err(|e| e.to_string())?;
        let (from, to) = (self.nodes.first().ok_or("no worker")?, self.nodes.last().ok_or("no worker")?);
        let id = from.provide(&src).await.map_err(|e| e.to_string())?;
        let (server, client) = (from.peer_id().clone(), to.peer_id().clone());
        self.out.step(
            "transfer",
            format!("{server} serves a {MIB} MiB file as blob {}…; {client} fetches it", &id.to_string()[..12]),
            json!({ "blob": id.to_string(), "from": server, "to": client }),
        );
        let (tx, mut rx) = tokio::sync::watch::channel(mesh_core::transfer::Progress::default());
        let out = self.out;
        let show = async {
            let mut shown = 0;
            while rx.changed().await.is_ok() {
                let p = *rx.borrow();
                let pct = (p.done * 100).checked_div(p.total).unwrap_or(100);
                if pct >= shown + 25 {
                    shown = pct - pct % 25;
                    out.progress(format!("{pct:>3} %  {:.1} MiB/s", p.rate / (1024.0 * 1024.0)));
                }
            }
        };
        let t = Instant::now();
        let fetch = async {
            let report = to.fetch(&server, &id, &dest, Some(&tx)).await;
            drop(tx);
            report
        };
        let (report, ()) = tokio::join!(fetch, show);
        let report = report.map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| e.to_string());
        let same = read(&dest)? == read(&src)?;
        let mib_s = (MIB as f64 / secs * 10.0).round() / 10.0;
        self.out.step(
            "transferred",
            format!(
                "{client} holds the file: {} bytes in {:.0} ms ({mib_s} MiB/s), every chunk verified",
                report.size,
                secs * 1000.0
            ),
            json!({ "bytes": report.size, "mib_s": mib_s, "same": same }),
        );
        self.summary.insert("transfer_verified", json!(same && report.fetched == report.size));
        Ok(())
    }
}
