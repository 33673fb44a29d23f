//! Cross-plugin integration tests of the worker mesh live in `tests/tests/`. This library holds
//! the helpers several of them share: a rogue member that links to `w0` by hand, and a wait for
//! its peer to have read everything sent.

use mesh_core::{Identity, Inbound, LinkEvent, LinkHandle, PeerId, Role, RoomId, SessionId, Signal, Signaler};
use mesh_core::{SignalerContext, SignalingEvent, Transport, WorkerRecord};
use mesh_examples::stack::Stack;
use std::sync::Arc;
use std::time::Duration;

/// How long a rogue's link has to open.
const WAIT: Duration = Duration::from_secs(60);

/// A rogue member of room `real`: registered over the real server with a key of its own, its
/// WebRTC attempt to `w0` under way.
pub struct Rogue {
    /// The attempt (the link once it opened).
    pub link: LinkHandle,
    /// Its registration at the server (it lasts as long).
    pub signaler: Arc<signaling_ws::WsSignaler>,
    /// Its key.
    pub key: Arc<mesh_core::identity::NodeKey>,
    /// The tasks carrying its signals; they end when the link and the signaler stop.
    pub tasks: tokio::task::JoinSet<()>,
}

fn id(name: &str) -> PeerId {
    PeerId::new(name).expect("valid id")
}

/// A rogue peer (`role`) dialing `w0` by hand; its signals are signed with its key when `sign`.
pub async fn rogue_dial(stack: &Stack, role: Role, sign: bool) -> Rogue {
    let key = Arc::new(mesh_core::identity::NodeKey::generate());
    let signaler = Arc::new(signaling_ws::WsSignaler::new(stack.server_url().expect("a server"), None));
    let (inbox, mut rx) = tokio::sync::mpsc::channel::<Inbound>(64);
    let identity = Identity {
        room: RoomId::new("real").expect("valid room"),
        peer: id("rogue"),
        role,
        record: WorkerRecord::new(0, Default::default()),
        key: Some(key.public_hex()),
    };
    signaler.start(SignalerContext { identity, inbox, mesh: Arc::new(mesh_core::NoLinks) }).await.expect("registered");
    let transport = transport_webrtc::WebRtcTransport::new(transport_webrtc::WebRtcConfig::loopback(), 1 << 20);
    let (sink, mut out) = tokio::sync::mpsc::channel(64);
    let link = transport.dial(&id("w0"), sink).await.expect("dials");
    let session = SessionId { offerer: id("rogue"), seq: 1 };
    let mut tasks = tokio::task::JoinSet::new();
    let (outgoing, signer) = (signaler.clone(), key.clone());
    tasks.spawn(async move {
        let room = RoomId::new("real").expect("valid room");
        while let Some(body) = out.recv().await {
            let mut signal = Signal::new(session.clone(), body);
            if sign {
                signal.sig = Some(signer.sign(&room, &id("rogue"), &id("w0"), &signal));
            }
            let _ = outgoing.send(&id("w0"), signal).await;
        }
    });
    let l = link.link.clone();
    tasks.spawn(async move {
        while let Some(Inbound { event, .. }) = rx.recv().await {
            if let SignalingEvent::Signal { signal, .. } = event {
                if signal.session.offerer.as_str() == "rogue" {
                    let _ = l.apply_signal(signal.body).await;
                }
            }
        }
    });
    Rogue { link, signaler, key, tasks }
}

/// A rogue peer (`role`) linked to `w0` by hand over the real server and WebRTC: a valid member
/// with a key of its own, which signs its signals.
pub async fn rogue_link(stack: &Stack, role: Role) -> Rogue {
    let mut rogue = rogue_dial(stack, role, true).await;
    let opened = tokio::time::timeout(WAIT, rogue.link.events.recv()).await.expect("opens in time");
    assert_eq!(opened, Some(LinkEvent::Open));
    rogue
}

/// Waits until the peer of `link` answered a registry query sent after everything before it:
/// it read it all.
pub async fn read_everything(link: &mut LinkHandle) {
    use mesh_core::{MeshMessage, RegistryFilter};
    let query = MeshMessage::RegistryQuery { id: 99, filter: RegistryFilter::default() };
    link.link.send(query.encode().into()).await.expect("sent");
    tokio::time::timeout(WAIT, async {
        loop {
            match link.events.recv().await {
                Some(LinkEvent::Message(m)) => {
                    if matches!(MeshMessage::decode(&m, 1 << 20), Ok(MeshMessage::RegistryAnswer { id: 99, .. })) {
                        return;
                    }
                }
                Some(_) => continue,
                None => panic!("link ended"),
            }
        }
    })
    .await
    .expect("the peer answered");
}
