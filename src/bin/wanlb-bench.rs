//! wanlb-bench: wanlb against the kernel recipe it replaces, on the netns testbed, in one run.
//!
//! Each repetition measures the kernel recipe and then wanlb (alternating, so drift hits both
//! alike); the report gives medians, the ratio wanlb/kernel per line, a JSON file and an SVG
//! chart. scripts/bench.sh builds this and brings the testbed up and down around it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "wanlb-bench",
    about = "wanlb vs the kernel recipe on the netns testbed"
)]
struct Cli {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// Prefix of the (already created) testbed namespaces.
    #[arg(long)]
    prefix: String,
    /// Repetitions of every measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
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
    Tcp,
    Udp,
    Latency,
    Flows,
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
    path: Gateway,
    rep: usize,
    value: f64,
}

type Result<T> = std::result::Result<T, String>;

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
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{what} did not start:\n{}", self.output()))
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
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
    Wanlb(Proc),
}

impl Active<'_> {
    fn start<'a>(
        bed: &'a Bed,
        path: Gateway,
        workers: usize,
        extra: &[&str],
    ) -> Result<Active<'a>> {
        match path {
            Gateway::Kernel => {
                bed.testbed("kernel")?;
                Ok(Active::Kernel(bed))
            }
            Gateway::Wanlb => {
                let wanlb = bed.bin.join("wanlb").display().to_string();
                let state = format!("/tmp/wanlb-bench-{}", bed.prefix);
                let workers = workers.to_string();
                let mut args = vec![
                    wanlb.as_str(),
                    "run",
                    "--lan",
                    "eth0",
                    "--workers",
                    &workers,
                    "--state-dir",
                    &state,
                ];
                args.extend_from_slice(&[
                    "--uplink",
                    "isp1,dev=eth1,gw=198.18.1.254,weight=2",
                    "--uplink",
                    "isp2,dev=eth2,gw=198.18.2.254,weight=1",
                    "--pin",
                    "198.19.200.91/32=isp2",
                ]);
                args.extend_from_slice(extra);
                let p = Proc::start(bed.cmd("gw", &args))?;
                p.wait_for(" ready ", "wanlb")?;
                Ok(Active::Wanlb(p))
            }
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Active::Kernel(bed) => bed.testbed("nokernel"),
            Active::Wanlb(p) => {
                let log = p.stop();
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
    samples: Vec<Sample>,
}

impl Run<'_> {
    fn push(
        &mut self,
        metric: &'static str,
        unit: &'static str,
        higher_is_better: bool,
        path: Gateway,
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

    fn tcp(&mut self, path: Gateway, rep: usize) -> Result<()> {
        let secs = self.cli.seconds.to_string();
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
        let eight = || -> Result<f64> {
            let clients: Vec<Child> = (11..19)
                .map(|i| {
                    bed.cmd(
                        "lan",
                        &["iperf3", "-c", &format!("198.19.0.{i}"), "-t", &secs, "-J"],
                    )
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                })
                .collect::<std::io::Result<_>>()
                .map_err(|e| e.to_string())?;
            let mut total = 0.0;
            let mut first_error = None;
            for c in clients {
                let out = c.wait_with_output().map_err(|e| e.to_string())?;
                match iperf_bps(&String::from_utf8_lossy(&out.stdout)) {
                    Ok(bps) => total += bps,
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            first_error.map_or(Ok(total), Err)
        };
        let total = retry("TCP 8 streams", eight)?;
        self.push(
            "TCP 8 streams to 8 destinations",
            "Gbit/s",
            true,
            path,
            rep,
            total / 1e9,
        );
        Ok(())
    }

    fn udp(&mut self, path: Gateway, rep: usize) -> Result<()> {
        let probe = self.bed.probe();
        let sink = Proc::start(
            self.bed
                .cmd("inet", &[&probe, "udp-sink", "--udp", "198.19.1.0/26"]),
        )?;
        sink.wait_for("listening", "udp sink")?;
        let secs = self.cli.seconds.to_string();
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

    fn latency(&mut self, path: Gateway, rep: usize, label: &'static str) -> Result<()> {
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

    fn flows(&mut self, path: Gateway, rep: usize, active: &Active) -> Result<()> {
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
            Active::Kernel(_) => {
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
            Active::Wanlb(p) => {
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

#[derive(Serialize)]
struct Line {
    metric: &'static str,
    unit: &'static str,
    kernel: f64,
    wanlb: f64,
    ratio: f64,
    higher_is_better: bool,
}

/// Medians per metric, in the order the metrics were first measured.
fn summarize(samples: &[Sample]) -> Vec<Line> {
    let mut metrics: Vec<&Sample> = Vec::new();
    for s in samples {
        if !metrics.iter().any(|m| m.metric == s.metric) {
            metrics.push(s);
        }
    }
    metrics
        .into_iter()
        .map(|m| {
            let values = |g: Gateway| {
                median(
                    samples
                        .iter()
                        .filter(|s| s.metric == m.metric && s.path == g)
                        .map(|s| s.value)
                        .collect(),
                )
            };
            let (kernel, wanlb) = (values(Gateway::Kernel), values(Gateway::Wanlb));
            Line {
                metric: m.metric,
                unit: m.unit,
                kernel,
                wanlb,
                ratio: wanlb / kernel,
                higher_is_better: m.higher_is_better,
            }
        })
        .collect()
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

fn markdown(lines: &[Line], reps: usize, meta: &str) -> String {
    let mut md =
        format!("# wanlb vs the kernel recipe\n\n{meta}\n\nMedians of {reps} repetitions.\n\n");
    md += "| metric | unit | kernel recipe | wanlb | wanlb/kernel |\n|---|---|---:|---:|---:|\n";
    for l in lines {
        let note = if l.higher_is_better {
            ""
        } else {
            " (lower is better)"
        };
        md += &format!(
            "| {}{} | {} | {} | {} | {} |\n",
            l.metric,
            note,
            l.unit,
            fmt(l.kernel),
            fmt(l.wanlb),
            fmt(l.ratio)
        );
    }
    for l in lines
        .iter()
        .filter(|l| l.metric.starts_with("ping RTT p50"))
    {
        md += &format!(
            "\n{}: wanlb adds {} µs.\n",
            l.metric,
            fmt(l.wanlb - l.kernel)
        );
    }
    md
}

fn chart(lines: &[Line], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let shown: Vec<&Line> = lines.iter().filter(|l| l.ratio.is_finite()).collect();
    let max = shown.iter().map(|l| l.ratio).fold(1.2f64, f64::max) * 1.1;
    let height = 80 + 44 * shown.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "wanlb / kernel recipe (medians; right of 1.0 is more for wanlb)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..max, 0f64..shown.len() as f64)
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = shown
        .iter()
        .map(|l| format!("{} ({})", l.metric, l.unit))
        .collect();
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(shown.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let i = *y - 0.5;
            if i >= 0.0 && i.fract().abs() < 1e-6 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("ratio")
        .draw()
        .map_err(|e| e.to_string())?;
    c.draw_series(shown.iter().enumerate().map(|(i, l)| {
        let good = if l.higher_is_better {
            l.ratio >= 1.0
        } else {
            l.ratio <= 1.0
        };
        let color = if good {
            RGBColor(46, 139, 87)
        } else {
            RGBColor(205, 92, 92)
        };
        Rectangle::new(
            [(0.0, i as f64 + 0.15), (l.ratio, i as f64 + 0.85)],
            color.filled(),
        )
    }))
    .map_err(|e| e.to_string())?;
    c.draw_series(shown.iter().enumerate().map(|(i, l)| {
        Text::new(
            format!("{:.2}", l.ratio),
            (l.ratio + max * 0.01, i as f64 + 0.6),
            ("sans-serif", 14),
        )
    }))
    .map_err(|e| e.to_string())?;
    c.draw_series(LineSeries::new(
        [(1.0, 0.0), (1.0, shown.len() as f64)],
        BLACK.stroke_width(1),
    ))
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bed = Bed {
        prefix: cli.prefix.clone(),
        bin: cli.bin.clone(),
        script: root.join("scripts/testbed.sh"),
    };
    let want = |w: What| cli.what == What::All || cli.what == w;

    // servers in the simulated internet, for the whole run
    let mut servers = Vec::new();
    if want(What::Tcp) {
        for i in std::iter::once(7).chain(11..19) {
            servers.push(Proc::start(
                bed.cmd("inet", &["iperf3", "-s", "-B", &format!("198.19.0.{i}")]),
            )?);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if want(What::Flows) {
        quiet_internet(&bed)?;
    }

    let per_rep = [What::Tcp, What::Udp, What::Latency, What::Flows]
        .iter()
        .filter(|w| want(**w))
        .count();
    let bar = ProgressBar::new((cli.reps * 2 * per_rep) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let mut r = Run {
        bed: &bed,
        cli,
        samples: Vec::new(),
    };
    for rep in 1..=cli.reps {
        for path in [Gateway::Kernel, Gateway::Wanlb] {
            let extra: Vec<&str> = cli.wanlb_arg.iter().map(String::as_str).collect();
            let active = Active::start(&bed, path, cli.workers, &extra)?;
            for (what, name) in [
                (What::Tcp, "TCP"),
                (What::Udp, "UDP"),
                (What::Latency, "latency"),
                (What::Flows, "flows"),
            ] {
                if !want(what) {
                    continue;
                }
                bar.set_message(format!("rep {rep}/{}: {} {name}", cli.reps, path.name()));
                let before = r.samples.len();
                match what {
                    What::Tcp => r.tcp(path, rep)?,
                    What::Udp => r.udp(path, rep)?,
                    What::Latency => r.latency(path, rep, "")?,
                    _ => r.flows(path, rep, &active)?,
                }
                log_samples(&bar, &r.samples[before..]);
                bar.inc(1);
            }
            active.stop()?;
            if want(What::Latency) && !cli.no_userspace_ping {
                // the same ping through wanlb's userspace path (and the kernel again)
                let mut extra = extra.clone();
                extra.extend(["--offload", "off"]);
                let active = Active::start(&bed, path, cli.workers, &extra)?;
                let before = r.samples.len();
                r.latency(path, rep, "userspace")?;
                log_samples(&bar, &r.samples[before..]);
                active.stop()?;
            }
            if want(What::Flows) {
                // let the held flows go before the next path runs
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    bar.finish_with_message("done");
    drop(servers);

    let lines = summarize(&r.samples);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let meta = format!(
        "Linux {}, {} CPUs, wanlb --workers {}, {} s per throughput run.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cli.workers,
        cli.seconds
    );
    std::fs::create_dir_all(&cli.out).map_err(|e| e.to_string())?;
    let md = markdown(&lines, cli.reps, &meta);
    std::fs::write(cli.out.join("report.md"), &md).map_err(|e| e.to_string())?;
    let json = serde_json::json!({ "meta": meta, "reps": cli.reps, "summary": lines, "samples": r.samples });
    std::fs::write(
        cli.out.join("report.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    chart(&lines, &cli.out.join("report.svg"))?;
    println!(
        "\n{md}\nreport: {}/report.{{md,json,svg}}",
        cli.out.display()
    );
    Ok(())
}
