//! Per-run names, and removing them: this run's on drop, a dead run's at the next start.

use crate::run;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every lab name starts with this, then the creating process's pid and a letter.
const TAG: &str = "ml";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A prefix no other lab of this or any live process uses: `ml<pid><letters>`.
pub(crate) fn fresh_prefix() -> String {
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut letters = String::new();
    loop {
        letters.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    format!("{TAG}{}{letters}", std::process::id())
}

/// The pid a lab namespace name was made by, if it is one of ours.
fn owner(netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(TAG)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let after = rest[digits.len()..].chars().next()?;
    if !after.is_ascii_lowercase() || !rest.contains('-') {
        return None;
    }
    digits.parse().ok()
}

fn namespaces() -> Result<Vec<String>, String> {
    // Lines look like "name" or "name (id: 3)".
    Ok(run("ip", &["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// `ip netns add` and `del` mount under /run/netns; two at once can fail (the first one sets the
/// mount up), so this process makes them one at a time, and tries an add again once.
static NETNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creates namespace `netns`.
pub(crate) fn add_netns(netns: &str) -> Result<(), String> {
    let _one = NETNS.lock().unwrap_or_else(|p| p.into_inner());
    run("ip", &["netns", "add", netns]).or_else(|_| run("ip", &["netns", "add", netns])).map(|_| ())
}

/// Kills what runs in `netns` and deletes it (its veth ends go with it).
fn remove(netns: &str) -> Result<(), String> {
    if let Ok(pids) = run("ip", &["netns", "pids", netns]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-9", pid]);
        }
    }
    let _one = NETNS.lock().unwrap_or_else(|p| p.into_inner());
    run("ip", &["netns", "del", netns]).map(|_| ())
}

/// Removes every namespace of this prefix.
pub(crate) fn remove_prefix(prefix: &str) -> Result<(), String> {
    let mine = format!("{prefix}-");
    let mut errors = Vec::new();
    for netns in namespaces()?.into_iter().filter(|n| n.starts_with(&mine)) {
        if let Err(e) = remove(&netns) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Removes the labs of processes that no longer run (a killed test run).
pub(crate) fn remove_stale() -> Result<(), String> {
    for netns in namespaces()? {
        if let Some(pid) = owner(&netns) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("netlab: removing {netns}, left by a run that no longer exists (pid {pid})");
                remove(&netns)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_and_names_parse_back_to_their_owner() {
        let (a, b) = (fresh_prefix(), fresh_prefix());
        assert_ne!(a, b);
        assert_eq!(owner(&format!("{a}-h3")), Some(std::process::id()));
        assert_eq!(owner("mlx-h1"), None);
        assert_eq!(owner("ml123"), None);
        assert_eq!(owner("other-ns"), None);
        // Interface names (prefix + "h" + index) stay within the kernel's 15 characters.
        assert!(format!("{TAG}4194304zzBh99").len() <= 15);
    }
}
