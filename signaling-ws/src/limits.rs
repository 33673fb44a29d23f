//! Connection caps of the server: at most `max_connections` open at once, and at most
//! `max_connections_per_address` from one source address. An excess connection gets the WebSocket
//! upgrade and then a close frame saying why (code 1013, "try again later"), so a client learns
//! the reason instead of seeing a reset.

use crate::server::ServerConfig;
use futures::SinkExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Refusals being told at once; beyond this, excess connections are dropped without a reason.
pub(crate) const MAX_REFUSING: usize = 64;
/// Longest a refusal may take (upgrade and close frame).
const REFUSE_WITHIN: Duration = Duration::from_secs(2);

/// Open connections per source address.
#[derive(Default, Clone)]
pub(crate) struct Addresses(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One admitted connection's place in [`Addresses`]; given back when dropped.
pub(crate) struct Slot {
    addresses: Addresses,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.addresses.0.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl Addresses {
    /// Admits a connection from `ip` while `open` connections are open, or says why not.
    pub(crate) fn admit(&self, ip: IpAddr, open: usize, config: &ServerConfig) -> Result<Slot, &'static str> {
        if open >= config.max_connections {
            return Err("server full: too many connections");
        }
        let mut map = self.0.lock().map_err(|_| "server error")?;
        let n = map.entry(ip).or_default();
        if *n >= config.max_connections_per_address {
            return Err("too many connections from your address");
        }
        *n += 1;
        Ok(Slot { addresses: self.clone(), ip })
    }
}

/// Upgrades `tcp` and closes it at once with `why` (bounded in time).
pub(crate) async fn refuse(tcp: TcpStream, why: &'static str) {
    let _ = tokio::time::timeout(REFUSE_WITHIN, async {
        if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
            let frame = CloseFrame { code: CloseCode::Again, reason: why.into() };
            let _ = ws.send(Message::Close(Some(frame))).await;
            let _ = ws.close(None).await;
        }
    })
    .await;
}
