//! The measurements of one repetition on one path: TCP, UDP, ping and first-exchange
//! latency, new flows.

use super::*;

impl Run<'_> {
    pub(crate) fn push(
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

    pub(crate) fn tcp(&mut self, path: Path, rep: usize) -> Result<()> {
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

    pub(crate) fn udp(&mut self, path: Path, rep: usize) -> Result<()> {
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

    pub(crate) fn latency(&mut self, path: Path, rep: usize, label: &'static str) -> Result<()> {
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
    pub(crate) fn open_flows(&self, count: u32) -> Result<(f64, f64)> {
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

    pub(crate) fn flows(&mut self, path: Path, rep: usize, active: &Active) -> Result<()> {
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
