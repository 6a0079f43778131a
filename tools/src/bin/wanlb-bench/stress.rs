//! `stress`: wanlb attacked as a LAN host, the internet and a local user would attack it, one
//! phase at a time, each on a fresh wanlb (and on the kernel recipe where the attack applies
//! to it), while a second LAN host opens connections and `wanlb status` is asked every
//! second. Per phase: peak memory, flows, drops and evictions by reason, the second host's
//! success, the status answer times, how long SIGTERM takes and whether the gateway
//! namespace was left as it was found.

use std::time::Duration;

use serde::Serialize;

use super::report;
use super::watch::{self, Poll, PollSummary, Sample, Series, Target, Watch, run_within};
use super::{Bed, Cli, Gateway, Proc, Result, quiet_internet};

/// The port forward the SYN flood aims at: isp1's port 8080 to the LAN host's.
pub const FORWARD: &str = "tcp:8080=198.18.3.10:8080@isp1";
/// wanlb's soft open-file limit: what systemd gives a service that sets no LimitNOFILE=,
/// whatever the shell running the bench allows (the hard limit stays as it is).
pub const WANLB_NOFILE: &str = "--nofile=1024:";
/// What wanlb's health checks ping: an address of the simulated internet.
const HEALTH_TARGET: &str = "198.19.255.1";
/// How long wanlb may take to stop after SIGTERM before it is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Slack beyond a phase's length for its traffic to finish (the honest host's last attempts
/// time out within 5 s).
const TRAFFIC_SLACK: Duration = Duration::from_secs(30);
pub const CROWD: &str = "1000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Spray,
    Spoofed,
    SynFlood,
    ControlCrowd,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Spray,
        Phase::Spoofed,
        Phase::SynFlood,
        Phase::ControlCrowd,
    ];

    pub fn number(self) -> u8 {
        match self {
            Phase::Spray => 1,
            Phase::Spoofed => 2,
            Phase::SynFlood => 3,
            Phase::ControlCrowd => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Spray => "spray",
            Phase::Spoofed => "spoofed",
            Phase::SynFlood => "SYN flood",
            Phase::ControlCrowd => "control crowd",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Phase::Spray => {
                "the LAN host 198.18.3.10 sends new UDP flows as fast as it can from its own \
                 address (64 source ports, random destinations of 198.19.0.0/16 and ports), \
                 none answered"
            }
            Phase::Spoofed => {
                "the same host sends from made-up sources: random addresses of the LAN's /24 \
                 (not the real hosts' or the gateway's) and random ports"
            }
            Phase::SynFlood => {
                "the internet sends SYNs from random sources of 198.19.0.0/16 to the port \
                 forward isp1:8080 -> 198.18.3.10:8080 (a listener there answers)"
            }
            Phase::ControlCrowd => {
                "a local user holds 1000 idle connections to the control port \
                 (127.0.0.1:9911) and pipelines GET /status on one more without reading"
            }
        }
    }

    /// Whether the attack means anything to the kernel recipe (it has no control port).
    pub fn on_kernel(self) -> bool {
        self != Phase::ControlCrowd
    }

    /// The namespace the attack comes from, and its command.
    fn attack(self, probe: &str, seconds: &str) -> (&'static str, Vec<String>) {
        let spray = |more: &[&str]| {
            let mut v = vec![probe, "spray", "--seconds", seconds];
            v.extend_from_slice(more);
            v.into_iter().map(String::from).collect()
        };
        match self {
            Phase::Spray => (
                "lan",
                spray(&[
                    "--src",
                    "198.18.3.10",
                    "--src-ports",
                    "40000-40063",
                    "--dst",
                    "198.19.0.0/16",
                ]),
            ),
            Phase::Spoofed => (
                "lan",
                spray(&[
                    "--src",
                    "198.18.3.0/24",
                    "--exclude",
                    "198.18.3.10",
                    "--exclude",
                    "198.18.3.11",
                    "--exclude",
                    "198.18.3.100",
                    "--dst",
                    "198.19.0.0/16",
                ]),
            ),
            Phase::SynFlood => (
                "inet",
                spray(&[
                    "--kind",
                    "syn",
                    "--src",
                    "198.19.0.0/16",
                    "--dst",
                    "198.18.1.1",
                    "--dst-ports",
                    "8080",
                ]),
            ),
            Phase::ControlCrowd => (
                "gw",
                [
                    "prlimit",
                    "--nofile=4096:",
                    probe,
                    "http-crowd",
                    "--addr",
                    "127.0.0.1:9911",
                    "--idle",
                    CROWD,
                    "--pipeline",
                    "--seconds",
                    seconds,
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ),
        }
    }
}

/// What the second LAN host got through (from `wanlb-probe churn`'s total line).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Honest {
    pub tcp_ok: u64,
    pub tcp_tried: u64,
    pub udp_ok: u64,
    pub udp_tried: u64,
    pub tcp_p50_ms: Option<f64>,
    pub tcp_max_ms: Option<f64>,
    pub udp_p50_ms: Option<f64>,
    pub udp_max_ms: Option<f64>,
    /// Why the others failed ("tcp_error_connect_timeout", ...) and how often.
    pub errors: Vec<(String, u64)>,
}

/// The `KEY VALUE` pairs of a line after its first word.
pub fn pairs(line: &str) -> Vec<(&str, &str)> {
    let w: Vec<&str> = line.split_whitespace().skip(1).collect();
    w.chunks(2)
        .filter_map(|c| Some((c[0], *c.get(1)?)))
        .collect()
}

pub fn parse_honest(out: &str) -> Option<Honest> {
    let line = out.lines().find(|l| l.starts_with("total "))?;
    let kv = pairs(line);
    let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let n = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let ms = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
    let (tcp_ok, udp_ok) = (n("tcp_ok")?, n("udp_ok")?);
    Some(Honest {
        tcp_ok,
        tcp_tried: tcp_ok + n("tcp_failed")?,
        udp_ok,
        udp_tried: udp_ok + n("udp_failed")?,
        tcp_p50_ms: ms("tcp_p50_ms"),
        tcp_max_ms: ms("tcp_max_ms"),
        udp_p50_ms: ms("udp_p50_ms"),
        udp_max_ms: ms("udp_max_ms"),
        errors: kv
            .iter()
            .filter(|(k, _)| k.contains("_error_"))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    })
}

/// The word after `key` in `text`.
pub fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

/// The packet rate a `spray` reported.
pub fn sent_rate(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("sent "))?;
    word_after(line, "rate")?.parse().ok()
}

/// How wanlb ended, and what it left in the gateway namespace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stop {
    /// Seconds from SIGTERM to its exit (None: killed, or it had died before).
    pub seconds: Option<f64>,
    pub how: String,
    /// Whether the gateway namespace was as before wanlb started.
    pub clean: bool,
    /// What differed ("- " gone, "+ " new).
    pub leftover: Vec<String>,
    /// When it was not: whether a start and a clean stop of wanlb (the start replays the
    /// undo journal) put it right.
    pub recovered: Option<bool>,
}

/// conntrack in the gateway's namespace, for the kernel recipe.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Conntrack {
    pub max: Option<u64>,
    pub entries_peak: Option<f64>,
    pub entries_end: Option<u64>,
    /// Counters of /proc/net/stat/nf_conntrack that grew during the phase, by how much.
    pub grew: Vec<(String, u64)>,
}

/// One phase on one gateway.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseRun {
    pub phase: Phase,
    pub number: u8,
    pub path: Gateway,
    pub seconds: u64,
    /// Why the phase could not run.
    pub error: Option<String>,
    pub fast_path: Option<bool>,
    /// The attacker's own summary.
    pub attack: String,
    pub attack_pps: Option<f64>,
    /// Packets that reached the simulated internet during the phase.
    pub delivered: Option<u64>,
    pub honest: Option<Honest>,
    pub status: Option<PollSummary>,
    pub rss_start_mib: Option<f64>,
    /// VmHWM: the most wanlb was resident at any time (at the end, or when last seen).
    pub rss_peak_mib: Option<f64>,
    pub fds_peak: Option<u64>,
    pub threads_peak: Option<u64>,
    pub flows_peak: Option<f64>,
    pub flows_end: Option<f64>,
    /// Drop, eviction and refusal counters at the end of the phase.
    pub counters: Vec<Series>,
    pub counters_from: String,
    pub conntrack: Option<Conntrack>,
    /// Packets from LAN addresses that reached the simulated internet untranslated (the
    /// gateway failing open) while the phase ran...
    pub leaked: Option<u64>,
    /// ... and from then until wanlb had stopped and the attack with it.
    pub leaked_stopping: Option<u64>,
    pub stop: Option<Stop>,
    /// What went wrong on the way: wanlb gone, the attack or the host not ending in time.
    pub events: Vec<String>,
    /// The end of wanlb's log when it did not stop cleanly.
    pub log_tail: Option<String>,
    pub samples: Vec<Sample>,
    pub polls: Vec<Poll>,
}

impl PhaseRun {
    pub fn new(phase: Phase, path: Gateway, seconds: u64) -> PhaseRun {
        PhaseRun {
            phase,
            number: phase.number(),
            path,
            seconds,
            error: None,
            fast_path: None,
            attack: String::new(),
            attack_pps: None,
            delivered: None,
            honest: None,
            status: None,
            rss_start_mib: None,
            rss_peak_mib: None,
            fds_peak: None,
            threads_peak: None,
            flows_peak: None,
            flows_end: None,
            counters: Vec::new(),
            counters_from: String::new(),
            conntrack: None,
            leaked: None,
            leaked_stopping: None,
            stop: None,
            events: Vec::new(),
            log_tail: None,
            samples: Vec::new(),
            polls: Vec::new(),
        }
    }

    /// Fills in what the watchers saw.
    fn take(&mut self, seen: watch::Seen) {
        let max =
            |f: fn(&Sample) -> Option<f64>| seen.samples.iter().filter_map(f).reduce(f64::max);
        self.rss_start_mib = seen.samples.first().and_then(|s| s.rss_mib);
        self.rss_peak_mib = max(|s| s.hwm_mib);
        self.flows_peak = max(|s| s.flows);
        self.fds_peak = seen.samples.iter().filter_map(|s| s.fds).max();
        self.threads_peak = seen.samples.iter().filter_map(|s| s.threads).max();
        if let Some(t) = seen.gone_at {
            self.events
                .push(format!("wanlb was gone {t:.0} s into the phase"));
        }
        if self.path == Gateway::Wanlb {
            self.status = Some(watch::summarize_polls(&seen.polls));
        }
        self.samples = seen.samples;
        self.polls = seen.polls;
    }
}

/// The flags wanlb runs with here (after `wanlb run`).
pub fn wanlb_flags(cli: &Cli, state_dir: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--workers",
        &cli.workers.to_string(),
        "--state-dir",
        state_dir,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.extend(wanlb_testkit::EXAMPLE_FLAGS.iter().map(|s| s.to_string()));
    // lines are watched as on a real gateway, where a flood may make them look dead
    args.extend(["--health-target".to_string(), HEALTH_TARGET.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(cli.wanlb_arg.iter().cloned());
    args
}

/// Starts wanlb on gw with the open-file limits of a systemd service, and waits until it is
/// ready.
pub fn start_wanlb(bed: &Bed, cli: &Cli, extra: &[&str]) -> Result<Proc> {
    let wanlb = bed.bin.join("wanlb").display().to_string();
    let state = format!("/tmp/wanlb-bench-{}", bed.prefix);
    let mut args = vec![
        "prlimit".to_string(),
        WANLB_NOFILE.into(),
        wanlb,
        "run".into(),
    ];
    args.extend(wanlb_flags(cli, &state, extra));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::start(bed.cmd("gw", &args))?;
    p.wait_for(" ready ", "wanlb")?;
    Ok(p)
}

/// SIGTERM, and SIGKILL if it still runs [`STOP_DEADLINE`] later: how it ended, and its log.
pub fn stop_wanlb(mut wanlb: Proc) -> (Stop, String) {
    let mut stop = Stop::default();
    match wanlb.child.try_wait() {
        Ok(Some(status)) => stop.how = format!("had already exited ({status})"),
        _ => {
            wanlb.signal("-TERM");
            match wanlb.wait_within(STOP_DEADLINE) {
                Some((status, took)) => {
                    stop.seconds = Some(took.as_secs_f64());
                    stop.how = format!("exited after SIGTERM ({status})");
                }
                None => {
                    let _ = wanlb.child.kill();
                    let _ = wanlb.child.wait();
                    stop.how = format!(
                        "still running {} s after SIGTERM: killed",
                        STOP_DEADLINE.as_secs()
                    );
                }
            }
        }
    }
    (stop, wanlb.output())
}

/// Compares the gateway namespace with `before`; if it differs, one more start and stop of
/// wanlb (the start replays the undo journal) shows whether that puts it right.
pub fn check_left(bed: &Bed, cli: &Cli, before: &str, stop: &mut Stop) {
    match watch::gateway_state(bed) {
        Ok(after) => stop.leftover = watch::state_diff(before, &after),
        Err(e) => stop.leftover = vec![format!("could not look: {e}")],
    }
    stop.clean = stop.leftover.is_empty();
    if !stop.clean {
        let again = start_wanlb(bed, cli, &[]).map(|p| p.stop());
        let now = watch::gateway_state(bed).unwrap_or_default();
        stop.recovered = Some(again.is_ok() && watch::state_diff(before, &now).is_empty());
    }
}

/// The attack and the second host's connections, side by side. The second host's last the
/// phase; the attack goes on until stopped, so that wanlb is stopped while under it.
struct Traffic {
    honest: Proc,
    attack: Proc,
}

impl Traffic {
    fn start(bed: &Bed, phase: Phase, seconds: u64) -> Result<Traffic> {
        let _ = leaked(bed); // counted from here
        let probe = bed.probe();
        let secs = seconds.to_string();
        let honest = Proc::start(bed.cmd("lan2", &[&probe, "churn", "--seconds", &secs]))?;
        // long enough to outlast the phase and wanlb's stop; SIGTERM ends it
        let most = (seconds + STOP_DEADLINE.as_secs() + TRAFFIC_SLACK.as_secs()).to_string();
        let (ns, args) = phase.attack(&probe, &most);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let attack = Proc::start(bed.cmd(ns, &args))?;
        Ok(Traffic { honest, attack })
    }

    /// Waits for the second host's connections to end (with a deadline) and reads them.
    fn wait_honest(&mut self, run: &mut PhaseRun) {
        let limit = Duration::from_secs(run.seconds) + TRAFFIC_SLACK;
        if self.honest.wait_within(limit).is_none() {
            run.events
                .push("the second host's connections did not end in time: stopped".into());
        }
        let out = self.honest.output();
        run.honest = parse_honest(&out);
        if run.honest.is_none() {
            run.events.push(format!(
                "the second host reported nothing: {}",
                super::tail(&out)
            ));
        }
    }

    /// Stops the attack and reads its summary.
    fn stop_attack(mut self, run: &mut PhaseRun) {
        self.attack.signal("-TERM");
        if self.attack.wait_within(TRAFFIC_SLACK).is_none() {
            run.events
                .push("the attacker did not stop on SIGTERM: killed".into());
        }
        run.attack = self.attack.output().trim().to_string();
        run.attack_pps = sent_rate(&run.attack);
    }
}

fn wanlb_phase(bed: &Bed, cli: &Cli, phase: Phase, seconds: u64) -> PhaseRun {
    let mut run = PhaseRun::new(phase, Gateway::Wanlb, seconds);
    if let Err(e) = wanlb_phase_in(bed, cli, &mut run) {
        run.error = Some(e);
    }
    run
}

fn wanlb_phase_in(bed: &Bed, cli: &Cli, run: &mut PhaseRun) -> Result<()> {
    let before = watch::gateway_state(bed)?;
    let wanlb = start_wanlb(bed, cli, &["--forward", FORWARD])?;
    run.fast_path = Some(wanlb.output().contains("kernel fast path attached"));
    let pid = wanlb.child.id();
    let rx = bed.internet_rx().ok();
    let watching = Watch::start(
        bed,
        Target {
            wanlb: Some(pid),
            status: true,
            every: Duration::from_secs(1),
        },
    );
    let mut traffic = Traffic::start(bed, run.phase, run.seconds)?;
    traffic.wait_honest(run);
    let seen = watching.finish();
    run.take(seen);
    run.delivered = rx.zip(bed.internet_rx().ok()).map(|(a, b)| b - a);
    let (flows, counters, from) = watch::final_counters(bed, &wanlb);
    run.flows_end = flows;
    run.flows_peak = run.flows_peak.into_iter().chain(flows).reduce(f64::max);
    run.counters = counters;
    run.counters_from = from.into();
    // the peak of its whole life, read as late as it can be
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if let Some(m) = watch::proc_memory(&status) {
        run.rss_peak_mib = Some(m.hwm_kib as f64 / 1024.0);
    }
    run.leaked = leaked(bed);
    // stopped under attack, as an admin (or systemd) would stop it
    let (mut stop, log) = stop_wanlb(wanlb);
    traffic.stop_attack(run);
    run.leaked_stopping = leaked(bed);
    check_left(bed, cli, &before, &mut stop);
    if stop.seconds.is_none() || !stop.clean {
        run.log_tail = Some(super::tail(&log));
    }
    run.events.extend(
        watch::warnings(&log, 6)
            .into_iter()
            .map(|w| format!("wanlb logged `{w}`")),
    );
    run.stop = Some(stop);
    Ok(())
}

fn kernel_phase(bed: &Bed, phase: Phase, seconds: u64) -> PhaseRun {
    let mut run = PhaseRun::new(phase, Gateway::Kernel, seconds);
    let outcome = bed.testbed("kernel").and_then(|()| {
        if phase == Phase::SynFlood {
            // the kernel recipe's port forward
            bed.run(
                "gw",
                &[
                    "nft",
                    "add chain ip kernel_recipe prerouting { type nat hook prerouting priority dstnat; policy accept; }",
                ],
            )?;
            bed.run(
                "gw",
                &[
                    "nft",
                    "add rule ip kernel_recipe prerouting iifname \"eth1\" tcp dport 8080 dnat to 198.18.3.10:8080",
                ],
            )?;
        }
        kernel_phase_in(bed, &mut run)
    });
    if let Err(e) = outcome {
        run.error = Some(e);
    }
    if let Err(e) = bed.testbed("nokernel") {
        run.events.push(e);
    }
    flush_conntrack(bed);
    run
}

fn kernel_phase_in(bed: &Bed, run: &mut PhaseRun) -> Result<()> {
    flush_conntrack(bed);
    let stats = || {
        run_within(
            bed.cmd("gw", &["cat", "/proc/net/stat/nf_conntrack"]),
            watch::LOOK_DEADLINE,
        )
        .map(|(_, out, _)| watch::conntrack_stats(&out))
        .unwrap_or_default()
    };
    let before = stats();
    let rx = bed.internet_rx().ok();
    let watching = Watch::start(
        bed,
        Target {
            wanlb: None,
            status: false,
            every: Duration::from_secs(1),
        },
    );
    let mut traffic = Traffic::start(bed, run.phase, run.seconds)?;
    traffic.wait_honest(run);
    let seen = watching.finish();
    run.take(seen);
    traffic.stop_attack(run);
    run.leaked = leaked(bed);
    run.delivered = rx.zip(bed.internet_rx().ok()).map(|(a, b)| b - a);
    let after = stats();
    let max = bed
        .run("gw", &["cat", "/proc/sys/net/netfilter/nf_conntrack_max"])
        .or_else(|_| {
            std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
                .map_err(|e| e.to_string())
        })
        .ok()
        .and_then(|s| s.trim().parse().ok());
    run.conntrack = Some(Conntrack {
        max,
        entries_peak: run.flows_peak,
        entries_end: watch::conntrack_count(bed),
        grew: conntrack_growth(&before, &after),
    });
    Ok(())
}

/// The counters that grew from `before` to `after` (the table's size left out).
pub fn conntrack_growth(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter(|(name, _)| name != "entries")
        .filter_map(|(name, a)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            (*a > b).then(|| (name.clone(), a - b))
        })
        .collect()
}

/// Counts, in the simulated internet, packets from LAN addresses: a gateway that translates
/// (or fails closed) lets none through.
fn count_leaks(bed: &Bed) -> Result<()> {
    let rules = "table ip bench_leak {\n counter lan_sources {}\n chain pre {\n  type filter \
                 hook prerouting priority raw - 10; policy accept;\n  ip saddr 198.18.3.0/24 \
                 counter name \"lan_sources\"\n }\n}\n";
    let mut nft = bed
        .cmd("inet", &["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft in inet: {e}"))?;
    let written =
        std::io::Write::write_all(&mut nft.stdin.take().expect("piped"), rules.as_bytes());
    match (written, nft.wait()) {
        (Ok(()), Ok(s)) if s.success() => Ok(()),
        other => Err(format!("nft in inet: {other:?}")),
    }
}

/// The packets from LAN addresses the internet saw since the last look (which starts the
/// count again).
fn leaked(bed: &Bed) -> Option<u64> {
    let out = bed
        .run(
            "inet",
            &["nft", "reset", "counter", "ip", "bench_leak", "lan_sources"],
        )
        .ok()?;
    counter_packets(&out)
}

/// The packet count in `nft list counter` (or `reset counter`) output.
pub fn counter_packets(text: &str) -> Option<u64> {
    word_after(text, "packets")?.parse().ok()
}

/// Empties conntrack's table in the gateway's namespace, so a phase starts from none (its
/// entries outlive the kernel recipe's rules).
fn flush_conntrack(bed: &Bed) {
    let _ = run_within(bed.cmd("gw", &["conntrack", "-F"]), watch::LOOK_DEADLINE);
}

pub fn run(bed: &Bed, cli: &Cli) -> Result<()> {
    let seconds = cli.seconds.unwrap_or(60);
    let mut phases = Vec::new();
    for n in &cli.phases {
        let phase = Phase::ALL
            .into_iter()
            .find(|p| p.number() == *n)
            .ok_or(format!("--phases: {n} is not a phase (1 to 4)"))?;
        phases.push(phase);
    }
    bed.testbed("lan2")?;
    quiet_internet(bed)?;
    count_leaks(bed)?;
    let probe = bed.probe();
    let internet = Proc::start(bed.cmd(
        "inet",
        &[
            &probe,
            "serve",
            "--udp",
            "198.19.0.0/24",
            "--tcp",
            "0.0.0.0:9000",
        ],
    ))?;
    internet.wait_for("listening", "the internet's reflector and echo")?;
    let listener = Proc::start(bed.cmd("lan", &[&probe, "serve", "--tcp", "198.18.3.10:8080"]))?;
    listener.wait_for("listening", "the port forward's listener")?;
    let load_before = report::load_average();
    let mut runs = Vec::new();
    for phase in phases {
        let mut paths = vec![Gateway::Wanlb];
        if phase.on_kernel() && !cli.no_kernel {
            paths.push(Gateway::Kernel);
        }
        for path in paths {
            eprintln!(
                "stress phase {} ({}) on {}, {seconds} s: {}",
                phase.number(),
                phase.name(),
                path.name(),
                phase.describe()
            );
            let run = match path {
                Gateway::Wanlb => wanlb_phase(bed, cli, phase, seconds),
                Gateway::Kernel => kernel_phase(bed, phase, seconds),
            };
            eprintln!("  {}", report::one_line(&run));
            runs.push(run);
        }
    }
    drop((internet, listener));
    let meta = format!(
        "{} Load average (1, 5, 15 min) before: {load_before}; after: {}.",
        report::machine(cli),
        report::load_average()
    );
    let flags = wanlb_flags(cli, "DIR", &["--forward", FORWARD]).join(" ");
    let md = format!(
        "# wanlb under stress\n\n{meta}\n{}",
        report::markdown(&runs, seconds, &flags)
    );
    let json = serde_json::json!({
        "meta": meta,
        "stress": {
            "seconds": seconds,
            "wanlb": format!("prlimit {WANLB_NOFILE} wanlb run {flags}"),
            "runs": runs,
        },
    });
    report::write_report(cli, &md, &json, None)
}
