//! The demo's scenarios: form the mesh with visible progress, then an admin departure (graceful
//! or crash), a newcomer, or a partition, each with its checks; a final table of the room.

use crate::{Out, Scenario};
use mesh_core::memory::MemoryNetwork;
use mesh_core::{MeshNode, PeerId};
use mesh_examples::stack::Stack;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest the demo waits for any step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running demo: the stack, the live workers and what has been measured.
pub(crate) struct Demo<'a> {
    pub stack: &'a Stack,
    pub out: &'a Out,
    pub summary: &'a mut BTreeMap<&'static str, Value>,
    pub nodes: Vec<MeshNode>,
    pub next_id: usize,
}

use mesh_core::testing::{attempts, links};

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

fn signals_of(node: &MeshNode) -> String {
    let s = node.snapshot().signals;
    s.iter().map(|(path, c)| format!("{path} {}", c.sent)).collect::<Vec<_>>().join(", ")
}

impl Demo<'_> {
    /// Forms the mesh, walks `scenario`, prints the room, and checks the outcome.
    pub(crate) async fn walk(&mut self, scenario: Scenario, workers: usize) -> Result<(), String> {
        self.form(workers).await?;
        match scenario {
            Scenario::Form => {}
            Scenario::Tour => {
                self.transfer().await?;
                self.admin_departs(false).await?;
                self.join().await?;
            }
            Scenario::AdminLeaves => self.admin_departs(false).await?,
            Scenario::AdminCrash => self.admin_departs(true).await?,
            Scenario::Join => self.join().await?,
            Scenario::Partition => self.partition().await?,
        }
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for node in &self.nodes {
            for (path, c) in node.snapshot().signals {
                *totals.entry(path).or_default() += c.sent;
            }
        }
        self.summary.insert("signals", json!(totals));
        self.out.step("room", format!("the room now\n{}", self.table()), json!({ "links": links(&self.nodes) }));
        Ok(())
    }

    /// Leaves with every live worker (ends their tasks and links).
    pub(crate) async fn leave_all(&mut self) {
        for node in self.nodes.drain(..) {
            node.leave().await;
        }
    }

    fn table(&self) -> String {
        let mut out = String::from("  worker  role    links  signals sent by path\n");
        for n in &self.nodes {
            let h = n.snapshot().health;
            out += &format!(
                "  {:<6}  {:<6}  {:>2}/{:<2}  {}\n",
                h.peer.as_str(),
                h.role,
                h.links_up,
                h.links_expected,
                signals_of(n)
            );
        }
        out
    }

    async fn start_one(&mut self) -> Result<(), String> {
        let name = format!("w{}", self.next_id);
        self.next_id += 1;
        self.nodes.push(self.stack.start(&name).await?);
        Ok(())
    }

    /// Waits for the full mesh among the live workers, printing progress as links come up.
    async fn wait_full(&self) -> Result<(), String> {
        let n = self.nodes.len();
        let expected = n * (n - 1) / 2;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut shown = usize::MAX;
        loop {
            let full = self.nodes.iter().all(|node| {
                let h = node.snapshot().health;
                h.links_up == n - 1 && h.links_expected == n - 1
            });
            let up = links(&self.nodes);
            if up != shown {
                self.out.progress(format!("links up {up}/{expected}"));
                shown = up;
            }
            if full {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("mesh incomplete after {STEP_TIMEOUT:?}: {up}/{expected} links\n{}", self.table()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn form(&mut self, n: usize) -> Result<(), String> {
        let t0 = Instant::now();
        for _ in 0..n {
            self.start_one().await?;
        }
        self.out.step("workers_started", format!("{n} workers started in room demo"), json!({ "workers": n }));
        self.wait_full().await?;
        let formation_ms = ms(t0);
        let opened: u64 = self.nodes.iter().map(|n| n.snapshot().counters.links_opened).sum();
        let duplicates = (opened / 2) as usize - links(&self.nodes);
        self.summary.insert("workers", json!(n));
        self.summary.insert("expected_links", json!(n * (n - 1) / 2));
        self.summary.insert("links", json!(links(&self.nodes)));
        self.summary.insert("duplicate_links", json!(duplicates));
        self.summary.insert("formation_ms", json!(formation_ms));
        self.out.step(
            "mesh_formed",
            format!("full mesh: {} links in {formation_ms} ms\n{}", links(&self.nodes), self.table()),
            json!({ "links": links(&self.nodes), "formation_ms": formation_ms }),
        );
        if duplicates > 0 {
            return Err(format!("{duplicates} duplicate links"));
        }
        Ok(())
    }

    fn admin(&self) -> Result<PeerId, String> {
        self.nodes.first().and_then(|n| n.snapshot().health.admin).ok_or_else(|| "no admin".to_string())
    }

    async fn admin_departs(&mut self, crash: bool) -> Result<(), String> {
        let admin = self.admin()?;
        let idx = self.nodes.iter().position(|n| n.peer_id() == &admin).ok_or("admin is not a local worker")?;
        let leaving = self.nodes.remove(idx);
        let before = attempts(&self.nodes);
        let t1 = Instant::now();
        if crash {
            leaving.abort();
            self.out.step("admin_crashed", format!("admin {admin} crashed"), json!({ "admin": admin.as_str() }));
        } else {
            leaving.leave().await;
            self.out.step("admin_left", format!("admin {admin} left"), json!({ "admin": admin.as_str() }));
        }
        let first = self.nodes[0].peer_id().clone();
        let new_admin = self.nodes[0]
            .wait_for(STEP_TIMEOUT, |s| s.health.admin_verified && s.health.admin.as_ref().is_some_and(|a| *a != admin))
            .await
            .map_err(|e| format!("{first} did not elect a new admin: {e}"))?
            .health
            .admin
            .ok_or("no new admin")?;
        // A survivor may follow the new admin (from the others' heartbeats) a moment before it
        // hears that the old one left: wait for both.
        let others = self.nodes.len() - 1;
        for node in &self.nodes {
            node.wait_for(STEP_TIMEOUT, |s| {
                s.health.admin_verified
                    && s.health.admin.as_ref() == Some(&new_admin)
                    && s.health.links_expected == others
            })
            .await
            .map_err(|e| format!("{} does not agree on admin {new_admin}: {e}", node.peer_id()))?;
        }
        let failover_ms = ms(t1);
        let attempts_after = attempts(&self.nodes) - before;
        let survivors = self.nodes.len();
        self.summary.insert("admin_left", json!(admin.as_str()));
        self.summary.insert("new_admin", json!(new_admin.as_str()));
        self.summary.insert("failover_ms", json!(failover_ms));
        self.summary.insert("attempts_after_admin_left", json!(attempts_after));
        self.summary.insert("survivor_links", json!(links(&self.nodes)));
        self.out.step(
            "admin_elected",
            format!(
                "every survivor verified new admin {new_admin} in {failover_ms} ms; {attempts_after} new link attempts, {} links kept",
                links(&self.nodes)
            ),
            json!({ "new_admin": new_admin.as_str(), "failover_ms": failover_ms, "attempts": attempts_after }),
        );
        if attempts_after != 0 {
            return Err(format!("{attempts_after} new link attempts after the admin went away"));
        }
        if links(&self.nodes) != survivors * (survivors - 1) / 2 {
            return Err("survivors lost links between themselves".into());
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<(), String> {
        let t2 = Instant::now();
        self.start_one().await?;
        self.wait_full().await?;
        let joiner = self.nodes.last().ok_or("no joiner")?;
        let name = joiner.peer_id().to_string();
        let signals = signals_of(joiner);
        self.summary.insert("joined", json!(name));
        self.summary.insert("join_ms", json!(ms(t2)));
        self.summary.insert("links_after_join", json!(links(&self.nodes)));
        self.summary.insert(
            "joiner_signals",
            json!(joiner.snapshot().signals.iter().map(|(k, v)| (k.clone(), v.sent)).collect::<BTreeMap<_, _>>()),
        );
        self.out.step(
            "worker_joined",
            format!("{name} joined: {} links in {} ms; its signals by path: {signals}", links(&self.nodes), ms(t2)),
            json!({ "peer": name, "links": links(&self.nodes) }),
        );
        Ok(())
    }

    /// Cuts the links between a majority (the admin among them) and the rest, everyone staying
    /// registered: the minority must report PARTITIONED. Needs the `memory` transport, whose
    /// network can be cut from inside the process; WebRTC links cannot.
    async fn partition(&mut self) -> Result<(), String> {
        let net = match self.stack.base.transport.as_str() {
            "memory" => self.stack.registry.resources.get::<MemoryNetwork>().ok_or("no memory network")?,
            other => return Err(format!("the partition scenario cuts links in memory: run it with --transport memory --signaling memory (not {other})")),
        };
        let majority = self.nodes.len() / 2 + 1;
        let (big, small): (Vec<PeerId>, Vec<PeerId>) = {
            let ids: Vec<PeerId> = self.nodes.iter().map(|n| n.peer_id().clone()).collect();
            (ids[..majority].to_vec(), ids[majority..].to_vec())
        };
        let before = self.nodes.first().and_then(|n| n.snapshot().health.admin).map(|a| a.to_string());
        self.summary.insert("admin_before_partition", json!(before));
        let t = Instant::now();
        for a in &big {
            for b in &small {
                net.cut(a, b);
            }
        }
        let names = |v: &[PeerId]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        self.out.step(
            "partition",
            format!("links cut between {{{}}} and {{{}}}", names(&big), names(&small)),
            json!({ "majority": names(&big), "minority": names(&small) }),
        );
        for node in self.nodes.iter().filter(|n| small.contains(n.peer_id())) {
            node.wait_for(STEP_TIMEOUT, |s| s.health.partitioned)
                .await
                .map_err(|e| format!("{} did not report the partition: {e}", node.peer_id()))?;
        }
        self.summary.insert("partitioned", json!(names(&small)));
        self.summary.insert("partition_detect_ms", json!(ms(t)));
        self.out.step(
            "partition_reported",
            format!("{} report PARTITIONED after {} ms", names(&small), ms(t)),
            json!({ "partitioned": names(&small) }),
        );
        net.heal();
        let t = Instant::now();
        for node in &self.nodes {
            let admin = self.nodes.first().and_then(|n| n.snapshot().health.admin);
            node.wait_for(STEP_TIMEOUT * 4, |s| {
                !s.health.partitioned && s.health.admin_verified && s.health.admin == admin
            })
            .await
            .map_err(|e| format!("{} did not heal: {e}; {:?}", node.peer_id(), node.snapshot().health))?;
        }
        let full = self.nodes.len() - 1;
        for node in &self.nodes {
            node.wait_for(STEP_TIMEOUT * 4, |s| s.health.links_up == full)
                .await
                .map_err(|e| format!("{} did not relink after the heal: {e}", node.peer_id()))?;
        }
        let admin = self.nodes.first().and_then(|n| n.snapshot().health.admin).map(|a| a.to_string());
        let still: Vec<String> =
            self.nodes.iter().filter(|n| n.snapshot().health.partitioned).map(|n| n.peer_id().to_string()).collect();
        self.summary.insert("partitioned_after_heal", json!(still.join(" ")));
        self.summary.insert("admin_after_heal", json!(admin));
        self.summary.insert("links_after_heal", json!(links(&self.nodes)));
        self.out.step(
            "partition_healed",
            format!("healed: full mesh again in {} ms, admin {}", ms(t), admin.as_deref().unwrap_or("-")),
            json!({ "admin": admin }),
        );
        Ok(())
    }
}
