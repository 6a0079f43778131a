//! The measurements added for the speed work: eight streams to one destination, the first
//! exchange of new flows, and the CPU time the testbed spends per gigabyte at a fixed offered
//! load, with the cgroups that time is read from.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::compare::Path;
use super::{Active, Proc, Result, Run, iperf_bps, retry};

/// The address every one-destination stream, the cost's TCP load and the single stream go to.
pub const TCP_SERVER: &str = "198.19.0.7";
/// The iperf3 ports on TCP_SERVER: one server per stream of the one-destination case.
pub const ONE_DESTINATION_PORTS: std::ops::RangeInclusive<u16> = 5201..=5208;
/// The reflector the first exchanges go to (port 7).
pub const FIRST_SERVER: &str = "198.19.2.53";
/// The offered loads the cost is measured at.
const COST_TCP: &str = "3G";
const COST_UDP_PPS: &str = "100000";

impl Run<'_> {
    /// Eight iperf3 clients at once, each to one of `targets` (address, port); their sum.
    pub fn streams(&self, targets: &[(String, u16)]) -> Result<f64> {
        let secs = self.cli.seconds.unwrap_or(5).to_string();
        let clients: Vec<Child> = targets
            .iter()
            .map(|(addr, port)| {
                let port = port.to_string();
                let args = ["iperf3", "-c", addr, "-p", &port, "-t", &secs, "-J"];
                (self.bed.cmd("lan", &args))
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
    }

    /// Eight streams to one address (one server per port): a backup to one server, a
    /// download manager's connections.
    pub fn one_destination(&mut self, path: Path, rep: usize) -> Result<()> {
        let targets: Vec<(String, u16)> = ONE_DESTINATION_PORTS
            .map(|p| (TCP_SERVER.to_string(), p))
            .collect();
        let total = retry("TCP 8 streams to one destination", || {
            self.streams(&targets)
        })?;
        self.push(
            "TCP 8 streams to one destination",
            "Gbit/s",
            true,
            path,
            rep,
            total / 1e9,
        );
        Ok(())
    }

    /// 500 request/answer pairs, each from a new UDP socket (a new flow), 2 ms apart: what a
    /// DNS lookup or a connection's handshake meets on its first packet.
    pub fn first_exchange(&mut self, path: Path, rep: usize) -> Result<()> {
        let probe = self.bed.probe();
        let dst = format!("{FIRST_SERVER}:7");
        let count = 500;
        let out = self.bed.run(
            "lan",
            &[
                &probe,
                "udp-first",
                "--dst",
                &dst,
                "--count",
                &count.to_string(),
            ],
        )?;
        let summary = out
            .lines()
            .find(|l| l.starts_with("answered "))
            .ok_or(format!("udp-first: {out:?}"))?;
        let answered: u32 = word_after(summary, "answered")?;
        if answered < count * 95 / 100 {
            return Err(format!("first exchanges: {summary}"));
        }
        let p50: f64 = word_after(summary, "p50")?;
        let p99: f64 = word_after(summary, "p99")?;
        self.push(
            "first exchange, new UDP flow, p50",
            "µs",
            false,
            path,
            rep,
            p50,
        );
        self.push(
            "first exchange, new UDP flow, p99",
            "µs",
            false,
            path,
            rep,
            p99,
        );
        Ok(())
    }

    /// CPU time at a fixed offered load, per gigabyte (TCP, 3 Gbit/s) and per million
    /// datagrams (64-byte UDP frames, 100 kpps): the testbed's (every process the benchmark
    /// started, endpoints and gateway, and the kernel's work done on their behalf) and, for
    /// wanlb, its own.
    pub fn cost(&mut self, path: Path, rep: usize, active: &Active) -> Result<()> {
        let testbed = self.cgroup.as_ref().ok_or(
            "cost: no cgroup to measure in (neither cgroup v2 nor v1's cpuacct is mounted \
             at /sys/fs/cgroup)",
        )?;
        let wanlb = match active {
            Active::Wanlb { cgroup, .. } => cgroup.as_ref(),
            _ => None,
        };
        let usage = || -> Result<(f64, Option<f64>)> {
            Ok((
                testbed.usage_us()?,
                wanlb.map(Cgroup::usage_us).transpose()?,
            ))
        };
        let secs = self.cli.seconds.unwrap_or(5).to_string();
        // TCP: bytes delivered, from iperf3's receiver
        let before = usage()?;
        let json = self.bed.run(
            "lan",
            &[
                "iperf3", "-c", TCP_SERVER, "-b", COST_TCP, "-t", &secs, "-J",
            ],
        )?;
        let after = usage()?;
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| format!("iperf3 JSON: {e}"))?;
        let bytes = (v["end"]["sum_received"]["bytes"].as_f64()).ok_or(format!(
            "iperf3: {}",
            v["error"].as_str().unwrap_or("no bytes")
        ))?;
        let per_gb = |us: f64| us / 1e6 / (bytes / 1e9);
        let tcp = (
            per_gb(after.0 - before.0),
            after.1.zip(before.1).map(|(a, b)| per_gb(a - b)),
        );
        // UDP: datagrams delivered, from the sink
        let probe = self.bed.probe();
        let sink = Proc::start(
            self.bed
                .cmd("inet", &[&probe, "udp-sink", "--udp", "198.19.1.0/26"]),
        )?;
        sink.wait_for("listening", "udp sink")?;
        let before = usage()?;
        self.bed.run(
            "lan",
            &[
                &probe,
                "udp-paced",
                "--dst",
                "198.19.1.0",
                "--pps",
                COST_UDP_PPS,
                "--seconds",
                &secs,
            ],
        )?;
        std::thread::sleep(Duration::from_millis(100));
        let after = usage()?;
        let received: f64 = word_after(&sink.stop(), "received")?;
        if received == 0.0 {
            return Err("cost: no datagram arrived".into());
        }
        let per_million = |us: f64| us / 1e3 / (received / 1e6);
        let udp = (
            per_million(after.0 - before.0),
            after.1.zip(before.1).map(|(a, b)| per_million(a - b)),
        );
        let lines = [
            (
                "CPU per GB, TCP at 3 Gbit/s, testbed",
                "CPU s/GB",
                Some(tcp.0),
            ),
            (
                "CPU per GB, TCP at 3 Gbit/s, wanlb alone",
                "CPU s/GB",
                tcp.1,
            ),
            (
                "CPU per million datagrams, UDP at 100 kpps, testbed",
                "CPU ms/M",
                Some(udp.0),
            ),
            (
                "CPU per million datagrams, UDP at 100 kpps, wanlb alone",
                "CPU ms/M",
                udp.1,
            ),
        ];
        for (metric, unit, value) in lines {
            if let Some(value) = value {
                self.push(metric, unit, false, path, rep, value);
            }
        }
        Ok(())
    }
}

/// The word after `key` in `text`, parsed.
pub fn word_after<T: std::str::FromStr>(text: &str, key: &str) -> Result<T> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = (words.iter().position(|w| *w == key)).ok_or(format!("no {key} in {text:?}"))?;
    (words.get(i + 1).and_then(|w| w.parse().ok())).ok_or(format!("bad {key} in {text:?}"))
}

/// A cgroup the benchmark made to read CPU time from: the scheduler's own account of the time
/// its processes ran, to the nanosecond, including the kernel's packet work done in their
/// context (softirqs run where a send or a receive raised them). /proc/stat counts in ticks
/// (250 a second here, and no separate IRQ time), and counts every process on the machine.
pub struct Cgroup {
    dir: PathBuf,
    v2: bool,
    /// Where the processes moved in came from, to go back there before the cgroup goes.
    origin: Option<PathBuf>,
}

impl Cgroup {
    /// Makes `name` at the top of the CPU accounting hierarchy (cgroup v2, or v1's cpuacct)
    /// and moves this process into it, and with it everything it starts from now on.
    pub fn enter_new(name: &str) -> Result<Cgroup> {
        let (base, v2) = if std::fs::exists("/sys/fs/cgroup/cgroup.controllers").unwrap_or(false) {
            (PathBuf::from("/sys/fs/cgroup"), true)
        } else if std::fs::exists("/sys/fs/cgroup/cpuacct/cpuacct.usage").unwrap_or(false) {
            (PathBuf::from("/sys/fs/cgroup/cpuacct"), false)
        } else {
            return Err("no cgroup v2 or cpuacct hierarchy at /sys/fs/cgroup".into());
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let origin = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let ours = if v2 {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == "cpuacct")
            };
            ours.then(|| base.join(path.trim_start_matches('/')))
        });
        let mut cgroup = Cgroup::create(base.join(name), v2)?;
        cgroup.add(std::process::id())?;
        cgroup.origin = origin;
        Ok(cgroup)
    }

    fn create(dir: PathBuf, v2: bool) -> Result<Cgroup> {
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Cgroup {
            dir,
            v2,
            origin: None,
        })
    }

    /// A cgroup below this one, for one process of the testbed.
    pub fn child(&self, name: &str) -> Result<Cgroup> {
        Cgroup::create(self.dir.join(name), self.v2)
    }

    /// Moves process `pid` (all its threads) in.
    pub fn add(&self, pid: u32) -> Result<()> {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| format!("{}: {e}", procs.display()))
    }

    /// CPU time its processes have used, in microseconds.
    pub fn usage_us(&self) -> Result<f64> {
        let (file, key) = if self.v2 {
            ("cpu.stat", Some("usage_usec"))
        } else {
            ("cpuacct.usage", None)
        };
        let path = self.dir.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        match key {
            Some(key) => word_after(&text, key),
            None => text
                .trim()
                .parse::<f64>()
                .map(|ns| ns / 1e3)
                .map_err(|e| e.to_string()),
        }
    }
}

impl Drop for Cgroup {
    /// Moves this process back where it was, if it was moved in, and removes the cgroup (which
    /// fails, leaving it, while a process still runs in it).
    fn drop(&mut self) {
        if let Some(origin) = &self.origin {
            let _ = std::fs::write(origin.join("cgroup.procs"), std::process::id().to_string());
        }
        for _ in 0..20 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("wanlb-bench: could not remove {}", self.dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::word_after;

    #[test]
    fn words_after_keys() {
        let line = "answered 498 of 500 p50 61.5 p99 140.0";
        assert_eq!(word_after::<u32>(line, "answered"), Ok(498));
        assert_eq!(word_after::<f64>(line, "p99"), Ok(140.0));
        assert!(word_after::<f64>(line, "p90").is_err());
        assert!(word_after::<u32>("answered many", "answered").is_err());
    }
}
