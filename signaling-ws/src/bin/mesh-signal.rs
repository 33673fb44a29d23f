//! mesh-signal: the signaling server.
//! `mesh-signal --listen 127.0.0.1:8765 [--config FILE] [--redis redis://HOST:PORT]`.
//! Configuration: defaults, then the TOML file, then `MESH_SIGNAL_*` variables, then the flags.
//! With Redis (`--redis`, `redis_url`, `MESH_SIGNAL_REDIS_URL`) several instances serve the
//! same rooms. Stops cleanly on SIGINT or SIGTERM.

use clap::Parser;
use figment::providers::{Env, Format, Serialized, Toml};
use signaling_ws::{ServerConfig, SignalingServer};
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "WebSocket signaling server of the worker mesh")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: std::net::SocketAddr,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Redis shared by a cluster of instances (`redis://HOST:PORT`); without it, rooms live in
    /// this process.
    #[arg(long)]
    redis: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut figment = figment::Figment::from(Serialized::defaults(ServerConfig::default()));
    if let Some(file) = &args.config {
        figment = figment.merge(Toml::file_exact(file));
    }
    let config: ServerConfig = match figment.merge(Env::prefixed("MESH_SIGNAL_")).extract::<ServerConfig>() {
        Ok(c) => ServerConfig { redis_url: args.redis.clone().or(c.redis_url.clone()), ..c },
        Err(e) => {
            eprintln!("mesh-signal: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match SignalingServer::bind(args.listen, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mesh-signal: cannot start on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    say(&format!("mesh-signal listening on {}", server.url()));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mesh-signal: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    say("mesh-signal: shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Prints a status line; a closed stdout (the launcher stopped reading) is not an error.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
