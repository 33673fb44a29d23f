//! `mesh-bench transfer --lab SPEC`: throughput between two lab hosts over an emulated WAN, one
//! stream over the mesh beside a plain TCP stream between the same hosts in the same run, and a
//! verified fetch whose receiver's process is SIGKILLed half way and started again.
//!
//! The bench runs `mesh-signal` on lab host 0 and itself (`mesh-bench lab-peer`) on hosts 1 and 2.

use crate::lines::LineProc;
use mesh_core::transfer::{BlobId, Progress};
use mesh_core::{Incoming, LinkStatus, MeshConfig, MeshNode, PeerId};
use mesh_examples::labroom::{WanSpec, PORT};
use mesh_netlab::{sibling_binary, Lab};
use signaling_ws::loadgen::ServerProcess;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The TCP port of the baseline stream on the sink's host.
const TCP_PORT: u16 = 9000;
const WAIT: Duration = Duration::from_secs(900);

/// What a `lab-peer` process does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub(crate) enum Role {
    /// Receives the TCP and the mesh stream, and answers when each is complete.
    Sink,
    /// Sends `--mib` MiB over TCP, then over one mesh stream, and prints both rates.
    Source,
    /// Serves `--file` as a blob and prints its id.
    Provider,
    /// Fetches `--blob` from the provider into `--dest`, printing progress.
    Fetcher,
}

/// Options of `mesh-bench lab-peer` (run by `mesh-bench transfer --lab` inside the lab).
#[derive(clap::Args, Debug)]
pub(crate) struct PeerArgs {
    #[arg(long, value_enum)]
    role: Role,
    /// The signaling server's URL.
    #[arg(long)]
    signal: String,
    /// MiB to send (source).
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// The sink's address (source).
    #[arg(long)]
    sink_ip: Option<String>,
    /// The blob to fetch (fetcher).
    #[arg(long)]
    blob: Option<String>,
    /// The file to serve (provider) or write (fetcher).
    #[arg(long)]
    file: Option<PathBuf>,
}

/// Joins room `lab-xfer` as worker `name` through the server at `url`.
async fn join(url: &str, name: &str) -> Result<(MeshNode, mesh_examples::stack::Stack), String> {
    let path = std::env::temp_dir().join(format!("mesh-lab-peer-{}.toml", std::process::id()));
    std::fs::write(&path, mesh_examples::procs::worker_toml("lab-xfer", url, "0.0.0.0:0", ""))
        .map_err(|e| e.to_string())?;
    let base = MeshConfig::load(Some(&path)).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    let stack = mesh_examples::stack::Stack::new(base?).await?;
    Ok((stack.start(name).await?, stack))
}

/// One `lab-peer` process: its role until done (source, fetcher) or killed (sink, provider).
pub(crate) async fn peer(args: PeerArgs) -> Result<(), String> {
    let name = format!("{:?}", args.role).to_lowercase();
    let (node, _stack) = join(&args.signal, &name).await?;
    match args.role {
        Role::Sink => sink(&node).await,
        Role::Source => source(&node, &args).await,
        Role::Provider => {
            let id = node.provide(args.file.as_ref().ok_or("--file")?).await.map_err(|e| e.to_string())?;
            println!("blob {id}");
            std::future::pending().await
        }
        Role::Fetcher => fetcher(&node, &args).await,
    }
}

/// Reads everything from `r`, returning the byte count.
async fn drain(mut r: impl tokio::io::AsyncRead + Unpin) -> std::io::Result<u64> {
    let (mut buf, mut total) = (vec![0u8; 1 << 20], 0u64);
    loop {
        match r.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

async fn sink(node: &MeshNode) -> Result<(), String> {
    let tcp = tokio::net::TcpListener::bind(("0.0.0.0", TCP_PORT)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            let total = drain(&mut conn).await.unwrap_or(0);
            let _ = conn.write_all(&total.to_be_bytes()).await;
        }
    });
    let mut streams = node.listen("bench/stream").map_err(|e| e.to_string())?;
    let mut done = node.listen("bench/done").map_err(|e| e.to_string())?;
    println!("ready");
    loop {
        let Some(Incoming::Stream(s)) = streams.recv().await else { return Err("no stream".into()) };
        let total = drain(s).await.unwrap_or(0);
        let Some(Incoming::Request(req)) = done.recv().await else { return Err("no request".into()) };
        req.respond(total.to_be_bytes().to_vec()).await;
    }
}

async fn source(node: &MeshNode, args: &PeerArgs) -> Result<(), String> {
    let sink_ip = args.sink_ip.as_deref().ok_or("--sink-ip")?;
    let sink = PeerId::new("sink").map_err(|e| e.to_string())?;
    node.wait_links(1, Duration::from_secs(60)).await.map_err(|e| e.to_string())?;
    let block = vec![7u8; 1 << 20];
    let bytes = (args.mib as u64) << 20;

    let t = Instant::now();
    let mut conn = tokio::net::TcpStream::connect((sink_ip, TCP_PORT)).await.map_err(|e| e.to_string())?;
    for _ in 0..args.mib {
        conn.write_all(&block).await.map_err(|e| e.to_string())?;
    }
    conn.shutdown().await.map_err(|e| e.to_string())?;
    let mut got = [0u8; 8];
    conn.read_exact(&mut got).await.map_err(|e| e.to_string())?;
    if u64::from_be_bytes(got) != bytes {
        return Err("the TCP stream came short".into());
    }
    println!("tcp {}", args.mib as f64 / t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut out = node.open_stream(&sink, "bench/stream").map_err(|e| e.to_string())?;
    for _ in 0..args.mib {
        out.write_all(&block).await.map_err(|e| e.to_string())?;
    }
    out.shutdown().await.map_err(|e| e.to_string())?;
    let answer = node.request(&sink, "bench/done", Vec::new(), WAIT).await.map_err(|e| e.to_string())?;
    if answer.as_ref() != bytes.to_be_bytes() {
        return Err("the mesh stream came short".into());
    }
    println!("stream {}", args.mib as f64 / t.elapsed().as_secs_f64());
    Ok(())
}

async fn fetcher(node: &MeshNode, args: &PeerArgs) -> Result<(), String> {
    let id: BlobId = args.blob.as_deref().ok_or("--blob")?.parse()?;
    let dest = args.file.as_ref().ok_or("--file")?;
    let provider = PeerId::new("provider").map_err(|e| e.to_string())?;
    let linked =
        |s: &mesh_core::Snapshot| s.health.peers.iter().any(|p| p.peer == provider && p.state == LinkStatus::Up);
    node.wait_for(Duration::from_secs(60), linked).await.map_err(|e| e.to_string())?;
    let (progress, mut watch) = tokio::sync::watch::channel(Progress::default());
    let t = Instant::now();
    let fetch = node.fetch(&provider, &id, dest, Some(&progress));
    let report = async {
        while watch.changed().await.is_ok() {
            let p = *watch.borrow_and_update();
            println!("progress {} {}", p.done, p.total);
        }
    };
    let report = tokio::select! { r = fetch => r.map_err(|e| e.to_string())?, _ = report => return Err("progress ended".into()) };
    println!(
        "fetched {} resumed {} size {} secs {} rss {}",
        report.fetched,
        report.resumed,
        report.size,
        t.elapsed().as_secs_f64(),
        crate::transfer::peak_rss_of("self")
    );
    Ok(())
}

/// Starts `mesh-bench lab-peer ARGS` on lab host `host`.
fn lab_peer(lab: &Lab, host: usize, args: &[String]) -> Result<LineProc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = lab.command(host, &exe);
    command.arg("lab-peer").args(args);
    LineProc::spawn(command, false)
}

fn num(s: &str) -> Result<f64, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

/// Per trial in a fresh lab: TCP and one mesh stream (MiB/s, and the stream as % of TCP); then
/// one fetch with its receiver SIGKILLed half way: the share of the file sent again.
pub(crate) fn run(mib: usize, trials: usize, wan: WanSpec) -> Result<(), String> {
    use crate::Samples;
    let (mut tcp, mut stream, mut share, mut again) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let (mut fetch_rate, mut rss_sender, mut rss_receiver) =
        (Samples::default(), Samples::default(), Samples::default());
    let dir = std::env::temp_dir().join(format!("mesh-bench-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("blob");
    mesh_examples::blob::write_pattern(&src, mib).map_err(|e| e.to_string())?;
    let result = (|| {
        for _ in 0..trials {
            let lab = Lab::new(3)?;
            wan.apply(&lab)?;
            let server_ip = lab.host(0).ip;
            let signal = sibling_binary("mesh-signal", "signaling-ws")?;
            let _server = ServerProcess::spawn_command(lab.command(0, &signal), &format!("{server_ip}:{PORT}"))?;
            let url = format!("ws://{server_ip}:{PORT}");
            let base = |role: &str| {
                vec!["--role".into(), role.into(), "--signal".into(), url.clone(), "--mib".into(), mib.to_string()]
            };

            let sink = lab_peer(&lab, 2, &base("sink"))?;
            sink.expect("ready", WAIT)?;
            let mut source_args = base("source");
            source_args.extend(["--sink-ip".into(), lab.host(2).ip.to_string()]);
            let source = lab_peer(&lab, 1, &source_args)?;
            let t = num(&source.expect("tcp", WAIT)?)?;
            let s = num(&source.expect("stream", WAIT)?)?;
            tcp.push(t);
            stream.push(s);
            share.push(100.0 * s / t);
            drop((source, sink));

            let mut provider_args = base("provider");
            provider_args.extend(["--file".into(), src.to_string_lossy().into_owned()]);
            let provider = lab_peer(&lab, 1, &provider_args)?;
            let blob = provider.expect("blob", WAIT)?;
            let dest = dir.join("copy");
            let _ = std::fs::remove_file(&dest);
            let mut fetch_args = base("fetcher");
            fetch_args.extend(["--blob".into(), blob, "--file".into(), dest.to_string_lossy().into_owned()]);
            let first = lab_peer(&lab, 2, &fetch_args)?;
            // Verified bytes when the first run dies; the second run's bytes over the link beyond
            // what was missing then are the ones sent again.
            let size = ((mib as u64) << 20) as f64;
            let mut held = 0.0;
            while held < size / 2.0 {
                held = num(first.expect("progress", WAIT)?.split(' ').next().unwrap_or(""))?;
            }
            first.kill();
            let second = lab_peer(&lab, 2, &fetch_args)?;
            // `F resumed R size S secs T rss M`
            let report = second.expect("fetched", WAIT)?;
            let words: Vec<&str> = report.split(' ').collect();
            let field = |i: usize| num(words.get(i).copied().unwrap_or(""));
            let fetched = field(0)?;
            fetch_rate.push(fetched / 1048576.0 / field(6)?);
            rss_receiver.push(field(8)?);
            rss_sender.push(crate::transfer::peak_rss_of(&provider.child.id().to_string()));
            again.push(100.0 * (fetched - (size - held)).max(0.0) / size);
            if !same_file(&src, &dest)? {
                return Err("the fetched copy differs from the source".into());
            }
            drop(provider);
        }
        Ok::<_, String>(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let label = format!("{mib} MiB host 1 -> host 2{}", crate::procs::lab_label(Some(wan)));
    println!("{label}: plain TCP stream (MiB/s)        min/median/max {}  trials {trials}", tcp.summary(1));
    println!("{label}: one mesh stream (MiB/s)         min/median/max {}", stream.summary(1));
    println!("{label}: one mesh stream: min/median/max {} % of TCP in the same run", share.summary(0));
    println!(
        "{label}: fetch, receiver SIGKILLed at half and restarted: verified chunks fetched again min/median/max {} % of the file",
        again.summary(1)
    );
    println!("{label}: the restarted fetch (MiB/s)  min/median/max {}", fetch_rate.summary(1));
    println!(
        "{label}: peak RSS of the sending process (MiB)  min/median/max {}; of the restarted receiving process {}",
        rss_sender.summary(0),
        rss_receiver.summary(0)
    );
    Ok(())
}

/// Whether two files hold the same bytes.
fn same_file(a: &Path, b: &Path) -> Result<bool, String> {
    use std::io::Read;
    let open =
        |p: &Path| std::fs::File::open(p).map(std::io::BufReader::new).map_err(|e| format!("{}: {e}", p.display()));
    let (mut a, mut b) = (open(a)?, open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).map_err(|e| e.to_string())?;
        let mut filled = 0;
        while filled < n {
            match b.read(&mut y[filled..n]).map_err(|e| e.to_string())? {
                0 => return Ok(false),
                m => filled += m,
            }
        }
        if n == 0 {
            return Ok(b.read(&mut y).map_err(|e| e.to_string())? == 0);
        }
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}
