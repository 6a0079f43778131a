//! The stress run's report (markdown), and what every report of the stress and soak runs
//! shares: the machine's description and the files written.

use std::path::Path;

use super::stress::{CROWD, Honest, Phase, PhaseRun, STOP_DEADLINE, WANLB_NOFILE, word_after};
use super::watch;
use super::{Cli, Gateway, Result, fmt};

/// Draws a report's chart into the file it is given.
pub type Chart<'a> = &'a dyn Fn(&Path) -> Result<()>;

/// The machine, for a report's header.
pub fn machine(cli: &Cli) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Linux {}, {} CPUs, wanlb --workers {}.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cli.workers,
    )
}

/// The load averages over 1, 5 and 15 minutes: how busy the machine was besides.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the report's markdown and JSON into --out, and its SVG chart with `chart` (or
/// removes an earlier run's); prints the markdown.
pub fn write_report(
    cli: &Cli,
    md: &str,
    json: &serde_json::Value,
    chart: Option<Chart>,
) -> Result<()> {
    std::fs::create_dir_all(&cli.out).map_err(|e| e.to_string())?;
    std::fs::write(cli.out.join("report.md"), md).map_err(|e| e.to_string())?;
    std::fs::write(
        cli.out.join("report.json"),
        serde_json::to_string_pretty(json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let svg = cli.out.join("report.svg");
    let files = match chart {
        Some(draw) => {
            draw(&svg)?;
            "{md,json,svg}"
        }
        None => {
            let _ = std::fs::remove_file(&svg);
            "{md,json}"
        }
    };
    println!("\n{md}\nreport: {}/report.{files}", cli.out.display());
    Ok(())
}

/// What an attack did, for the report's table: its packet rate, or what `http-crowd` held.
pub fn attack_cell(pps: Option<f64>, out: &str) -> String {
    if let Some(p) = pps {
        return format!("{} pps", count(p));
    }
    let crowd = (
        word_after(out, "idle_connected"),
        word_after(out, "pipeline_requests"),
    );
    match crowd {
        (Some(idle), Some(piped)) => {
            format!("{idle}/{CROWD} idle connections, {piped} requests pipelined")
        }
        _ => "n/a".into(),
    }
}

/// The phase's result in one line, for the progress log.
pub fn one_line(r: &PhaseRun) -> String {
    if let Some(e) = &r.error {
        return format!("could not run: {e}");
    }
    let mut s = format!(
        "attack {}, peak RSS {} MiB, flows peak {}, honest host {}",
        attack_cell(r.attack_pps, &r.attack),
        r.rss_peak_mib.map_or("-".into(), fmt),
        r.flows_peak.map_or("-".into(), fmt),
        honest_cell(r.honest.as_ref()),
    );
    if let Some(p) = &r.status {
        s += &format!(", status answered {}/{}", p.answered, p.polls);
    }
    if let Some(stop) = &r.stop {
        s += &format!(", {}", stop.how);
    }
    for e in &r.events {
        s += &format!("; {e}");
    }
    s
}

/// Packets that left untranslated while the phase ran, and while wanlb stopped.
fn leak_cell(r: &PhaseRun) -> String {
    let n = |v: Option<u64>| v.map_or("n/a".into(), |n| n.to_string());
    match r.path {
        Gateway::Wanlb => format!("{} / {}", n(r.leaked), n(r.leaked_stopping)),
        Gateway::Kernel => format!("{} / –", n(r.leaked)),
    }
}

fn percent(ok: u64, tried: u64) -> String {
    if tried == 0 {
        "n/a".into()
    } else {
        format!("{:.0} % ({ok}/{tried})", ok as f64 * 100.0 / tried as f64)
    }
}

fn honest_cell(h: Option<&Honest>) -> String {
    match h {
        Some(h) => format!(
            "TCP {}, UDP {}",
            percent(h.tcp_ok, h.tcp_tried),
            percent(h.udp_ok, h.udp_tried)
        ),
        None => "n/a".into(),
    }
}

fn count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The drop and eviction series that were not zero in some wanlb run, each with its value
/// per run (in the order of `runs`; None for a run that did not report it).
pub fn counter_rows(runs: &[&PhaseRun]) -> Vec<(String, Vec<Option<f64>>)> {
    let mut keys: Vec<String> = Vec::new();
    for r in runs {
        for s in r.counters.iter().filter(|s| s.value != 0.0) {
            if !keys.contains(&s.key()) {
                keys.push(s.key());
            }
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let values = runs
                .iter()
                .map(|r| r.counters.iter().find(|s| s.key() == k).map(|s| s.value))
                .collect();
            (k, values)
        })
        .collect()
}

pub fn markdown(runs: &[PhaseRun], seconds: u64, flags: &str) -> String {
    let mut md = format!(
        "\n## Stress\n\nRough figures: the machine's cores are shared with other work while it \
         runs (see the load average above), and the attackers, the second host, the servers \
         and wanlb all run on them.\n\n\
         Each phase runs {seconds} s on a fresh wanlb (`wanlb run {flags}`, started with \
         `prlimit {WANLB_NOFILE}`: the soft limit of open files systemd gives a service that \
         sets no `LimitNOFILE=`) and, for phases 1 to 3, on the kernel recipe (multipath route and \
         MASQUERADE, a DNAT rule for the forward). Throughout, a second LAN host \
         (198.18.3.11, on the same segment) opens 20 TCP connections (connect, 16 bytes \
         echoed) and 20 UDP request/answer exchanges (resent after 0.5 and 1 s) a second to \
         the simulated internet, and `wanlb status` is run every second with a {} s \
         deadline.\n\n",
        watch::STATUS_DEADLINE.as_secs()
    );
    for p in Phase::ALL {
        if runs.iter().any(|r| r.phase == p) {
            md += &format!("{}. **{}**: {}.\n", p.number(), p.name(), p.describe());
        }
    }
    md += "\n| phase | gateway | attack sent | RSS start → peak (MiB) | flows peak | second host \
           got through | `wanlb status` answered | its median / max (ms) | SIGTERM to exit | \
           left behind | LAN packets out untranslated: running / stopping |\n\
           |---|---|---:|---:|---:|---|---:|---:|---:|---|---:|\n";
    for r in runs {
        let dash = || "–".to_string();
        let wanlb = r.path == Gateway::Wanlb;
        if let Some(e) = &r.error {
            md += &format!(
                "| {} {} | {} | could not run: {} ||||||||| \n",
                r.number,
                r.phase.name(),
                r.path.name(),
                e.lines().next().unwrap_or("")
            );
            continue;
        }
        let rss = match (r.rss_start_mib, r.rss_peak_mib) {
            (Some(a), Some(b)) => format!("{} → {}", fmt(a), fmt(b)),
            (None, Some(b)) => fmt(b),
            _ if wanlb => "n/a".into(),
            _ => dash(),
        };
        let flows = r.flows_peak.map_or("n/a".into(), |f| {
            if wanlb {
                count(f)
            } else {
                format!("{} (conntrack)", count(f))
            }
        });
        let (answered, times) = match &r.status {
            Some(p) => (
                format!("{}/{}", p.answered, p.polls),
                format!(
                    "{} / {}",
                    p.median_ms.map_or("–".into(), fmt),
                    p.max_ms.map_or("–".into(), fmt)
                ),
            ),
            None => (dash(), dash()),
        };
        let (stop, left) = match &r.stop {
            Some(s) => (
                s.seconds.map_or_else(
                    || {
                        if s.how.starts_with("had already") {
                            "had died".into()
                        } else {
                            format!("killed after {} s", STOP_DEADLINE.as_secs())
                        }
                    },
                    |t| format!("{} s", fmt(t)),
                ),
                if s.clean {
                    "nothing".to_string()
                } else {
                    format!(
                        "{} lines differ{}",
                        s.leftover.len(),
                        match s.recovered {
                            Some(true) => "; a restart cleaned up",
                            Some(false) => "; a restart did not clean up",
                            None => "",
                        }
                    )
                },
            ),
            None => (dash(), dash()),
        };
        md += &format!(
            "| {} {} | {} | {} | {rss} | {flows} | {} | {answered} | {times} | {stop} | {left} \
             | {} |\n",
            r.number,
            r.phase.name(),
            r.path.name(),
            attack_cell(r.attack_pps, &r.attack),
            honest_cell(r.honest.as_ref()),
            leak_cell(r),
        );
    }
    let wanlb_runs: Vec<&PhaseRun> = runs
        .iter()
        .filter(|r| r.path == Gateway::Wanlb && r.error.is_none())
        .collect();
    let rows = counter_rows(&wanlb_runs);
    if !wanlb_runs.is_empty() {
        md += "\n### Drops, evictions and refusals (wanlb, by reason)\n\nEvery counter of \
               /metrics whose name says drop, evict, refuse, reject or shed, at the end of \
               each phase (each phase's wanlb starts from zero); those that stayed 0 \
               everywhere are left out.\n\n| counter |";
        for r in &wanlb_runs {
            md += &format!(" {} {} |", r.number, r.phase.name());
        }
        md += "\n|---|";
        md += &"---:|".repeat(wanlb_runs.len());
        md += "\n";
        for (key, values) in &rows {
            md += &format!("| `{key}` |");
            for v in values {
                md += &format!(" {} |", v.map_or("–".into(), count));
            }
            md += "\n";
        }
        if rows.is_empty() {
            md += &format!("| none |{}\n", " 0 |".repeat(wanlb_runs.len()));
        }
        for r in wanlb_runs.iter().filter(|r| r.counters_from != "/metrics") {
            md += &format!(
                "\nPhase {}: the counters come from {}.\n",
                r.number, r.counters_from
            );
        }
    }
    let kernel: Vec<&PhaseRun> = runs
        .iter()
        .filter(|r| r.path == Gateway::Kernel && r.conntrack.is_some())
        .collect();
    if !kernel.is_empty() {
        md += "\n### conntrack (the kernel recipe)\n\n| phase | nf_conntrack_max | entries peak | \
               entries at the end | drop | early_drop | insert_failed | invalid |\n\
               |---|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in kernel {
            let c = r.conntrack.as_ref().expect("filtered");
            let grew = |name: &str| {
                c.grew
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, v)| *v)
                    .to_string()
            };
            md += &format!(
                "| {} {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.number,
                r.phase.name(),
                c.max.map_or("n/a".into(), |m| m.to_string()),
                c.entries_peak.map_or("n/a".into(), count),
                c.entries_end.map_or("n/a".into(), |e| e.to_string()),
                grew("drop"),
                grew("early_drop"),
                grew("insert_failed"),
                grew("invalid"),
            );
        }
        md += "\ndrop, early_drop, insert_failed, invalid: how much these counters of \
               /proc/net/stat/nf_conntrack (`conntrack -S`) grew during the phase.\n";
    }
    md += "\n### What happened\n\n";
    for r in runs.iter().filter(|r| r.error.is_none()) {
        let mut notes = r.events.clone();
        if r.path == Gateway::Wanlb {
            if r.fast_path == Some(false) {
                notes.push("the kernel fast path was not attached".into());
            }
            if let (Some(fds), Some(threads)) = (r.fds_peak, r.threads_peak) {
                notes.push(format!(
                    "wanlb held up to {fds} open descriptors and {threads} threads"
                ));
            }
            if let Some(p) = &r.status
                && let Some(s) = p.longest_silence_s
            {
                notes.push(format!(
                    "`wanlb status` went unanswered for up to {} s in a row",
                    fmt(s)
                ));
            }
            if let Some(stop) = &r.stop {
                notes.push(format!("wanlb {}", stop.how));
                for l in stop.leftover.iter().take(12) {
                    notes.push(format!("left in the gateway namespace: `{l}`"));
                }
            }
        }
        if let Some(h) = &r.honest
            && !h.errors.is_empty()
        {
            let why: Vec<String> = h.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            notes.push(format!("the second host's failures: {}", why.join(", ")));
        }
        if !r.attack.is_empty() {
            notes.push(format!("attacker: `{}`", r.attack.replace('\n', " ")));
        }
        md += &format!("- phase {} on {}:\n", r.number, r.path.name());
        for n in notes {
            md += &format!("  - {n}\n");
        }
    }
    md
}
