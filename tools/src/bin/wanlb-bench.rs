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

impl Run<'_> {
    fn push(
        &mut self,
        metric: &'static str,
        unit: &'static str,
        higher_is_better: bool,
        path: Path,
        rep: usize,
        value: f64,
    ) {
        self.samples.push(Sample {
            metric,
            unit,
            higher_is_better,
            path,
            rep,
            value,
        });
    }

    fn tcp(&mut self, path: Path, rep: usize) -> Result<()> {
        let secs = self.cli.seconds.unwrap_or(5).to_string();
        let bed = self.bed;
        let one = |extra: &[&str]| {
            let mut args = vec!["iperf3", "-c", "198.19.0.7", "-t", &secs, "-J"];
            args.extend_from_slice(extra);
            iperf_bps(&bed.run("lan", &args)?)
        };
        let up = retry("TCP 1 stream", || one(&[]))?;
        self.push(
            "TCP 1 stream, LAN to internet",
            "Gbit/s",
            true,
            path,
            rep,
            up / 1e9,
        );
        let down = retry("TCP 1 stream reverse", || one(&["-R"]))?;
        self.push(
            "TCP 1 stream, internet to LAN",
            "Gbit/s",
            true,
            path,
            rep,
            down / 1e9,
        );
        let targets: Vec<(String, u16)> =
            (11..19).map(|i| (format!("198.19.0.{i}"), 5201)).collect();
        let total = retry("TCP 8 streams", || self.streams(&targets))?;
        self.push(
            "TCP 8 streams to 8 destinations",
            "Gbit/s",
            true,
            path,
            rep,
            total / 1e9,
        );
        self.one_destination(path, rep)
    }

    fn udp(&mut self, path: Path, rep: usize) -> Result<()> {
        let probe = self.bed.probe();
        let sink = Proc::start(
            self.bed
                .cmd("inet", &[&probe, "udp-sink", "--udp", "198.19.1.0/26"]),
        )?;
        sink.wait_for("listening", "udp sink")?;
        let secs = self.cli.seconds.unwrap_or(5).to_string();
        let flood = self.bed.run(
            "lan",
            &[
                &probe,
                "udp-flood",
                "--dst",
                "198.19.1.0",
                "--flows",
                "64",
                "--seconds",
                &secs,
            ],
        )?;
        std::thread::sleep(Duration::from_millis(300));
        let out = sink.stop();
        let word = |text: &str, key: &str| -> Result<f64> {
            let w: Vec<&str> = text.split_whitespace().collect();
            let i = w
                .iter()
                .position(|x| *x == key)
                .ok_or(format!("no {key} in {text:?}"))?;
            w[i + 1]
                .parse()
                .map_err(|_| format!("bad {key} in {text:?}"))
        };
        let received = word(&out, "received")?;
        let seconds = word(&flood, "seconds")?;
        self.push(
            "UDP 64-byte frames, 64 flows",
            "Mpps",
            true,
            path,
            rep,
            received / seconds / 1e6,
        );
        Ok(())
    }

    fn latency(&mut self, path: Path, rep: usize, label: &'static str) -> Result<()> {
        // warm the flow, then 300 probes at 10 ms intervals: low load
        self.bed
            .run("lan", &["ping", "-c", "3", "-i", "0.05", "198.19.0.3"])?;
        let out = self
            .bed
            .run("lan", &["ping", "-c", "300", "-i", "0.01", "198.19.0.3"])?;
        let mut rtts: Vec<f64> = out
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|ms| ms * 1000.0)
            .collect();
        if rtts.len() < 250 {
            return Err(format!("only {} of 300 pings answered", rtts.len()));
        }
        rtts.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = match label {
            "" => ("ping RTT p50", "ping RTT p99"),
            _ => (
                "ping RTT p50, userspace path (wanlb --offload off)",
                "ping RTT p99, userspace path (wanlb --offload off)",
            ),
        };
        self.push(p50, "µs", false, path, rep, percentile(&rtts, 0.5));
        self.push(p99, "µs", false, path, rep, percentile(&rtts, 0.99));
        Ok(())
    }

    /// Opens `count` new UDP flows from the LAN host (one datagram each, to 65,536 addresses
    /// times as many ports as needed); returns how many reached the internet and how long the
    /// sending took.
    fn open_flows(&self, count: u32) -> Result<(f64, f64)> {
        let probe = self.bed.probe();
        let before = self.bed.internet_rx()?;
        let count = count.to_string();
        let args = [
            probe.as_str(),
            "udp-new-flows",
            "--dst",
            "198.19.0.0",
            "--addrs",
            "65536",
            "--count",
            &count,
        ];
        let sent = self.bed.run("lan", &args)?;
        std::thread::sleep(Duration::from_millis(500));
        let delivered = (self.bed.internet_rx()? - before) as f64;
        let seconds = sent
            .split_whitespace()
            .skip_while(|w| *w != "seconds")
            .nth(1)
            .and_then(|s| s.parse().ok());
        Ok((delivered, seconds.ok_or(format!("no seconds in {sent:?}"))?))
    }

    fn flows(&mut self, path: Path, rep: usize, active: &Active) -> Result<()> {
        let (delivered, seconds) = self.open_flows(200_000)?;
        self.push(
            "new UDP flows/s",
            "k/s",
            true,
            path,
            rep,
            delivered / seconds / 1e3,
        );
        // held: open many more (different ports), then count what the path keeps
        let (delivered, _) = self.open_flows(self.cli.hold_flows)?;
        self.push(
            "flows opened and delivered",
            "k",
            true,
            path,
            rep,
            delivered / 1e3,
        );
        match active {
            Active::Kernel(_) | Active::Routed(_) => {
                let held = self
                    .bed
                    .run("gw", &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])?;
                self.push(
                    "flows held",
                    "k",
                    true,
                    path,
                    rep,
                    held.trim().parse::<f64>().unwrap_or(0.0) / 1e3,
                );
            }
            Active::Wanlb { proc: p, .. } => {
                p.signal("-USR1");
                std::thread::sleep(Duration::from_millis(300));
                let log = p.output();
                let status = log
                    .lines()
                    .rev()
                    .find(|l| l.contains(" status "))
                    .ok_or("no status line")?;
                let flows: f64 = status
                    .split("flows=")
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .ok_or("no flows=")?;
                self.push("flows held", "k", true, path, rep, flows / 1e3);
                let rss = std::fs::read_to_string(format!("/proc/{}/status", p.child.id()))
                    .map_err(|e| e.to_string())?;
                let kb: f64 = rss
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                    .ok_or("no VmRSS")?;
                self.push(
                    "wanlb resident memory with those flows",
                    "MiB",
                    false,
                    path,
                    rep,
                    kb / 1024.0,
                );
            }
        }
        Ok(())
    }
}

impl Run<'_> {
    /// The failover measurement, `reps` times for each kind of cut, on a wanlb of its own
    /// that checks its lines' health and pins the test destinations to isp1.
    fn failover(&mut self, reps: usize, bar: &ProgressBar) -> Result<()> {
        let bed = self.bed;
        let probe = bed.probe();
        let echo = Proc::start(bed.cmd("inet", &[&probe, "serve", "--tcp", "0.0.0.0:9000"]))?;
        echo.wait_for("listening", "TCP echo server")?;
        let mut extra: Vec<&str> = self.cli.wanlb_arg.iter().map(String::as_str).collect();
        extra.extend(FAILOVER_ARGS);
        let active = Active::start(bed, Path::Wanlb, self.cli.workers, &extra, None)?;
        let Active::Wanlb { proc: wanlb, .. } = &active else {
            return Err("failover runs on wanlb only".into());
        };
        for rep in 1..=reps {
            for cut in [Cut::Beyond, Cut::Carrier] {
                bar.set_message(format!("failover rep {rep}/{reps}: {}", cut.describe()));
                let s = self.failover_once(wanlb, cut, rep)?;
                let gap = match s.gap_ms {
                    Some(ms) => format!("gap {} ms", fmt(ms)),
                    None => "nothing came through isp2".into(),
                };
                let rst = match s.rst_ms {
                    Some(ms) => format!("RST {} ms after the cut", fmt(ms)),
                    None => format!("no RST (TCP {})", s.tcp),
                };
                let undeclared = if s.declared_down {
                    ""
                } else {
                    "; wanlb never declared isp1 down"
                };
                log(
                    bar,
                    format!(
                        "  rep {rep} failover {:<8} {gap}, lost {} of {} datagrams, {rst}{undeclared}",
                        cut.name(),
                        s.lost,
                        s.sent,
                    ),
                );
                self.failover.push(s);
                bar.inc(1);
            }
        }
        active.stop()
    }

    /// Once: a fresh UDP stream and TCP connection on isp1, the cut, what they saw, and the
    /// line restored (up again in wanlb's eyes) before returning.
    fn failover_once(&self, wanlb: &Proc, cut: Cut, rep: usize) -> Result<FailoverSample> {
        let bed = self.bed;
        let probe = bed.probe();
        wanlb
            .wait_until(Duration::from_secs(30), |log| uplink_is_up(log, "isp1"))
            .map_err(|log| format!("wanlb did not declare isp1 up:\n{}", tail(&log)))?;
        let recorder = Proc::start(bed.cmd("inet", &[&probe, "udp-record", "--bind", STREAM_DST]))?;
        recorder.wait_for("listening", "udp-record")?;
        let stream = Proc::start(bed.cmd(
            "lan",
            &[
                &probe,
                "udp-stream",
                "--dst",
                STREAM_DST,
                "--interval",
                "10ms",
                "--seconds",
                "60",
            ],
        ))?;
        let hold = Proc::start(bed.cmd("lan", &[&probe, "tcp-hold", "--dst", HOLD_DST]))?;
        hold.wait_for("connected", "tcp-hold")?;
        std::thread::sleep(BEFORE_CUT);
        let early = arrivals(&recorder.output());
        if !early.iter().all(|a| *a.src.ip() == ISP1_SRC) || early.is_empty() {
            return Err(format!(
                "the stream did not start on isp1 ({} datagrams arrived, from {:?})",
                early.len(),
                early.first().map(|a| a.src)
            ));
        }
        if tcp_outcome(&hold.output(), 0).is_ok() {
            return Err(format!("tcp-hold failed before the cut: {}", hold.output()));
        }
        let downs_before = downs(&wanlb.output(), "isp1");
        // the cut counts from when `ip` returns: the link is down by then, at most the
        // command's own time earlier
        let started = monotonic_ns();
        bed.ip("r1", &["link", "set", cut.dev(), "down"])?;
        let cut_ns = monotonic_ns();
        std::thread::sleep(AFTER_CUT);
        let sent_out = stream.stop();
        std::thread::sleep(Duration::from_millis(200)); // the last datagrams in flight
        let got = arrivals(&recorder.stop());
        let tcp_out = hold.stop();
        let declared_down = downs(&wanlb.output(), "isp1") > downs_before;
        let restored = self.restore(wanlb, cut);
        let sent: u64 = sent_out
            .lines()
            .find_map(|l| l.strip_prefix("sent ")?.trim().parse().ok())
            .ok_or(format!("udp-stream: {sent_out:?}"))?;
        let (tcp, rst_ms) = tcp_outcome(&tcp_out, cut_ns)?;
        restored?;
        Ok(FailoverSample {
            cut,
            rep,
            gap_ms: failover_gap(&got),
            sent,
            lost: lost(&got, sent),
            rst_ms,
            tcp,
            declared_down,
            cut_took_ms: (cut_ns - started) as f64 / 1e6,
        })
    }

    /// Brings isp1's line back and waits until wanlb uses it again.
    fn restore(&self, wanlb: &Proc, cut: Cut) -> Result<()> {
        let bed = self.bed;
        bed.ip("r1", &["link", "set", cut.dev(), "up"])?;
        if cut == Cut::Beyond {
            // the kernel dropped r1's default route with the link
            bed.ip(
                "r1",
                &["route", "replace", "default", "via", "198.18.101.2"],
            )?;
        }
        wanlb
            .wait_until(Duration::from_secs(30), |log| uplink_is_up(log, "isp1"))
            .map_err(|log| {
                format!(
                    "wanlb did not declare isp1 up again after the {} was restored:\n{}",
                    cut.name(),
                    tail(&log)
                )
            })
    }
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

/// Where isp1's line is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Cut {
    /// r1's upstream link: the gateway's own link stays up, only the health checks notice.
    Beyond,
    /// r1's side of the gateway's link: the gateway's eth1 loses carrier.
    Carrier,
}

impl Cut {
    fn name(self) -> &'static str {
        match self {
            Cut::Beyond => "beyond",
            Cut::Carrier => "carrier",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cut::Beyond => "line cut beyond the gateway (r1 eth1 down)",
            Cut::Carrier => "carrier lost (r1 eth0 down)",
        }
    }

    /// The interface of r1 that goes down.
    fn dev(self) -> &'static str {
        match self {
            Cut::Beyond => "eth1",
            Cut::Carrier => "eth0",
        }
    }
}

/// Seconds the stream and the connection run before the cut, and after it.
const BEFORE_CUT: Duration = Duration::from_secs(1);
const AFTER_CUT: Duration = Duration::from_secs(3);
const ISP1_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const ISP2_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const STREAM_DST: &str = "198.19.1.1:7000";
const HOLD_DST: &str = "198.19.1.2:9000";

#[derive(Clone, Debug, Serialize)]
struct FailoverSample {
    cut: Cut,
    rep: usize,
    /// From the last datagram that arrived through isp1 to the first through isp2; None if
    /// none came through isp2.
    gap_ms: Option<f64>,
    sent: u64,
    lost: u64,
    /// From the cut to the reset at the LAN host; None if the connection was not reset.
    rst_ms: Option<f64>,
    /// What became of the TCP connection: "reset", "alive" or "error KIND".
    tcp: String,
    /// Whether wanlb logged isp1 down after the cut.
    declared_down: bool,
    /// How long `ip link set ... down` took: times count from its end, so a reset that came
    /// while it ran shows as up to this much below zero.
    cut_took_ms: f64,
}

/// One udp-record line: SEQ SRC ARRIVAL_NS.
struct Arrival {
    seq: u64,
    src: SocketAddrV4,
    at: u64,
}

fn arrivals(out: &str) -> Vec<Arrival> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Arrival {
                seq: w.next()?.parse().ok()?,
                src: w.next()?.parse().ok()?,
                at: w.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Arrival of the first datagram from isp2's address minus that of the last from isp1's
/// before it, in ms.
fn failover_gap(got: &[Arrival]) -> Option<f64> {
    let first2 = got.iter().position(|a| *a.src.ip() == ISP2_SRC)?;
    let last1 = got[..first2].iter().rfind(|a| *a.src.ip() == ISP1_SRC)?;
    Some(got[first2].at.saturating_sub(last1.at) as f64 / 1e6)
}

/// Sequence numbers 0..sent that never arrived.
fn lost(got: &[Arrival], sent: u64) -> u64 {
    let mut seen = vec![false; usize::try_from(sent).unwrap_or(0)];
    for a in got {
        if let Some(s) = usize::try_from(a.seq).ok().and_then(|i| seen.get_mut(i)) {
            *s = true;
        }
    }
    seen.iter().filter(|s| !**s).count() as u64
}

/// Whether `line` has `phrase` as words (not the start of a longer word).
fn has_phrase(line: &str, phrase: &str) -> bool {
    line.match_indices(phrase).any(|(i, _)| {
        !line[i + phrase.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric())
    })
}

/// The event a line of wanlb's log reports about uplink `name`: Some(true) for "uplink up",
/// Some(false) for "uplink down".
fn uplink_event(line: &str, name: &str) -> Option<bool> {
    let about = line.split_whitespace().any(|w| {
        w.strip_prefix("uplink=")
            .is_some_and(|v| v.trim_matches(|c| c == '"' || c == ',') == name)
    });
    if !about {
        None
    } else if has_phrase(line, "uplink up") {
        Some(true)
    } else if has_phrase(line, "uplink down") {
        Some(false)
    } else {
        None
    }
}

/// Whether the last event wanlb logged for uplink `name` was "up" (false before the first).
fn uplink_is_up(log: &str, name: &str) -> bool {
    log.lines()
        .filter_map(|l| uplink_event(l, name))
        .next_back()
        .unwrap_or(false)
}

/// How many times wanlb logged uplink `name` down.
fn downs(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| uplink_event(l, name) == Some(false))
        .count()
}

/// Median and worst of values where None means "never" (worse than any number).
fn median_worst(v: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let mut sorted: Vec<f64> = v.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let finite = |x: f64| x.is_finite().then_some(x);
    match sorted.last() {
        None => (None, None),
        Some(&worst) => (finite(median(sorted.clone())), finite(worst)),
    }
}

#[derive(Serialize)]
struct FailoverLine {
    cut: Cut,
    what: &'static str,
    reps: usize,
    gap_ms_median: Option<f64>,
    gap_ms_worst: Option<f64>,
    /// Repetitions where the stream came back through isp2.
    failed_over: usize,
    lost_median: f64,
    lost_worst: u64,
    rst_ms_median: Option<f64>,
    rst_ms_worst: Option<f64>,
    /// Repetitions where the connection was reset.
    resets: usize,
    cut_took_ms_median: f64,
}

fn summarize_failover(samples: &[FailoverSample]) -> Vec<FailoverLine> {
    [Cut::Beyond, Cut::Carrier]
        .into_iter()
        .filter_map(|cut| {
            let these: Vec<&FailoverSample> = samples.iter().filter(|s| s.cut == cut).collect();
            if these.is_empty() {
                return None;
            }
            let gaps: Vec<Option<f64>> = these.iter().map(|s| s.gap_ms).collect();
            let rsts: Vec<Option<f64>> = these.iter().map(|s| s.rst_ms).collect();
            let (gap_ms_median, gap_ms_worst) = median_worst(&gaps);
            let (rst_ms_median, rst_ms_worst) = median_worst(&rsts);
            Some(FailoverLine {
                cut,
                what: cut.describe(),
                reps: these.len(),
                gap_ms_median,
                gap_ms_worst,
                failed_over: gaps.iter().flatten().count(),
                lost_median: median(these.iter().map(|s| s.lost as f64).collect()),
                lost_worst: these.iter().map(|s| s.lost).max().unwrap_or(0),
                rst_ms_median,
                rst_ms_worst,
                resets: rsts.iter().flatten().count(),
                cut_took_ms_median: median(these.iter().map(|s| s.cut_took_ms).collect()),
            })
        })
        .collect()
}

/// wanlb's flags for the failover run: health checks towards an address of the simulated
/// internet, and the stream's and the connection's destinations on isp1 while it is up.
const FAILOVER_ARGS: [&str; 4] = [
    "--health-target",
    "198.19.255.1",
    "--pin",
    "198.19.1.0/24=isp1",
];

/// What tcp-hold reported: "reset" and the time from the cut in ms, "alive", or "error KIND".
fn tcp_outcome(out: &str, cut_ns: u64) -> Result<(String, Option<f64>)> {
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w[..] {
            ["reset", ns] => {
                let ns: u64 = ns.parse().map_err(|_| format!("tcp-hold: {l:?}"))?;
                return Ok(("reset".into(), Some((ns as f64 - cut_ns as f64) / 1e6)));
            }
            ["error", kind, _] => return Ok((format!("error {kind}"), None)),
            ["alive"] => return Ok(("alive".into(), None)),
            _ => {}
        }
    }
    Err(format!(
        "tcp-hold said neither reset, error nor alive: {out:?}"
    ))
}

/// The last lines of a log, for an error message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn fmt_opt(v: Option<f64>, none: &str) -> String {
    v.map_or(none.into(), fmt)
}

fn failover_markdown(lines: &[FailoverLine], flags: &str) -> String {
    let mut md = String::from("\n## Failover (wanlb only)\n\n");
    md += &format!(
        "wanlb with `{flags}` (other health settings at their defaults; the pin is not strict, \
         so the test destinations use isp1 while it is up). From the LAN host, a UDP stream (one flow, a datagram every 10 ms) and a TCP connection (8 bytes \
         echoed every 100 ms) start on isp1; {} s later isp1's line is cut, {} s after that \
         the stream stops and the line is restored.\n\n",
        BEFORE_CUT.as_secs(),
        AFTER_CUT.as_secs()
    );
    md += "| cut | reps | gap median (ms) | gap worst (ms) | datagrams lost, median | lost, worst \
           | cut to RST median (ms) | cut to RST worst (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for l in lines {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.what,
            l.reps,
            fmt_opt(l.gap_ms_median, "none"),
            fmt_opt(l.gap_ms_worst, "none"),
            fmt(l.lost_median),
            l.lost_worst,
            fmt_opt(l.rst_ms_median, "none"),
            fmt_opt(l.rst_ms_worst, "none"),
        );
    }
    md += "\nGap: at the receiver, from the last datagram through isp1 to the first through \
           isp2 (\"none\": nothing came through isp2 within the window). Lost: sequence numbers \
           sent and never received. RST: from the cut to the reset seen by the LAN host's \
           socket (\"none\": not reset in the window).\n";
    let took = median(lines.iter().map(|l| l.cut_took_ms_median).collect());
    md += &format!(
        "\nThe cut counts from the moment `ip link set ... down` returned; that command took \
         {} ms (median), so a reset it outran shows as that much below zero at most.\n",
        fmt(took)
    );
    for l in lines {
        if l.failed_over < l.reps || l.resets < l.reps {
            md += &format!(
                "\n{}: the stream came back through isp2 in {} of {} repetitions, the \
                 connection was reset in {} of {}.\n",
                l.what, l.failed_over, l.reps, l.resets, l.reps
            );
        }
    }
    md += "\nThe kernel recipe has no failover (nothing there checks whether a line works), so \
           it is not measured here.\n";
    md
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
mod tests {
    use super::*;

    #[test]
    fn uplink_events_from_the_log() {
        let log = "2025-01-01T00:00:00.000001Z  INFO wanlb: ready lan=eth0\n\
                   2025-01-01T00:00:00.1Z  INFO wanlb::health: uplink up uplink=isp1\n\
                   2025-01-01T00:00:00.2Z  INFO wanlb::health: uplink up uplink=isp10\n\
                   2025-01-01T00:00:01Z  WARN wanlb::health: uplink down uplink=isp1 missed=3\n\
                   2025-01-01T00:00:02Z  INFO wanlb::health: uplink update uplink=isp1\n";
        assert!(!uplink_is_up(log, "isp1"));
        assert!(uplink_is_up(log, "isp10"));
        assert!(!uplink_is_up(log, "isp2"));
        assert_eq!(downs(log, "isp1"), 1);
        assert_eq!(
            uplink_event("uplink up uplink=\"isp2\",", "isp2"),
            Some(true)
        );
    }

    #[test]
    fn gap_and_losses_from_udp_record() {
        let out = "listening\n0 198.18.1.1:61000 1000000\n1 198.18.1.1:61000 11000000\n\
                   4 198.18.2.1:61000 51500000\n3 198.18.1.1:61000 52000000\nbad line\n";
        let got = arrivals(out);
        assert_eq!(got.len(), 4);
        assert_eq!(failover_gap(&got), Some(40.5));
        assert_eq!(lost(&got, 6), 2); // 2 and 5
        assert_eq!(failover_gap(&got[..2]), None);
    }

    #[test]
    fn tcp_hold_outcomes() {
        let at = |out: &str| tcp_outcome(out, 1_000_000_000);
        assert_eq!(
            at("connected 198.18.3.10:5000\nreset 1250000000\n"),
            Ok(("reset".into(), Some(250.0)))
        );
        assert_eq!(
            at("connected 198.18.3.10:5000\nerror TimedOut 9\n"),
            Ok(("error TimedOut".into(), None))
        );
        assert_eq!(
            at("connected 198.18.3.10:5000\nalive\n"),
            Ok(("alive".into(), None))
        );
        assert!(at("connected 198.18.3.10:5000\n").is_err());
        assert!(at("reset soon\n").is_err());
    }

    #[test]
    fn never_counts_as_worst() {
        assert_eq!(
            median_worst(&[Some(3.0), Some(1.0), Some(2.0)]),
            (Some(2.0), Some(3.0))
        );
        assert_eq!(
            median_worst(&[Some(3.0), None, Some(2.0)]),
            (Some(3.0), None)
        );
        assert_eq!(median_worst(&[None, None, Some(2.0)]), (None, None));
        assert_eq!(median_worst(&[]), (None, None));
    }
}
