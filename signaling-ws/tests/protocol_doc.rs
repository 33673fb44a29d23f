//! Every JSON example in docs/PROTOCOL.md parses as the message type it illustrates.

use signaling_ws::protocol::{ClientMsg, ServerMsg};

#[test]
fn every_example_in_protocol_md_parses() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let mut counts = (0, 0);
    let mut blocks = doc.split("```json ").skip(1);
    for block in blocks.by_ref() {
        let (header, rest) = block.split_once('\n').expect("block header");
        let body = rest.split("```").next().expect("block end");
        match header.trim() {
            "client" => {
                let msg: ClientMsg = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
                let again: ClientMsg = serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
                assert_eq!(msg, again);
                counts.0 += 1;
            }
            "server" => {
                let _: ServerMsg = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
                counts.1 += 1;
            }
            other => panic!("unknown block kind {other}"),
        }
    }
    assert_eq!(counts, (9, 7), "client and server examples found");
}

#[test]
fn every_error_code_in_the_table_exists() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let code = line.split('`').nth(1).expect("code");
        let frame = format!(r#"{{"type":"error","code":"{code}","message":"m"}}"#);
        assert!(serde_json::from_str::<ServerMsg>(&frame).is_ok(), "{code} is not an error code of the server");
    }
}
