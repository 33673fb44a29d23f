//! `matchbox-anchor server`: a matchbox full-mesh signaling server on a free loopback port; prints
//! `LISTENING <addr>`. `matchbox-anchor peer <room url>`: one matchbox peer (one reliable channel)
//! that joins the room and prints `PEERS <n>` whenever its number of connected peers changes.
//! Both run until killed. `mesh-bench idle --anchor` runs a room of them beside our workers.

use futures::StreamExt;
use matchbox_signaling::SignalingServer;
use matchbox_socket::{PeerState, WebRtcSocket};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("server"), None) => server().await,
        (Some("peer"), Some(url)) => peer(url).await,
        _ => Err("usage: matchbox-anchor server | matchbox-anchor peer <room url>".to_string()),
    };
    if let Err(err) = result {
        eprintln!("matchbox-anchor: {err}");
        std::process::exit(1);
    }
}

async fn server() -> Result<(), String> {
    let mut server = SignalingServer::full_mesh_builder(([127, 0, 0, 1], 0)).build();
    let addr = server.bind().map_err(|e| e.to_string())?;
    println!("LISTENING {addr}");
    server.serve().await.map_err(|e| e.to_string())
}

async fn peer(url: &str) -> Result<(), String> {
    let (mut socket, message_loop) = WebRtcSocket::new_reliable(url);
    let message_loop = tokio::spawn(message_loop);
    let mut connected = 0usize;
    while let Some((_, state)) = socket.next().await {
        match state {
            PeerState::Connected => connected += 1,
            PeerState::Disconnected => connected = connected.saturating_sub(1),
        }
        println!("PEERS {connected}");
    }
    message_loop.abort();
    Err("the socket closed".to_string())
}
