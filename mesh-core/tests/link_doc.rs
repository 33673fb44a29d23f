//! Every JSON example in docs/LINK.md parses as what it illustrates, and its signature example is
//! what this code computes, so another implementation can follow the page.

use mesh_core::identity::{NodeKey, PublicKey};
use mesh_core::{MeshMessage, PeerId, RoomId, Signal};
use serde_json::Value;

/// The ```json blocks of the page, as (kind, body).
fn blocks() -> Vec<(String, String)> {
    mesh_core::testing::json_blocks(include_str!("../../docs/LINK.md"))
}

#[test]
fn every_mesh_message_and_signal_example_parses() {
    let (mut messages, mut signals) = (0, 0);
    for (kind, body) in blocks() {
        match kind.as_str() {
            "link" => {
                let msg = MeshMessage::decode(body.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e}: {body}"));
                assert_eq!(MeshMessage::decode(&msg.encode(), 1 << 20).expect("round trip"), msg);
                messages += 1;
            }
            "signal" => {
                let _: Signal = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                signals += 1;
            }
            "lease-ask" => {
                let _: mesh_core::lease::LeaseAsk =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            }
            "lease-granted" => {
                let _: mesh_core::lease::LeaseGranted =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            }
            "blob-ask" => {
                let _: mesh_core::transfer::BlobAsk =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            }
            "blob-manifest" => {
                let m: mesh_core::transfer::Manifest =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                assert!(m.is_whole(), "as many chunk hashes as its size needs: {body}");
            }
            "signature-example" | "frame" => {}
            other => panic!("unknown block kind {other}"),
        }
    }
    assert_eq!((messages, signals), (12, 2), "examples found");
}

#[test]
fn the_signature_example_is_what_a_node_signs() {
    let (_, body) = blocks().into_iter().find(|(k, _)| k == "signature-example").expect("the example");
    let ex: Value = serde_json::from_str(&body).expect("example JSON");
    let text = |k: &str| ex[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    let (room, from, to) =
        (RoomId::new(text("room")).unwrap(), PeerId::new(text("from")).unwrap(), PeerId::new(text("to")).unwrap());
    let signal: Signal = serde_json::from_value(ex["signal"].clone()).expect("signal");
    let signed = format!("mesh-signal-v1\n{}", serde_json::json!([room, from, to, signal.session, signal.body]));
    assert_eq!(signed, text("signed"), "the bytes the page says are signed");
    let file = std::env::temp_dir().join(format!("link-doc-key-{}", std::process::id()));
    std::fs::write(&file, text("secret")).expect("key file");
    let key = NodeKey::load_or_create(&file).expect("the example's secret");
    let _ = std::fs::remove_file(&file);
    assert_eq!(key.public_hex(), text("key"), "the public key of the secret");
    assert_eq!(key.sign(&room, &from, &to, &signal), text("sig"), "the signature");
    let public = PublicKey::parse(&text("key")).expect("key");
    assert!(public.signed_signal(&room, &from, &to, &Signal { sig: Some(text("sig")), ..signal }));
}

#[test]
fn every_application_frame_example_is_what_the_code_reads_and_writes() {
    use mesh_core::data::frame::{Frame, Kind};
    let mut frames = 0;
    for (_, body) in blocks().into_iter().filter(|(k, _)| k == "frame") {
        let ex: Value = serde_json::from_str(&body).expect("example JSON");
        let hex = ex["hex"].as_str().expect("hex");
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let frame = Frame::decode(&bytes.clone().into()).unwrap_or_else(|e| panic!("{e}: {hex}"));
        let kind = match ex["kind"].as_str() {
            Some("message") => Kind::Message,
            Some("request") => Kind::Request,
            Some("response") => Kind::Response,
            Some("ack") => Kind::Ack,
            Some("fail") => Kind::Fail,
            other => panic!("kind {other:?}"),
        };
        assert_eq!(frame.kind, kind);
        assert_eq!(frame.more, ex["more"].as_bool().unwrap());
        assert_eq!(frame.id, ex["id"].as_u64().unwrap());
        assert_eq!(frame.proto, ex["proto"].as_str().unwrap());
        assert_eq!(&frame.payload[..], ex["payload"].as_str().unwrap().as_bytes());
        assert_eq!(frame.encode().to_vec(), bytes, "the code writes the same bytes");
        frames += 1;
    }
    assert_eq!(frames, 2, "examples found");
}
