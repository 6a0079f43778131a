//! wanlb-bench: wanlb against the kernel recipe it replaces, on the netns testbed, in one run.
//!
//! Each repetition measures the kernel recipe and then wanlb (alternating, so drift hits both
//! alike); the report gives medians, the ratio wanlb/kernel per line, a JSON file and an SVG
//! chart. scripts/bench.sh builds this and brings the testbed up and down around it.
//!
//! `failover` measures wanlb alone (the kernel recipe has none): how long a UDP stream and a
//! TCP connection on an uplink are cut off when that uplink's line fails.
//!
//! `stress` floods wanlb (and the kernel recipe, where it applies) as an attacker would while
//! a second LAN host opens connections, and `soak` churns flows for half an hour: see
//! stress.rs and soak.rs beside this file.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wanlb::io::monotonic_ns;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use cases::Cgroup;
use compare::Path;

#[path = "wanlb-bench/cases.rs"]
mod cases;
#[path = "wanlb-bench/compare.rs"]
mod compare;
#[path = "wanlb-bench/failover.rs"]
mod failover;
#[path = "wanlb-bench/measure.rs"]
mod measure;
use failover::*;
#[path = "wanlb-bench/ipv6.rs"]
mod ipv6;
#[path = "wanlb-bench/report.rs"]
mod report;
#[path = "wanlb-bench/soak.rs"]
mod soak;
#[path = "wanlb-bench/stress.rs"]
mod stress;
#[cfg(test)]
#[path = "wanlb-bench/stress_tests.rs"]
mod stress_tests;
#[path = "wanlb-bench/watch.rs"]
mod watch;

#[derive(Parser)]
#[command(
    name = "wanlb-bench",
    about = "wanlb vs the kernel recipe on the netns testbed"
)]
struct Cli {
    /// What to measure (several may be named: `tcp udp first`).
    #[arg(value_enum, default_values = ["all"])]
    what: Vec<What>,
    /// Prefix of the (already created) testbed namespaces.
    #[arg(long)]
    prefix: String,
    /// Repetitions of every measurement (medians are reported) [default: 3; failover: 5].
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds per throughput measurement [default: 5]; stress: per phase [default: 60].
    #[arg(long)]
    seconds: Option<u64>,
    /// soak: how long the flows churn.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// soak: minutes left out as warm-up before RSS must stay flat [default: 6, the UDP
    /// timeout and one more; at most half the run].
    #[arg(long)]
    warmup_minutes: Option<u64>,
    /// stress: the phases to run (1 spray, 2 spoofed sources, 3 SYNs at a port forward,
    /// 4 a crowd on the control port), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    phases: Vec<u8>,
    /// stress: leave out the kernel recipe's runs.
    #[arg(long)]
    no_kernel: bool,
    /// Flows opened for the concurrent-flows measurement.
    #[arg(long, default_value_t = 1_000_000)]
    hold_flows: u32,
    /// wanlb data-path threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Leave out the latency lines of wanlb's userspace path (--offload off), which show what
    /// the first packets of every flow see.
    #[arg(long)]
    no_userspace_ping: bool,
    /// Also measure wanlb without its kernel fast path (`--offload off`) in every repetition
    /// of tcp, udp, first and cost, alternating with the others.
    #[arg(long)]
    userspace: bool,
    /// Leave out plain routing (the gateway forwarding without NAT), which tcp, udp, first
    /// and cost otherwise measure as the floor for any NAT.
    #[arg(long)]
    no_routed: bool,
    /// An argument added to every `wanlb run` (repeatable), e.g. --wanlb-arg=--offload
    /// --wanlb-arg=off to measure the userspace data path alone.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    wanlb_arg: Vec<String>,
    /// Where the report goes.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// Directory with the release binaries.
    #[arg(long, default_value = "target/release")]
    bin: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum What {
    All,
    /// TCP: one stream each way, 8 streams to 8 destinations, 8 streams to one destination.
    Tcp,
    /// 64-byte UDP datagrams over 64 flows, as fast as the sender goes.
    Udp,
    /// Ping round trips through a settled flow (and through wanlb's userspace path).
    Latency,
    /// The first exchange of new flows: 500 request/answer pairs, each from a new socket.
    First,
    /// CPU time per GB at a fixed offered load (3 Gbit/s TCP, 100 kpps 64-byte UDP).
    Cost,
    /// New flows a second, and how many are held.
    Flows,
    /// wanlb alone: a line of isp1 cut beyond the gateway and at the gateway's link.
    Failover,
    /// Floods from a LAN host and the internet, and a crowd on the control port, while a
    /// second LAN host opens connections (not part of `all`).
    Stress,
    /// Flow churn at a steady rate for --minutes, memory sampled (not part of `all`).
    Soak,
    /// IPv6 through both lines against the kernel's own IPv6 recipe (not part of `all`).
    Ipv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Gateway {
    Kernel,
    Wanlb,
}

impl Gateway {
    fn name(self) -> &'static str {
        match self {
            Gateway::Kernel => "kernel",
            Gateway::Wanlb => "wanlb",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Sample {
    metric: &'static str,
    unit: &'static str,
    /// Whether a larger value is better (throughput) or worse (latency, memory).
    higher_is_better: bool,
    path: Path,
    rep: usize,
    value: f64,
}

type Result<T> = std::result::Result<T, String>;

#[derive(Clone)]
struct Bed {
    prefix: String,
    bin: PathBuf,
    script: PathBuf,
}

impl Bed {
    fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}{}", self.prefix, ns)])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, ns: &str, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(ns, args)
            .output()
            .map_err(|e| format!("{args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{args:?} in {ns}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n PREFIX<ns> ARGS` (from outside, so it works whatever runs inside).
    fn ip(&self, ns: &str, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(["-n", &format!("{}{}", self.prefix, ns)])
            .args(args)
            .output()
            .map_err(|e| format!("ip {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn probe(&self) -> String {
        self.bin.join("wanlb-probe").display().to_string()
    }

    fn testbed(&self, action: &str) -> Result<()> {
        let out = Command::new(&self.script)
            .args([action, &self.prefix])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "testbed.sh {action}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn counter(&self, ns: &str, dev: &str, name: &str) -> Result<u64> {
        let v = self.run(
            ns,
            &["cat", &format!("/sys/class/net/{dev}/statistics/{name}")],
        )?;
        v.trim().parse().map_err(|_| format!("bad counter {v:?}"))
    }

    /// Packets that reached the simulated internet (both links).
    fn internet_rx(&self) -> Result<u64> {
        Ok(self.counter("inet", "eth1", "rx_packets")?
            + self.counter("inet", "eth2", "rx_packets")?)
    }
}

/// A child process whose output is collected; killed (SIGTERM, then SIGKILL) on drop.
struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn start(mut cmd: Command) -> Result<Proc> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let out = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for s in streams {
            let sink = out.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(std::result::Result::ok) {
                    let mut o = sink.lock().expect("output lock");
                    o.push_str(&line);
                    o.push('\n');
                }
            }));
        }
        Ok(Proc {
            child,
            out,
            readers,
        })
    }

    fn output(&self) -> String {
        self.out.lock().expect("output lock").clone()
    }

    fn wait_for(&self, text: &str, what: &str) -> Result<()> {
        self.wait_until(Duration::from_secs(30), |out| out.contains(text))
            .map_err(|out| format!("{what} did not start:\n{out}"))
    }

    /// Waits until `done` holds for the output so far; on timeout, the error is the output.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if done(&out) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(out);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `limit` for it to end by itself; then its exit status and how long that
    /// took from now, or None if it still runs.
    fn wait_within(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some((status, start.elapsed()));
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait, and the full output.
    fn stop(mut self) -> String {
        self.signal("-TERM");
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.output()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("-TERM");
            std::thread::sleep(Duration::from_millis(300));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The path under test, set up for as long as it lives.
enum Active<'a> {
    Kernel(&'a Bed),
    Routed(&'a Bed),
    Wanlb {
        proc: Proc,
        /// Where its CPU time is counted, if the benchmark has a cgroup.
        cgroup: Option<Cgroup>,
    },
}

impl Active<'_> {
    fn start<'a>(
        bed: &'a Bed,
        path: Path,
        workers: usize,
        extra: &[&str],
        cgroup: Option<&Cgroup>,
    ) -> Result<Active<'a>> {
        match path {
            Path::Kernel => {
                bed.testbed("kernel")?;
                Ok(Active::Kernel(bed))
            }
            Path::Routed => {
                bed.testbed("routed")?;
                Ok(Active::Routed(bed))
            }
            Path::Wanlb | Path::WanlbOffloadOff => {
                let wanlb = bed.bin.join("wanlb").display().to_string();
                let state = format!("/tmp/wanlb-bench-{}", bed.prefix);
                let workers = workers.to_string();
                let mut args = vec![
                    wanlb.as_str(),
                    "run",
                    "--workers",
                    &workers,
                    "--state-dir",
                    &state,
                ];
                args.extend_from_slice(&wanlb_testkit::EXAMPLE_FLAGS);
                args.extend_from_slice(extra);
                if path == Path::WanlbOffloadOff {
                    args.extend(["--offload", "off"]);
                }
                let proc = Proc::start(bed.cmd("gw", &args))?;
                let cgroup = match cgroup {
                    Some(parent) => {
                        let own = parent.child("wanlb")?;
                        own.add(proc.child.id())?;
                        Some(own)
                    }
                    None => None,
                };
                proc.wait_for(" ready ", "wanlb")?;
                Ok(Active::Wanlb { proc, cgroup })
            }
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Active::Kernel(bed) => bed.testbed("nokernel"),
            Active::Routed(bed) => bed.testbed("norouted"),
            Active::Wanlb { proc, cgroup } => {
                let log = proc.stop();
                drop(cgroup);
                if log.contains("stopped") {
                    Ok(())
                } else {
                    Err(format!("wanlb did not stop cleanly:\n{log}"))
                }
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn iperf_bps(json: &str) -> Result<f64> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 JSON: {e}"))?;
    match v["end"]["sum_received"]["bits_per_second"].as_f64() {
        Some(bps) => Ok(bps),
        None => Err(format!(
            "iperf3: {}",
            v["error"].as_str().unwrap_or("no result")
        )),
    }
}

/// Runs `attempt` up to three times: a single iperf3 run now and then fails to connect.
fn retry<T>(what: &str, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut last = String::new();
    for _ in 0..3 {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => {
                eprintln!("  {what} failed, trying again: {e}");
                last = e;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    Err(format!("{what}: {last}"))
}

/// Runs one measurement; pushes its samples.
struct Run<'a> {
    bed: &'a Bed,
    cli: &'a Cli,
    /// Holds every process the benchmark starts, for the cost's CPU time.
    cgroup: Option<Cgroup>,
    samples: Vec<Sample>,
    failover: Vec<FailoverSample>,
}

/// wanlb's flow limits while `flows` is measured (unless --wanlb-arg sets them): above what
/// the measurement opens, for one LAN host too.
const FLOWS_LIMITS: [&str; 4] = ["--max-flows", "2000000", "--max-flows-per-host", "2000000"];

/// Blocks UDP to the ports the flow generator uses in the simulated internet, so it does not
/// answer each with a port unreachable.
fn quiet_internet(bed: &Bed) -> Result<()> {
    let rules = "table ip bench_quiet {\n chain pre {\n  type filter hook prerouting priority raw; policy accept;\n  udp dport 20000-60000 drop\n }\n}\n";
    let out = bed
        .cmd("inet", &["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("piped").write_all(rules.as_bytes())?;
            c.wait()
        });
    match out {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("nft in inet: {other:?}")),
    }
}

/// The last lines of a log, for an error message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A line above the progress bar, or on its own when stderr is not a terminal (the bar is
/// hidden there).
fn log(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn log_samples(bar: &ProgressBar, samples: &[Sample]) {
    for s in samples {
        log(
            bar,
            format!(
                "  rep {} {:<6} {:<45} {:>10} {}",
                s.rep,
                s.path.name(),
                s.metric,
                fmt(s.value),
                s.unit
            ),
        );
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("wanlb-bench: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<()> {
    // the repository's root: this package lives in tools/
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bed = Bed {
        prefix: cli.prefix.clone(),
        bin: cli.bin.clone(),
        script: root.join("scripts/testbed.sh"),
    };
    let want = |w: What| cli.what.contains(&What::All) || cli.what.contains(&w);
    let alone = |w: What| cli.what.len() == 1 && cli.what[0] == w;
    if alone(What::Stress) {
        return stress::run(&bed, cli);
    }
    if alone(What::Soak) {
        return soak::run(&bed, cli);
    }
    if alone(What::Ipv6) {
        return ipv6::run(&bed, cli);
    }
    if [What::Stress, What::Soak, What::Ipv6]
        .iter()
        .any(|w| cli.what.contains(w))
    {
        return Err("stress, soak and ipv6 run alone, not with other measurements".into());
    }
    let reps = cli.reps.unwrap_or(3);
    let failover_reps = if want(What::Failover) {
        cli.reps.unwrap_or(5)
    } else {
        0
    };
    // every process started from here on is counted in it (the cost's CPU time)
    let cgroup = if want(What::Cost) {
        Some(Cgroup::enter_new(&format!("wanlb-bench-{}", cli.prefix))?)
    } else {
        None
    };

    // servers in the simulated internet, for the whole run
    let mut servers = Vec::new();
    if want(What::Tcp) || want(What::Cost) {
        let mut listen: Vec<(String, u16)> =
            (11..19).map(|i| (format!("198.19.0.{i}"), 5201)).collect();
        listen.extend(cases::ONE_DESTINATION_PORTS.map(|p| (cases::TCP_SERVER.to_string(), p)));
        for (addr, port) in listen {
            let port = port.to_string();
            servers.push(Proc::start(
                bed.cmd("inet", &["iperf3", "-s", "-B", &addr, "-p", &port]),
            )?);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if want(What::First) {
        let probe = bed.probe();
        let first = format!("{}/32", cases::FIRST_SERVER);
        let reflector = Proc::start(bed.cmd("inet", &[&probe, "serve", "--udp", &first]))?;
        reflector.wait_for("listening", "UDP reflector")?;
        servers.push(reflector);
    }
    if want(What::Flows) {
        quiet_internet(&bed)?;
    }

    let cases = [
        (What::Tcp, "TCP"),
        (What::Udp, "UDP"),
        (What::Latency, "latency"),
        (What::First, "first exchange"),
        (What::Cost, "cost"),
        (What::Flows, "flows"),
    ];
    // which case runs on which path: plain routing and wanlb without its fast path only
    // where they say something (no NAT table to count, the userspace ping has its own run)
    let runs_on = |what: What, path: Path| match path {
        Path::Kernel | Path::Wanlb => true,
        Path::Routed => {
            !cli.no_routed && matches!(what, What::Tcp | What::Udp | What::First | What::Cost)
        }
        Path::WanlbOffloadOff => {
            cli.userspace && matches!(what, What::Tcp | What::Udp | What::First | What::Cost)
        }
    };
    let planned: Vec<(Path, Vec<(What, &str)>)> = compare::PATHS
        .into_iter()
        .map(|path| {
            let here = cases
                .iter()
                .copied()
                .filter(|(w, _)| want(*w) && runs_on(*w, path))
                .collect::<Vec<_>>();
            (path, here)
        })
        .filter(|(_, here)| !here.is_empty())
        .collect();
    let per_rep: usize = planned.iter().map(|(_, here)| here.len()).sum();
    // failover twice (two cuts) on wanlb
    let bar = ProgressBar::new((reps * per_rep + failover_reps * 2) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let mut r = Run {
        bed: &bed,
        cli,
        cgroup,
        samples: Vec::new(),
        failover: Vec::new(),
    };
    let mut extra: Vec<&str> = cli.wanlb_arg.iter().map(String::as_str).collect();
    // the benchmark's one LAN host would meet its share of the flow table (a sixteenth)
    // long before the path's speed: lift the limits unless told otherwise
    if want(What::Flows) && !extra.iter().any(|a| a.starts_with("--max-flows")) {
        extra.extend(FLOWS_LIMITS);
    }
    for rep in (1..=reps).filter(|_| per_rep > 0) {
        for (path, here) in &planned {
            let path = *path;
            let active = Active::start(&bed, path, cli.workers, &extra, r.cgroup.as_ref())?;
            for (what, name) in here {
                bar.set_message(format!("rep {rep}/{reps}: {} {name}", path.name()));
                let before = r.samples.len();
                match what {
                    What::Tcp => r.tcp(path, rep)?,
                    What::Udp => r.udp(path, rep)?,
                    What::Latency => r.latency(path, rep, "")?,
                    What::First => r.first_exchange(path, rep)?,
                    What::Cost => r.cost(path, rep, &active)?,
                    _ => r.flows(path, rep, &active)?,
                }
                log_samples(&bar, &r.samples[before..]);
                bar.inc(1);
            }
            active.stop()?;
            if here.iter().any(|(w, _)| *w == What::Latency) && !cli.no_userspace_ping {
                // the same ping through wanlb's userspace path (and the kernel again)
                let mut extra = extra.clone();
                extra.extend(["--offload", "off"]);
                let active = Active::start(&bed, path, cli.workers, &extra, None)?;
                let before = r.samples.len();
                r.latency(path, rep, "userspace")?;
                log_samples(&bar, &r.samples[before..]);
                active.stop()?;
            }
            if here.iter().any(|(w, _)| *w == What::Flows) {
                // let the held flows go before the next path runs
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    drop(servers);
    if failover_reps > 0 {
        r.failover(failover_reps, &bar)?;
    }
    bar.finish_with_message("done");

    let lines = compare::summarize(&r.samples);
    let failover = summarize_failover(&r.failover);
    let meta = format!(
        "{} {} s per throughput run.",
        report::machine(cli),
        cli.seconds.unwrap_or(5)
    );
    let meta = format!(
        "{meta}\nLoad average (1, 5, 15 min) at the end: {}.",
        report::load_average()
    );
    std::fs::create_dir_all(&cli.out).map_err(|e| e.to_string())?;
    let mut md = compare::markdown(&lines, reps, &meta);
    let flags: Vec<&str> = FAILOVER_ARGS
        .into_iter()
        .chain(cli.wanlb_arg.iter().map(String::as_str))
        .collect();
    let flags = flags.join(" ");
    if !failover.is_empty() {
        md += &failover_markdown(&failover, &flags);
    }
    std::fs::write(cli.out.join("report.md"), &md).map_err(|e| e.to_string())?;
    let mut json =
        serde_json::json!({ "meta": meta, "reps": reps, "summary": lines, "samples": r.samples });
    if !failover.is_empty() {
        json["failover"] = serde_json::json!({
            "wanlb_flags": flags,
            "reps": failover_reps,
            "summary": failover,
            "samples": r.failover,
            "kernel": "the kernel recipe has no failover; not measured",
        });
    }
    std::fs::write(
        cli.out.join("report.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let files = if lines.is_empty() {
        // nothing to compare: no chart (and none left from an earlier run)
        let _ = std::fs::remove_file(cli.out.join("report.svg"));
        "{md,json}"
    } else {
        compare::chart(&lines, &cli.out.join("report.svg"))?;
        "{md,json,svg}"
    };
    println!("\n{md}\nreport: {}/report.{files}", cli.out.display());
    Ok(())
}

#[cfg(test)]
#[path = "wanlb-bench/main_tests.rs"]
mod main_tests;
