//! The lab itself: it cleans up after a panic, removes what a killed run left, and its faults
//! reach the hosts. Needs root, `ip` and `nft` (the repository's test script installs them).

use mesh_netlab::Lab;
use std::process::Command;

/// These tests create and list namespaces: one at a time.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[test]
fn a_lab_leaves_nothing_behind_even_when_its_test_panics() {
    let _one = one_at_a_time();
    let prefix = std::panic::catch_unwind(|| {
        let lab = Lab::new(2).expect("lab");
        let prefix = lab.prefix().to_string();
        assert_eq!(namespaces().iter().filter(|n| n.starts_with(&format!("{prefix}-"))).count(), 3);
        std::panic::panic_any(prefix);
    })
    .expect_err("the closure panics")
    .downcast::<String>()
    .expect("the prefix");
    let left: Vec<String> = namespaces().into_iter().filter(|n| n.starts_with(&format!("{prefix}-"))).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_lab_of_a_killed_run_is_removed_at_the_next_start() {
    let _one = one_at_a_time();
    // A pid that runs nothing: the "killed run".
    let max: u32 =
        std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    let dead = (2..max).rev().find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).expect("a free pid");
    let stale = format!("ml{dead}q-h0");
    assert!(Command::new("ip").args(["netns", "add", &stale]).status().expect("ip runs").success());
    let lab = Lab::new(1).expect("lab");
    assert!(!namespaces().contains(&stale), "{stale} was not removed");
    drop(lab);
}

#[test]
fn faults_become_rules_in_the_hosts_and_a_heal_removes_them() {
    let _one = one_at_a_time();
    let lab = Lab::new(3).expect("lab");
    let rules = |i: usize| lab.exec(&lab.host(i).netns, &["nft", "list", "table", "inet", "mlab"]).expect("nft");
    lab.set_faults(|f| f.split(&[0], &[1, 2])).unwrap();
    let r = rules(0);
    assert!(r.contains("198.18.0.2") && r.contains("198.18.0.3") && r.contains("drop"), "{r}");
    assert!(rules(1).contains("198.18.0.1") && !rules(1).contains("198.18.0.3"), "{}", rules(1));
    lab.set_faults(|f| f.clear()).unwrap();
    assert!(!rules(0).contains("drop"), "{}", rules(0));
}

#[test]
fn coturn_starts_on_a_lab_host_and_is_stopped_with_it() {
    let _one = one_at_a_time();
    let lab = Lab::new(2).expect("lab");
    let turn = mesh_netlab::Turn::start(&lab, 1).expect("turnserver starts");
    assert_eq!(turn.url, "turn:198.18.0.2:3478");
    let pids = lab.exec(&lab.host(1).netns, &["ip", "netns", "pids", &lab.host(1).netns]).unwrap_or_default();
    assert!(!pids.trim().is_empty(), "turnserver runs in host 1's namespace");
    drop(turn);
    drop(lab);
}
