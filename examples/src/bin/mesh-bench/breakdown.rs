//! `mesh-bench formation --lab … --breakdown`: where the time of a formation goes, from the
//! timeline marks (`mesh_core::timeline`) every worker logged as JSON. Processes on one host share
//! the clock, so marks of different workers sit on one axis: ms from the first worker's spawn.

use crate::Samples;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One mark: when, which worker logged it, and its fields.
#[derive(Debug, Clone)]
struct Mark {
    us: u64,
    me: String,
    step: String,
    peer: String,
    session: String,
    fields: Value,
}

/// Reads every worker's marks (`w{i}.log` in `dir`), and counts its other log lines (warnings
/// and errors) by message into `logged`.
fn read(dir: &Path, n: usize, logged: &mut BTreeMap<String, u64>) -> Vec<Mark> {
    let mut marks = Vec::new();
    for i in 0..n {
        let me = format!("w{i}");
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{me}.log"))) else { continue };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            if v["target"] != mesh_core::timeline::TARGET {
                let message = v["fields"]["message"].as_str().unwrap_or("");
                // The lab's loss emulation drops packets at send: EPERM from the stack is expected.
                if !message.contains("Operation not permitted") {
                    let level = v["level"].as_str().unwrap_or("");
                    let text: String = message.chars().take(100).collect();
                    *logged.entry(format!("{level} {}: {text}", v["target"].as_str().unwrap_or(""))).or_default() += 1;
                }
                continue;
            }
            let f = &v["fields"];
            let text = |a: &Value, b: &Value| a.as_str().or(b.as_str()).unwrap_or("").to_string();
            marks.push(Mark {
                us: f["unix_us"].as_u64().unwrap_or(0),
                me: me.clone(),
                step: text(&f["step"], &Value::Null),
                peer: text(&f["peer"], &v["span"]["remote"]),
                session: text(&f["session"], &v["span"]["session"]),
                fields: f.clone(),
            });
        }
    }
    marks.sort_by_key(|m| m.us);
    marks
}

/// The steps of one link attempt, in ms from the first spawn (`None`: did not happen).
#[derive(Default, Debug)]
struct Attempt {
    offerer: String,
    answerer: String,
    why: String,
    dial: Option<f64>,
    /// When the transport handed over its offer (or answer): the set-up time of each side.
    offer_out: Option<f64>,
    answer_out: Option<f64>,
    offer_in: Option<(f64, String)>,
    answer_in: Option<(f64, String)>,
    candidates_in: usize,
    ice: [Option<f64>; 2],
    dtls: [Option<f64>; 2],
    sctp: [Option<f64>; 2],
    open: [Option<f64>; 2],
    end: Option<String>,
}

fn both(pair: &[Option<f64>; 2]) -> Option<f64> {
    Some(pair[0]?.max(pair[1]?))
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:>5.0}")).unwrap_or_else(|| "    -".into())
}

/// Summary over trials: phase durations of every opened link, and counts of what went wrong.
#[derive(Default)]
pub(crate) struct Totals {
    phases: BTreeMap<&'static str, Samples>,
    counts: BTreeMap<String, u64>,
}

impl Totals {
    fn phase(&mut self, name: &'static str, from: Option<f64>, to: Option<f64>) {
        if let (Some(a), Some(b)) = (from, to) {
            self.phases.entry(name).or_default().push(b - a);
        }
    }

    fn count(&mut self, what: String) {
        *self.counts.entry(what).or_default() += 1;
    }

    /// Prints the medians of every phase and the counts.
    pub(crate) fn print(&self) {
        println!("  phases over every link that opened (ms) min/median/max:");
        for (name, s) in &self.phases {
            println!("    {name:<28} {}", s.summary(0));
        }
        let counts: Vec<String> = self.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  counts: {}", if counts.is_empty() { "-".into() } else { counts.join(", ") });
    }
}

/// Prints one trial's joins and link attempts, and adds them to `totals`.
pub(crate) fn report(dir: &Path, spawned_us: &[u64], totals: &mut Totals) {
    let n = spawned_us.len();
    let mut logged = BTreeMap::new();
    let marks = read(dir, n, &mut logged);
    for (line, count) in &logged {
        println!("  logged {count}x: {line}");
    }
    let t0 = spawned_us.iter().copied().min().unwrap_or(0);
    let at = |us: u64| (us.saturating_sub(t0)) as f64 / 1000.0;
    let mut attempts: BTreeMap<String, Attempt> = BTreeMap::new();
    println!("  joins (ms from the first spawn): worker spawn start ws_connected registered first_dial last_open");
    for (i, spawned) in spawned_us.iter().enumerate() {
        let me = format!("w{i}");
        let first = |step: &str| marks.iter().find(|m| m.me == me && m.step == step).map(|m| at(m.us));
        let last_open = marks.iter().rfind(|m| m.me == me && m.step == "link_open").map(|m| at(m.us));
        println!(
            "    {me:<4} {} {} {} {} {} {}",
            ms(Some(at(*spawned))),
            ms(first("start")),
            ms(first("ws_connected")),
            ms(first("registered")),
            ms(first("dial")),
            ms(last_open)
        );
        totals.phase("join: spawn -> registered", Some(at(*spawned)), first("registered"));
    }
    for m in &marks {
        if m.session.is_empty() {
            continue;
        }
        let a = attempts.entry(m.session.clone()).or_default();
        let offerer = m.session.split('#').next().unwrap_or("").to_string();
        let side = usize::from(m.me != offerer);
        if a.offerer.is_empty() {
            a.offerer = offerer.clone();
        }
        if a.answerer.is_empty() && m.me != offerer {
            a.answerer = m.me.clone();
        } else if a.answerer.is_empty() && m.me == offerer {
            a.answerer = m.peer.clone();
        }
        let t = at(m.us);
        let kind = m.fields["kind"].as_str().unwrap_or("");
        let path = m.fields["path"].as_str().unwrap_or("").to_string();
        match m.step.as_str() {
            "dial" => {
                a.dial = Some(t);
                a.why = m.fields["why"].as_str().unwrap_or("").to_string();
            }
            "signal_in" if kind == "offer" => a.offer_in = Some((t, path)),
            "signal_in" if kind == "answer" => a.answer_in = Some((t, path)),
            "signal_in" if kind == "candidate" => a.candidates_in += 1,
            "signal_out" => {
                let queued = m.fields["queued_us"].as_u64().map(at).unwrap_or(t);
                match kind {
                    "offer" => a.offer_out = a.offer_out.or(Some(queued)),
                    "answer" => a.answer_out = a.answer_out.or(Some(queued)),
                    _ => {}
                }
                totals.phase(
                    if path == "relay" { "signal send wait (relay)" } else { "signal send wait (ws)" },
                    Some(queued),
                    Some(t),
                );
            }
            "ice_connected" => a.ice[side] = a.ice[side].or(Some(t)),
            "dtls_connected" => a.dtls[side] = a.dtls[side].or(Some(t)),
            "sctp_open" => a.sctp[side] = a.sctp[side].or(Some(t)),
            "link_open" => a.open[side] = a.open[side].or(Some(t)),
            "reject" => a.end = Some(format!("rejected: {}", m.fields["reason"].as_str().unwrap_or(""))),
            "link_closed" if both(&a.open).is_none() => {
                a.end = Some(format!("closed: {}", m.fields["reason"].as_str().unwrap_or("")))
            }
            _ => {}
        }
    }
    println!("  link attempts (ms from the first spawn; ICE/DTLS/SCTP/open = both sides done):");
    println!("    offerer>answerer  why         dial  offer_in(path)  answer_in(path)   ice  dtls  sctp  open");
    for a in attempts.values() {
        let path = |v: &Option<(f64, String)>| match v {
            Some((t, p)) => format!("{} {:<5}", ms(Some(*t)), p),
            None => "    -      ".into(),
        };
        println!(
            "    {:<8}{:<9} {:<10} {}  {}     {}   {} {} {} {}{}",
            a.offerer,
            format!(">{}", a.answerer),
            a.why,
            ms(a.dial),
            path(&a.offer_in),
            path(&a.answer_in),
            ms(both(&a.ice)),
            ms(both(&a.dtls)),
            ms(both(&a.sctp)),
            ms(both(&a.open)),
            a.end.as_deref().map(|e| format!("  {e}")).unwrap_or_default()
        );
        if a.end.is_some() && both(&a.open).is_none() {
            let side = |i: usize| format!("ice {} dtls {} sctp {}", ms(a.ice[i]), ms(a.dtls[i]), ms(a.sctp[i]));
            println!("      offerer: {}; answerer: {}", side(0), side(1));
        }
        totals.count(format!("dials by {}", if a.why.is_empty() { "?" } else { &a.why }));
        if both(&a.open).is_none() {
            totals.count("attempts that did not open".into());
            continue;
        }
        let answer_in = a.answer_in.as_ref().map(|(t, _)| *t);
        let offer_in = a.offer_in.as_ref().map(|(t, _)| *t);
        totals.phase("link: dial -> offer out (set-up)", a.dial, a.offer_out);
        totals.phase("link: offer out -> in", a.offer_out, offer_in);
        totals.phase("link: offer in -> answer out (set-up)", offer_in, a.answer_out);
        totals.phase("link: answer out -> in", a.answer_out, a.answer_in.as_ref().map(|(t, _)| *t));
        totals.phase("link: dial -> offer in", a.dial, offer_in);
        totals.phase("link: dial -> answer in", a.dial, answer_in);
        totals.phase("link: answer in -> ICE (both)", answer_in, both(&a.ice));
        totals.phase("link: ICE -> DTLS (both)", both(&a.ice), both(&a.dtls));
        totals.phase("link: DTLS -> SCTP (both)", both(&a.dtls), both(&a.sctp));
        totals.phase("link: SCTP -> open (both)", both(&a.sctp), both(&a.open));
        totals.phase("link: dial -> open (both)", a.dial, both(&a.open));
    }
}
