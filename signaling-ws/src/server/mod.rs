//! [`SignalingServer`]: accepts WebSocket connections, registers peers into rooms, forwards
//! signals within a room, and guards every connection (size limit, rate limit, keep-alive).
//! A bad connection gets an error frame or a close with a reason; nobody else notices.
//!
//! Laid out the mini-redis way: this file is the listener (bind, accept, shut down);
//! `config.rs` the settings; `connection.rs` one connection's life (upgrade, frames, limits,
//! close); `handlers.rs` what each client message does.

mod config;
mod connection;
mod handlers;

pub use config::{ServerConfig, IDLE_TIMEOUT};
use connection::Connection;

use crate::metrics::Metrics;
use crate::store::{MemoryRoomStore, RoomStore};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running signaling server.
pub struct SignalingServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
}

impl SignalingServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving; with `redis_url`, connects
    /// to the cluster's Redis first (an error if it cannot).
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> std::io::Result<Self> {
        let store: Arc<dyn RoomStore> = match &config.redis_url {
            Some(url) => crate::redis_store::RedisRoomStore::connect(url, Duration::from_millis(config.lease_ms))
                .await
                .map_err(std::io::Error::other)?,
            None => Arc::new(MemoryRoomStore::default()),
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let shared = Shared { config: Arc::new(config), store: store.clone(), metrics: metrics.clone() };
        let task = tokio::spawn(accept_loop(listener, shared, rx));
        tracing::info!(%addr, "signaling server listening");
        Ok(Self { addr, shutdown, task, store, metrics })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ws://` URL of this server.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The Prometheus text `GET /metrics` serves.
    pub async fn metrics(&self) -> String {
        self.metrics.render(self.store.room_count().await)
    }

    /// Rooms currently alive (in the whole cluster, with Redis).
    pub async fn room_count(&self) -> usize {
        self.store.room_count().await
    }

    /// Closes every connection (with a reason) and waits for all tasks, at most 5 s.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// What every connection shares.
#[derive(Clone)]
struct Shared {
    config: Arc<ServerConfig>,
    store: Arc<dyn RoomStore>,
    metrics: Arc<Metrics>,
}

async fn accept_loop(listener: TcpListener, shared: Shared, mut shutdown: watch::Receiver<bool>) {
    let config = shared.config.clone();
    let mut connections = JoinSet::new();
    let mut refusing = JoinSet::new();
    let addresses = crate::limits::Addresses::default();
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            Some(_) = refusing.join_next(), if !refusing.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let slot = match addresses.admit(remote.ip(), connections.len(), &config) {
                        Ok(slot) => slot,
                        Err(why) => {
                            tracing::warn!(%remote, why, "connection refused");
                            if refusing.len() < crate::limits::MAX_REFUSING {
                                refusing.spawn(crate::limits::refuse(tcp, why));
                            }
                            continue;
                        }
                    };
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("conn", id, %remote);
                    let lost = Arc::new(tokio::sync::Notify::new());
                    let (config, store, metrics) = (shared.config.clone(), shared.store.clone(), shared.metrics.clone());
                    let c = Connection { id, config, store, metrics, registered: None, key: None, proven: Default::default(), lost };
                    let run = c.run(tcp, shutdown.clone());
                    connections.spawn(tracing::Instrument::instrument(async move { run.await; drop(slot) }, span));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    while connections.join_next().await.is_some() {}
}
