//! What the stress and soak runs watch while traffic flows: wanlb's memory and descriptors
//! (from /proc), its flows and drop counters (from /metrics, or its SIGUSR1 log when that
//! does not answer), how `wanlb status` answers, conntrack's table for the kernel recipe, and
//! what the gateway namespace holds before and after. Every look has a deadline, so a wanlb
//! that freezes or dies is reported, not waited for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Bed, Proc, Result, median};

/// How long `wanlb status` may take before it counts as unanswered.
pub const STATUS_DEADLINE: Duration = Duration::from_secs(5);
/// How long a look at /metrics (or another small read) may take.
pub const LOOK_DEADLINE: Duration = Duration::from_secs(3);

/// From /proc/PID/status: resident memory now and at its peak, and threads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

/// The memory lines of /proc/PID/status; None once the process has exited (a zombie has
/// none).
pub fn proc_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// One series of a Prometheus text exposition: `name{labels} value`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// As written, braces included ("" when it has none).
    pub labels: String,
    pub value: f64,
}

impl Series {
    pub fn key(&self) -> String {
        format!("{}{}", self.name, self.labels)
    }
}

/// Every series of `text` (comments and lines that do not parse are skipped).
pub fn parse_metrics(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, rest) = match l.find('{') {
                Some(open) => {
                    let close = open + l[open..].find('}')?;
                    (&l[..=close], &l[close + 1..])
                }
                None => l.split_once(' ')?,
            };
            let (name, labels) = key.split_at(key.find('{').unwrap_or(key.len()));
            Some(Series {
                name: name.trim().to_string(),
                labels: labels.to_string(),
                value: rest.split_whitespace().next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether a series counts packets or flows turned away or thrown out: whatever names
/// wanlb gives them, now or later (drops, evictions, refusals, rejections, shedding).
pub fn is_drop_or_eviction(name: &str) -> bool {
    ["drop", "evict", "refus", "reject", "shed"]
        .iter()
        .any(|w| name.contains(w))
}

/// Live flows: the sum of `wanlb_flows_active` over its protocols.
pub fn metrics_flows(series: &[Series]) -> Option<f64> {
    let flows: Vec<f64> = series
        .iter()
        .filter(|s| s.name == "wanlb_flows_active")
        .map(|s| s.value)
        .collect();
    (!flows.is_empty()).then(|| flows.iter().sum())
}

/// The flows and drop counters of the last report wanlb logged on SIGUSR1: its `status`
/// line's `flows=` and every `NAME=N` of its `drops` line (engine reasons and I/O counters).
pub fn log_report(log: &str) -> (Option<f64>, Vec<Series>) {
    let last = |word: &str| {
        log.lines()
            .rev()
            .find(|l| l.split_whitespace().any(|w| w == word) && l.contains('='))
    };
    let flows = last("status").and_then(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("flows=")?.parse().ok())
    });
    let drops = last("drops")
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| {
                    let w = w.strip_prefix("engine=").unwrap_or(w);
                    let (reason, n) = w.split_once('=')?;
                    Some(Series {
                        name: "wanlb_drops_total".into(),
                        labels: format!("{{reason=\"{reason}\"}}"),
                        value: n.parse().ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    (flows, drops)
}

/// wanlb's warnings and errors in `log`, each once with how often it came (its time left
/// out), at most `most` of them in the order they first came.
pub fn warnings(log: &str, most: usize) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        let text: String = line[at + 1..].chars().take(200).collect();
        match seen.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => seen.push((text, 1)),
        }
    }
    seen.into_iter()
        .take(most)
        .map(|(t, n)| if n > 1 { format!("{n} times: {t}") } else { t })
        .collect()
}

/// conntrack's statistics (/proc/net/stat/nf_conntrack, one row of hexadecimal numbers per
/// CPU), summed over the CPUs; `entries` is the table's size, the same on every row.
pub fn conntrack_stats(text: &str) -> Vec<(String, u64)> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut sums = vec![0u64; names.len()];
    for line in lines {
        for (i, v) in line.split_whitespace().enumerate().take(names.len()) {
            let v = u64::from_str_radix(v, 16).unwrap_or(0);
            sums[i] = if names[i] == "entries" {
                v
            } else {
                sums[i] + v
            };
        }
    }
    names.into_iter().map(String::from).zip(sums).collect()
}

/// What differs between two looks at the gateway namespace: "- LINE" gone, "+ LINE" new.
pub fn state_diff(before: &str, after: &str) -> Vec<String> {
    let gone = before
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .map(|l| format!("- {l}"));
    let new = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(|l| format!("+ {l}"));
    gone.chain(new).collect()
}

/// The gateway namespace as wanlb must leave it: rules, routes, nftables, links,
/// forwarding (as tests/common's `gateway_state`).
pub fn gateway_state(bed: &Bed) -> Result<String> {
    let mut s = String::new();
    for cmd in [
        &["ip", "-4", "rule"][..],
        &["ip", "-6", "rule"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["nft", "list", "ruleset"],
        &["ip", "-o", "link"],
        &["sysctl", "net.ipv4.ip_forward"],
    ] {
        s += &format!("$ {}\n{}", cmd.join(" "), bed.run("gw", cmd)?);
    }
    Ok(s)
}

/// Runs `cmd` to its end, or for `limit` at most (then stops it): whether it succeeded, its
/// output (stdout and stderr), and how long it ran; an error if it did not end in time.
pub fn run_within(cmd: std::process::Command, limit: Duration) -> Result<(bool, String, Duration)> {
    let mut p = Proc::start(cmd)?;
    match p.wait_within(limit) {
        Some((status, took)) => Ok((status.success(), p.output(), took)),
        None => Err(format!("no answer within {} s", limit.as_secs_f64())),
    }
}

/// One look at the process and its table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since watching began.
    pub t: f64,
    pub rss_mib: Option<f64>,
    pub hwm_mib: Option<f64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    /// wanlb's live flows (/metrics), or conntrack's entries for the kernel recipe.
    pub flows: Option<f64>,
}

/// One `wanlb status`: how long it took, or why it gave no answer.
#[derive(Clone, Debug, Serialize)]
pub struct Poll {
    pub t: f64,
    pub ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PollSummary {
    pub polls: usize,
    pub answered: usize,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The longest run of unanswered polls, in seconds from the first of them to the next
    /// poll (None if every poll was answered).
    pub longest_silence_s: Option<f64>,
}

pub fn summarize_polls(polls: &[Poll]) -> PollSummary {
    let ms: Vec<f64> = polls.iter().filter_map(|p| p.ms).collect();
    // runs of unanswered polls: from the first's start to the next poll's (or, at the end,
    // to the last one's deadline)
    let mut longest: Option<f64> = None;
    let mut began: Option<f64> = None;
    for (i, p) in polls.iter().enumerate() {
        if p.ms.is_some() {
            began = None;
            continue;
        }
        let b = *began.get_or_insert(p.t);
        let to = polls
            .get(i + 1)
            .map_or(p.t + STATUS_DEADLINE.as_secs_f64(), |next| next.t);
        longest = Some(longest.map_or(to - b, |l: f64| l.max(to - b)));
    }
    PollSummary {
        polls: polls.len(),
        answered: ms.len(),
        median_ms: (!ms.is_empty()).then(|| median(ms.clone())),
        max_ms: ms.iter().copied().reduce(f64::max),
        longest_silence_s: longest,
    }
}

/// What the watchers saw.
#[derive(Default)]
pub struct Seen {
    pub samples: Vec<Sample>,
    pub polls: Vec<Poll>,
    /// The last /metrics that answered: when, and its text.
    pub metrics: Option<(f64, String)>,
    /// When the watched process was first seen gone.
    pub gone_at: Option<f64>,
}

/// What to watch.
pub struct Target {
    /// wanlb's process id (its memory, descriptors, /metrics); None: the kernel recipe
    /// (conntrack's entries).
    pub wanlb: Option<u32>,
    /// Poll `wanlb status` every second.
    pub status: bool,
    pub every: Duration,
}

/// Watcher threads, until `finish`.
pub struct Watch {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Watch {
    pub fn start(bed: &Bed, target: Target) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let start = Instant::now();
        let mut threads = Vec::new();
        {
            let (bed, stop, seen) = (bed.clone(), stop.clone(), seen.clone());
            let (wanlb, every) = (target.wanlb, target.every);
            threads.push(std::thread::spawn(move || {
                every_until(&stop, every, || {
                    let t = start.elapsed().as_secs_f64();
                    let sample = match wanlb {
                        Some(pid) => look_at_wanlb(&bed, pid, t, &seen),
                        None => Sample {
                            t,
                            flows: conntrack_count(&bed).map(|n| n as f64),
                            ..Sample::default()
                        },
                    };
                    seen.lock().expect("watch lock").samples.push(sample);
                });
            }));
        }
        if target.status {
            let (bed, stop, seen) = (bed.clone(), stop.clone(), seen.clone());
            threads.push(std::thread::spawn(move || {
                every_until(&stop, Duration::from_secs(1), || {
                    let t = start.elapsed().as_secs_f64();
                    let wanlb = bed.bin.join("wanlb").display().to_string();
                    let poll = match run_within(bed.cmd("gw", &[&wanlb, "status"]), STATUS_DEADLINE)
                    {
                        Ok((true, _, took)) => Poll {
                            t,
                            ms: Some(took.as_secs_f64() * 1e3),
                            error: None,
                        },
                        Ok((false, out, _)) => Poll {
                            t,
                            ms: None,
                            error: Some(out.lines().last().unwrap_or("failed").to_string()),
                        },
                        Err(e) => Poll {
                            t,
                            ms: None,
                            error: Some(e),
                        },
                    };
                    seen.lock().expect("watch lock").polls.push(poll);
                });
            }));
        }
        Watch {
            stop,
            threads,
            seen,
        }
    }

    /// Stops the watchers (within a deadline of their own) and returns what they saw.
    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().expect("watch lock"))
    }
}

/// Runs `f` every `every` (or as soon as it returns, if it took longer) until `stop`.
fn every_until(stop: &AtomicBool, every: Duration, mut f: impl FnMut()) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next += every;
            f();
            continue;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn look_at_wanlb(bed: &Bed, pid: u32, t: f64, seen: &Mutex<Seen>) -> Sample {
    let mut sample = Sample {
        t,
        ..Sample::default()
    };
    let memory = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(proc_memory);
    let Some(m) = memory else {
        let mut s = seen.lock().expect("watch lock");
        s.gone_at.get_or_insert(t);
        return sample;
    };
    sample.rss_mib = Some(m.rss_kib as f64 / 1024.0);
    sample.hwm_mib = Some(m.hwm_kib as f64 / 1024.0);
    sample.threads = Some(m.threads);
    sample.fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64);
    if let Ok((true, text, _)) = run_within(metrics_get(bed), LOOK_DEADLINE) {
        sample.flows = metrics_flows(&parse_metrics(&text));
        seen.lock().expect("watch lock").metrics = Some((t, text));
    }
    sample
}

/// `GET /metrics` from the wanlb on gw (its default --listen).
pub fn metrics_get(bed: &Bed) -> std::process::Command {
    let probe = bed.probe();
    bed.cmd(
        "gw",
        &[
            &probe,
            "http-get",
            "--addr",
            "127.0.0.1:9911",
            "--path",
            "/metrics",
        ],
    )
}

/// conntrack's entries in the gateway's namespace (None before its module is in use there).
pub fn conntrack_count(bed: &Bed) -> Option<u64> {
    let cmd = bed.cmd("gw", &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]);
    match run_within(cmd, LOOK_DEADLINE) {
        Ok((true, out, _)) => out.trim().parse().ok(),
        _ => None,
    }
}

/// The flows and drop counters wanlb reports now: from /metrics, or else (the control port
/// does not answer) from the report it logs on SIGUSR1. Returns where they came from.
pub fn final_counters(bed: &Bed, wanlb: &Proc) -> (Option<f64>, Vec<Series>, &'static str) {
    if let Ok((true, text, _)) = run_within(metrics_get(bed), LOOK_DEADLINE) {
        let series = parse_metrics(&text);
        let flows = metrics_flows(&series);
        let drops = series
            .into_iter()
            .filter(|s| is_drop_or_eviction(&s.name))
            .collect();
        return (flows, drops, "/metrics");
    }
    wanlb.signal("-USR1");
    let logged = wanlb.wait_until(LOOK_DEADLINE, |log| {
        log.lines()
            .any(|l| l.contains(" drops ") && l.contains('='))
    });
    if logged.is_err() {
        return (
            None,
            Vec::new(),
            "nowhere: neither /metrics nor SIGUSR1 answered",
        );
    }
    let (flows, drops) = log_report(&wanlb.output());
    (flows, drops, "the SIGUSR1 log (/metrics did not answer)")
}
