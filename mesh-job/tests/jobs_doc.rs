//! Every JSON example in docs/JOBS.md parses as what it illustrates, so another implementation
//! (a Python client, a browser) can follow the page.

use mesh_job::{Answer, Ask};

/// The ```json blocks of the page, as (kind, body).
fn blocks() -> Vec<(String, String)> {
    mesh_core::testing::json_blocks(include_str!("../../docs/JOBS.md"))
}

#[test]
fn every_job_ask_and_answer_example_parses_and_round_trips() {
    let (mut asks, mut answers) = (0, 0);
    for (kind, body) in blocks() {
        match kind.as_str() {
            "job-ask" => {
                let ask: Ask = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                let again: Ask = serde_json::from_str(&serde_json::to_string(&ask).unwrap()).unwrap();
                assert_eq!(again, ask);
                asks += 1;
            }
            "job-answer" => {
                let answer: Answer = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                let again: Answer = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
                assert_eq!(again, answer);
                answers += 1;
            }
            "job-metadata" => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                assert!(v["kinds"].is_object() && v["running"].is_array(), "{body}");
            }
            other => panic!("unknown block kind {other}"),
        }
    }
    assert_eq!((asks, answers), (4, 6), "every ask and answer kind has its example");
}
