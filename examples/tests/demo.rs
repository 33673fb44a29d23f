//! Runs the `mesh-demo` binary as a user would and checks its JSON summary.

use std::process::Command;

/// One demo at a time: each runs a whole room, and several at once on a small machine would
/// measure the machine (timers that fire late) rather than the mesh.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(args: &[&str]) -> (bool, serde_json::Value) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-demo")).args(args).output().expect("mesh-demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.success(), v["summary"].clone())
}

#[test]
fn the_default_demo_runs_the_real_stack_and_a_newcomer_dials_everyone_by_the_rendezvous() {
    let (ok, s) = run(&["--json"]);
    assert!(ok, "{s}");
    assert_eq!((s["transport"].as_str(), s["signaling"].clone()), (Some("webrtc"), serde_json::json!(["relay", "ws"])));
    assert_eq!(s["links"], 10);
    assert_eq!(s["duplicate_links"], 0);
    assert_eq!(s["attempts_after_admin_left"], 0);
    assert_eq!(s["links_after_join"], 10);
    assert_eq!(s["transfer_verified"], true, "the 4 MiB file arrived whole and verified: {s}");
    // The newcomer dials all four survivors at once, by the WebSocket (the rendezvous that
    // introduced them): no relay is linked to it yet, so none is tried.
    let joiner = &s["joiner_signals"];
    assert!(joiner["ws"].as_u64().unwrap_or(0) >= 4, "{s}");
    assert_eq!(joiner["relay"].as_u64().unwrap_or(0), 0, "{s}");
}

#[test]
fn partition_scenario_reports_the_minority_partitioned() {
    let (ok, s) = run(&["--scenario", "partition", "--transport", "memory", "--signaling", "memory", "--json"]);
    assert!(ok, "{s}");
    assert_eq!(s["partitioned"], "w3 w4");
    // On heal the majority's admin keeps the role, nobody stays flagged, the mesh is full.
    assert_eq!(s["admin_after_heal"], s["admin_before_partition"], "{s}");
    assert!(s["admin_after_heal"].is_string(), "{s}");
    assert_eq!(s["partitioned_after_heal"], "", "{s}");
    assert_eq!(s["links_after_heal"], 10, "{s}");
}

#[test]
fn demo_with_ten_workers_reports_45_links_no_duplicates_and_no_reconnects() {
    let (ok, s) = run(&["--workers", "10", "--transport", "memory", "--signaling", "memory", "--json"]);
    assert!(ok, "{s}");
    assert_eq!(s["links"], 45);
    assert_eq!(s["duplicate_links"], 0);
    assert_eq!(s["attempts_after_admin_left"], 0);
    assert_eq!(s["survivor_links"], 36);
    assert_eq!(s["links_after_join"], 45);
    assert_ne!(s["new_admin"], s["admin_left"]);
    assert!(s["signals"]["memory"].as_u64().unwrap_or(0) > 0, "{s}");
}

#[test]
fn demo_with_an_unknown_transport_fails_and_lists_the_known_ones() {
    let (ok, s) = run(&["--transport", "carrier-pigeon", "--json"]);
    assert!(!ok);
    let err = s["error"].as_str().unwrap_or_default();
    assert!(err.contains("carrier-pigeon") && err.contains("memory"), "{err}");
}

#[test]
fn the_custom_stack_example_forms_a_mesh_through_its_own_signaler() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_custom-stack")).output().expect("custom-stack runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    // "<workers> workers, <links> links, <signals> signals ...", every number measured.
    let numbers: Vec<u64> = last.split([' ', ',']).filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 3, "{last}");
    assert_eq!((numbers[0], numbers[1]), (3, 3), "{last}");
    assert!(numbers[2] > 0, "signals went through the custom signaler: {last}");
}

#[test]
fn demo_with_the_relay_alone_is_refused_at_once_saying_why() {
    let (ok, s) = run(&["--signaling", "relay", "--json"]);
    assert!(!ok, "{s}");
    let err = s["error"].as_str().unwrap_or_default();
    assert!(err.contains("can never open a first link"), "{err}");
}
