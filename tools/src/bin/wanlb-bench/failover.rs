//! The failover measurement: a line of isp1 cut beyond the gateway or at its link, the gap
//! a UDP stream sees, what it loses, and when a TCP connection on that line is reset.

use super::*;

impl Run<'_> {
    /// The failover measurement, `reps` times for each kind of cut, on a wanlb of its own
    /// that checks its lines' health and pins the test destinations to isp1.
    pub(crate) fn failover(&mut self, reps: usize, bar: &ProgressBar) -> Result<()> {
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

/// Where isp1's line is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Cut {
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
pub(crate) const BEFORE_CUT: Duration = Duration::from_secs(1);
pub(crate) const AFTER_CUT: Duration = Duration::from_secs(3);
pub(crate) const ISP1_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub(crate) const ISP2_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub(crate) const STREAM_DST: &str = "198.19.1.1:7000";
pub(crate) const HOLD_DST: &str = "198.19.1.2:9000";

#[derive(Clone, Debug, Serialize)]
pub(crate) struct FailoverSample {
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
pub(crate) struct Arrival {
    seq: u64,
    src: SocketAddrV4,
    at: u64,
}

pub(crate) fn arrivals(out: &str) -> Vec<Arrival> {
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
pub(crate) fn failover_gap(got: &[Arrival]) -> Option<f64> {
    let first2 = got.iter().position(|a| *a.src.ip() == ISP2_SRC)?;
    let last1 = got[..first2].iter().rfind(|a| *a.src.ip() == ISP1_SRC)?;
    Some(got[first2].at.saturating_sub(last1.at) as f64 / 1e6)
}

/// Sequence numbers 0..sent that never arrived.
pub(crate) fn lost(got: &[Arrival], sent: u64) -> u64 {
    let mut seen = vec![false; usize::try_from(sent).unwrap_or(0)];
    for a in got {
        if let Some(s) = usize::try_from(a.seq).ok().and_then(|i| seen.get_mut(i)) {
            *s = true;
        }
    }
    seen.iter().filter(|s| !**s).count() as u64
}

/// Whether `line` has `phrase` as words (not the start of a longer word).
pub(crate) fn has_phrase(line: &str, phrase: &str) -> bool {
    line.match_indices(phrase).any(|(i, _)| {
        !line[i + phrase.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric())
    })
}

/// The event a line of wanlb's log reports about uplink `name`: Some(true) for "uplink up",
/// Some(false) for "uplink down".
pub(crate) fn uplink_event(line: &str, name: &str) -> Option<bool> {
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
pub(crate) fn uplink_is_up(log: &str, name: &str) -> bool {
    log.lines()
        .filter_map(|l| uplink_event(l, name))
        .next_back()
        .unwrap_or(false)
}

/// How many times wanlb logged uplink `name` down.
pub(crate) fn downs(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| uplink_event(l, name) == Some(false))
        .count()
}

/// Median and worst of values where None means "never" (worse than any number).
pub(crate) fn median_worst(v: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let mut sorted: Vec<f64> = v.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let finite = |x: f64| x.is_finite().then_some(x);
    match sorted.last() {
        None => (None, None),
        Some(&worst) => (finite(median(sorted.clone())), finite(worst)),
    }
}

#[derive(Serialize)]
pub(crate) struct FailoverLine {
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

pub(crate) fn summarize_failover(samples: &[FailoverSample]) -> Vec<FailoverLine> {
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
pub(crate) const FAILOVER_ARGS: [&str; 4] = [
    "--health-target",
    "198.19.255.1",
    "--pin",
    "198.19.1.0/24=isp1",
];

/// What tcp-hold reported: "reset" and the time from the cut in ms, "alive", or "error KIND".
pub(crate) fn tcp_outcome(out: &str, cut_ns: u64) -> Result<(String, Option<f64>)> {
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

pub(crate) fn fmt_opt(v: Option<f64>, none: &str) -> String {
    v.map_or(none.into(), fmt)
}

pub(crate) fn failover_markdown(lines: &[FailoverLine], flags: &str) -> String {
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
