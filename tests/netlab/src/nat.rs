//! Hosts behind NAT: each gets its own router namespace with one leg on the LAN (198.18.0.100+k)
//! and one on a private link (198.19.k.1 ↔ the host's 198.19.k.2, its default route). The router
//! masquerades with random source ports (`masquerade random`): every new destination gets a new
//! mapping (endpoint-dependent, "symmetric"), and nothing from the LAN reaches the host unless it
//! answers the host's own traffic. Between two such hosts only a TURN relay gets through.

use crate::{run, Host, Lab};
use std::net::Ipv4Addr;

/// Adds natted host number `k` (its router is `<prefix>-r<k>`, the host `<prefix>-n<k>`).
pub(crate) fn add(lab: &mut Lab, k: usize) -> Result<(), String> {
    let prefix = lab.prefix().to_string();
    let (router, host) = (format!("{prefix}-r{k}"), format!("{prefix}-n{k}"));
    let public = Ipv4Addr::new(198, 18, 0, 100 + k as u8);
    let (gateway, private) = (Ipv4Addr::new(198, 19, k as u8, 1), Ipv4Addr::new(198, 19, k as u8, 2));
    crate::names::add_netns(&router)?;
    crate::names::add_netns(&host)?;
    lab.plug(&router, &format!("r{k}"))?;
    lab.exec(&router, &["ip", "addr", "add", &format!("{public}/24"), "dev", "eth0"])?;
    // The private link: eth1 on the router, eth0 on the host.
    let (router_end, host_end) = (format!("{prefix}p{k}"), format!("{prefix}n{k}"));
    run(
        "ip",
        &["link", "add", &router_end, "netns", &router, "type", "veth", "peer", "name", &host_end, "netns", &host],
    )?;
    lab.exec(&router, &["ip", "link", "set", &router_end, "name", "eth1"])?;
    lab.exec(&router, &["ip", "addr", "add", &format!("{gateway}/24"), "dev", "eth1"])?;
    lab.exec(&router, &["ip", "link", "set", "eth1", "up"])?;
    lab.exec(&host, &["ip", "link", "set", &host_end, "name", "eth0"])?;
    lab.exec(&host, &["ip", "addr", "add", &format!("{private}/24"), "dev", "eth0"])?;
    lab.exec(&host, &["ip", "link", "set", "eth0", "up"])?;
    lab.exec(&host, &["ip", "link", "set", "lo", "up"])?;
    lab.exec(&host, &["ip", "route", "add", "default", "via", &gateway.to_string()])?;
    // Forwarding is a setting of the router's own namespace, not of the machine.
    lab.exec(&router, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
    let rules = "table ip mlabnat {\n\
        \x20 chain postrouting { type nat hook postrouting priority 100; oifname \"eth0\" masquerade random; }\n\
        \x20 chain forwarding { type filter hook forward priority 0; policy drop;\n\
        \x20   iifname \"eth1\" oifname \"eth0\" accept\n\
        \x20   iifname \"eth0\" oifname \"eth1\" ct state established,related accept\n\
        \x20 }\n\
        }\n";
    crate::run_with_input("ip", &["netns", "exec", &router, "nft", "-f", "-"], rules)?;
    lab.push_host(Host { netns: host, ip: private });
    Ok(())
}
