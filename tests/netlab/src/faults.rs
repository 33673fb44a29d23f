//! Faults as nftables rules, regenerated whole for every host on each change (one atomic
//! `nft -f` per host), so a heal is exact: what is not listed is not dropped.

use crate::Host;
use std::collections::BTreeSet;

/// What the lab does to traffic now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Host pairs that cannot exchange anything (both directions).
    pub cuts: BTreeSet<(usize, usize)>,
    /// Hosts whose UDP is dropped both ways (WebRTC goes silent, TCP stays).
    pub silent_udp: BTreeSet<usize>,
    /// (host, port): the host's TCP to that port on any lab address is dropped both ways.
    pub blocked_tcp: BTreeSet<(usize, u16)>,
    /// Percent of packets every host drops as they arrive (0–100).
    pub loss_percent: u8,
}

impl Faults {
    /// Cuts every pair between `a` and `b`.
    pub fn split(&mut self, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                self.cuts.insert((*x.min(y), *x.max(y)));
            }
        }
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The nftables ruleset of host `i`.
    pub(crate) fn ruleset(&self, i: usize, hosts: &[Host]) -> String {
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for &(a, b) in &self.cuts {
            let other = match (a == i, b == i) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            input.push(format!("ip saddr {} drop", hosts[other].ip));
            output.push(format!("ip daddr {} drop", hosts[other].ip));
        }
        if self.silent_udp.contains(&i) {
            input.push("iifname \"eth0\" meta l4proto udp drop".into());
            output.push("oifname \"eth0\" meta l4proto udp drop".into());
        }
        for &(host, port) in &self.blocked_tcp {
            if host == i {
                input.push(format!("iifname \"eth0\" tcp sport {port} drop"));
                output.push(format!("oifname \"eth0\" tcp dport {port} drop"));
            }
        }
        if self.loss_percent > 0 {
            // On the way in: a packet dropped on the way out fails its sendmsg with EPERM, which
            // tells the sender (and floods its log) as no real network does.
            input.push(format!("iifname \"eth0\" numgen random mod 100 < {} drop", self.loss_percent.min(100)));
        }
        let chain = |name: &str, hook: &str, rules: &[String]| {
            let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
            format!("  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n{body}  }}\n")
        };
        format!(
            "table inet mlab\ndelete table inet mlab\ntable inet mlab {{\n{}{}}}\n",
            chain("input", "input", &input),
            chain("output", "output", &output)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn hosts(n: u8) -> Vec<Host> {
        (0..n).map(|i| Host { netns: format!("h{i}"), ip: Ipv4Addr::new(198, 18, 0, i + 1) }).collect()
    }

    #[test]
    fn a_split_drops_only_between_the_groups() {
        let mut f = Faults::default();
        f.split(&[0, 1], &[2]);
        let h = hosts(3);
        let r0 = f.ruleset(0, &h);
        assert!(r0.contains("ip saddr 198.18.0.3 drop") && !r0.contains("198.18.0.2"), "{r0}");
        let r2 = f.ruleset(2, &h);
        assert!(r2.contains("ip daddr 198.18.0.1 drop") && r2.contains("ip daddr 198.18.0.2 drop"), "{r2}");
        f.clear();
        assert!(!f.ruleset(0, &h).contains("drop"));
    }
}
