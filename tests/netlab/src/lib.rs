//! A network lab in Linux network namespaces, for tests and benchmarks that run the real binaries
//! as if on separate hosts.
//!
//! Topology: one namespace per host, each with one veth (`eth0`, 198.18.0.N/24) whose other end
//! sits in a bridge namespace on a Linux bridge: one LAN, no default route, nothing routed to the
//! machine's own interfaces or beyond. Faults are nftables rules inside the host namespaces: cut
//! a pair, silence a host's UDP, drop a host's TCP to a port, random loss.
//!
//! Rules that always hold:
//! - every address is in 198.18.0.0/15 and lives only in namespaces the lab created;
//! - every name carries a per-run prefix (`ml<pid><letter>`); [`Lab`] removes all of it when
//!   dropped (also when a test panics), and [`Lab::new`] first removes what a killed run left.
//!
//! Latency: [`Lab::set_wan`] (a userspace stage, as this kernel has no `netem`).
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables), and `iptables` for latency; a missing one is
//! an error, never a skip.

mod faults;
mod names;
pub mod nat;
mod redis;
mod turn;

pub use faults::Faults;
pub use redis::RedisServer;
pub use turn::Turn;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// One emulated host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its network namespace.
    pub netns: String,
    /// Its address on the lab LAN.
    pub ip: Ipv4Addr,
}

/// A lab of hosts on one LAN; everything it made is removed on drop.
pub struct Lab {
    prefix: String,
    hosts: Vec<Host>,
    faults: Mutex<Faults>,
    delayers: Mutex<Vec<std::process::Child>>,
}

/// Reads `child`'s stdout on a thread until a line contains `ready` (echoing every line to
/// stderr when `echo` names a set environment variable); false if none does within `within`.
pub(crate) fn await_line(
    child: &mut std::process::Child,
    ready: &'static str,
    echo: &'static str,
    within: std::time::Duration,
) -> bool {
    use std::io::{BufRead, BufReader};
    let Some(stdout) = child.stdout.take() else { return false };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if std::env::var_os(echo).is_some() {
                eprintln!("{line}");
            }
            if line.contains(ready) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(within).is_ok()
}

/// Runs a command, returning its stdout; an error names the command and its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (is it installed?)"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with `input` on its stdin.
pub(crate) fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (is it installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}\n{input}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// A binary of this workspace next to the running executable (`target/<profile>/NAME`), built on
/// demand with cargo when missing or older than the running executable, so a test never runs a
/// stale binary (tests and benches run from the same target directory).
pub fn sibling_binary(name: &str, package: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut dir = exe.parent().ok_or("no parent dir")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    // Built when missing, and when older than the test itself: `cargo test -p` alone does not
    // rebuild other packages' binaries, and a stale one would test old code. Checked once per
    // binary and process: the cargo call is a no-op when current, but it takes a while.
    static CHECKED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = CHECKED.lock().map(|mut checked| checked.insert(name.to_string())).unwrap_or(true);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&path), modified(&exe)) {
        (Some(binary), Some(test)) => first && binary < test,
        _ => true,
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let built = cmd.status().is_ok_and(|s| s.success());
        if !path.exists() {
            return Err(format!("{name} is not built: cargo build -p {package} --bin {name}"));
        }
        if !built {
            eprintln!("warning: could not rebuild {} (no cargo here?); using it as it is", path.display());
        }
    }
    Ok(path)
}

impl Lab {
    /// Builds a LAN of `hosts` hosts (198.18.0.1 …). Removes stale labs of dead runs first.
    pub fn new(hosts: usize) -> Result<Self, String> {
        Self::with_nat(hosts, 0)
    }

    /// A LAN of `public` hosts plus `natted` hosts, each behind its own NAT router on the LAN
    /// (see [`nat`]). Natted hosts come after the public ones in [`Lab::hosts`].
    pub fn with_nat(public: usize, natted: usize) -> Result<Self, String> {
        if public + natted == 0 || public > 99 || natted > 99 {
            return Err(format!("a lab has 1 to 99 public and 0 to 99 natted hosts, not {public} and {natted}"));
        }
        if run("id", &["-u"])?.trim() != "0" {
            return Err("the network lab needs root (network namespaces, nftables)".into());
        }
        run("nft", &["--version"])?;
        names::remove_stale()?;
        let prefix = names::fresh_prefix();
        let mut lab = Self {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            faults: Mutex::new(Faults::default()),
            delayers: Mutex::new(Vec::new()),
        };
        // From here on, `lab` is dropped (and cleans up) on any error.
        let bridge = lab.bridge_netns();
        names::add_netns(&bridge)?;
        lab.exec(&bridge, &["ip", "link", "set", "lo", "up"])?;
        lab.exec(&bridge, &["ip", "link", "add", "br0", "type", "bridge"])?;
        lab.exec(&bridge, &["ip", "link", "set", "br0", "up"])?;
        for i in 0..public {
            let netns = format!("{prefix}-h{i}");
            let ip = Ipv4Addr::new(198, 18, 0, i as u8 + 1);
            names::add_netns(&netns)?;
            lab.hosts.push(Host { netns: netns.clone(), ip });
            lab.plug(&netns, &format!("h{i}"))?;
            lab.exec(&netns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        }
        for k in 0..natted {
            nat::add(&mut lab, k)?;
        }
        lab.apply_faults()?;
        Ok(lab)
    }

    /// Plugs a new veth into the LAN bridge; its other end, named `eth0`, goes to `netns`.
    pub(crate) fn plug(&self, netns: &str, tag: &str) -> Result<(), String> {
        let bridge = self.bridge_netns();
        let (host_end, bridge_end) = (format!("{}{tag}", self.prefix), format!("{}B{tag}", self.prefix));
        let args =
            ["link", "add", &host_end, "netns", netns, "type", "veth", "peer", "name", &bridge_end, "netns", &bridge];
        run("ip", &args)?;
        self.exec(&bridge, &["ip", "link", "set", &bridge_end, "master", "br0"])?;
        self.exec(&bridge, &["ip", "link", "set", &bridge_end, "up"])?;
        self.exec(netns, &["ip", "link", "set", &host_end, "name", "eth0"])?;
        self.exec(netns, &["ip", "link", "set", "eth0", "up"])?;
        self.exec(netns, &["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    pub(crate) fn push_host(&mut self, host: Host) {
        self.hosts.push(host);
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// This run's name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn bridge_netns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Runs `args` inside namespace `netns` and waits for it.
    pub fn exec(&self, netns: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", netns];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside host `i`'s namespace (`ip netns exec` execs it, so
    /// the child's pid is the program's own: signals reach it directly).
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        cmd
    }

    /// Adds `one_way` ± `jitter` of latency to everything every host receives (so a round trip
    /// between two hosts takes twice `one_way`): one `mesh-netlab-delay` per host holds the
    /// packets an iptables `NFQUEUE` rule gives it. If a delayer dies, packets pass undelayed.
    ///
    /// Held on the way in, not out: a packet held in the sender's own stack still counts against
    /// its socket (TCP small queues, a UDP socket's send buffer), which capped a TCP stream at
    /// 80 ms RTT to about 0.1 MiB/s, a throttle no real WAN applies.
    pub fn set_wan(&self, one_way: std::time::Duration, jitter: std::time::Duration) -> Result<(), String> {
        use std::io::BufRead;
        run("iptables", &["--version"])?;
        let binary = sibling_binary("mesh-netlab-delay", "mesh-netlab")?;
        for (i, host) in self.hosts.iter().enumerate() {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &host.netns])
                .arg(&binary)
                .args(["--queue", "0", "--delay-ms", &one_way.as_millis().to_string()])
                .args(["--jitter-ms", &jitter.as_millis().to_string(), "--seed", &(i + 1).to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("delayer: {e}"))?;
            if !line.contains("ready") {
                let _ = child.kill();
                return Err(format!("the delayer in {} did not start", host.netns));
            }
            if let Ok(mut delayers) = self.delayers.lock() {
                delayers.push(child);
            }
            self.exec(
                &host.netns,
                &["iptables", "-A", "INPUT", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"],
            )?;
        }
        Ok(())
    }

    /// Changes the faults (cuts, silenced hosts, loss) and applies them to every host at once.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) -> Result<(), String> {
        if let Ok(mut faults) = self.faults.lock() {
            change(&mut faults);
        }
        self.apply_faults()
    }

    fn apply_faults(&self) -> Result<(), String> {
        let faults = self.faults.lock().map(|f| f.clone()).unwrap_or_default();
        for (i, host) in self.hosts.iter().enumerate() {
            let ruleset = faults.ruleset(i, &self.hosts);
            let args = ["netns", "exec", host.netns.as_str(), "nft", "-f", "-"];
            run_with_input("ip", &args, &ruleset)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(mut delayers) = self.delayers.lock() {
            for child in delayers.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Err(e) = names::remove_prefix(&self.prefix) {
            eprintln!("netlab: cleanup of {} failed: {e}", self.prefix);
        }
    }
}
