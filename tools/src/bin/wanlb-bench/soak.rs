//! `soak`: flows churn through wanlb at a steady rate for --minutes, fast path on, while its
//! resident memory and flows are sampled every 10 s. Once warmed up (by default the UDP
//! timeout and a minute more: by then the table holds as many flows as it will) its memory
//! must stay flat.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::report;
use super::stress::{self, Honest, Stop};
use super::watch::{self, Sample, Series, Target, Watch};
use super::{Bed, Cli, Proc, Result, fmt, quiet_internet};

/// New flows a second that expect no answer, from [`SPRAY_SOCKETS`] LAN ports.
const SPRAY_RATE: u32 = 2000;
const SPRAY_SOCKETS: u32 = 16;
/// UDP request/answer exchanges (each on a fresh socket) and TCP connections a second.
const UDP_RATE: u32 = 20;
const TCP_RATE: u32 = 20;
const EVERY: Duration = Duration::from_secs(10);
/// The default warm-up: wanlb's UDP timeout (5 min) and one more.
const WARMUP_MINUTES: u64 = 6;

/// The warm-up in seconds for a run of `minutes`, and why it is not what was asked (at most
/// half the run).
pub fn warmup(minutes: u64, asked: Option<u64>) -> (f64, Option<String>) {
    let wanted = asked.unwrap_or(WARMUP_MINUTES) as f64 * 60.0;
    let half = minutes as f64 * 30.0;
    if wanted > half {
        (
            half,
            Some(format!(
                "a warm-up of {} min does not fit a {minutes}-minute run: half of it is taken \
                 instead, so the table may still have been growing",
                wanted / 60.0
            )),
        )
    } else {
        (wanted, None)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SoakSummary {
    pub warmup_s: f64,
    pub rss_after_warmup_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// From the end of the warm-up to the end, in percent of the former.
    pub rss_change_pct: Option<f64>,
    pub rss_min_after_warmup_mib: Option<f64>,
    pub rss_max_after_warmup_mib: Option<f64>,
    pub flows_peak: Option<f64>,
    pub flows_end: Option<f64>,
}

pub fn summarize(samples: &[Sample], warmup_s: f64) -> SoakSummary {
    let with_rss: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t, s.rss_mib?)))
        .collect();
    let after: Vec<f64> = with_rss
        .iter()
        .filter(|(t, _)| *t >= warmup_s)
        .map(|(_, r)| *r)
        .collect();
    let start = after.first().copied();
    let end = with_rss.last().map(|(_, r)| *r);
    SoakSummary {
        warmup_s,
        rss_after_warmup_mib: start,
        rss_end_mib: end,
        rss_change_pct: start.zip(end).map(|(a, b)| (b - a) / a * 100.0),
        rss_min_after_warmup_mib: after.iter().copied().reduce(f64::min),
        rss_max_after_warmup_mib: after.iter().copied().reduce(f64::max),
        flows_peak: samples.iter().filter_map(|s| s.flows).reduce(f64::max),
        flows_end: samples.iter().rev().find_map(|s| s.flows),
    }
}

#[derive(Serialize)]
struct Soak {
    minutes: u64,
    fast_path: bool,
    summary: SoakSummary,
    warmup_note: Option<String>,
    honest: Option<Honest>,
    sprayed: Option<u64>,
    counters: Vec<Series>,
    counters_from: String,
    stop: Stop,
    events: Vec<String>,
    samples: Vec<Sample>,
}

pub fn run(bed: &Bed, cli: &Cli) -> Result<()> {
    if cli.minutes == 0 {
        return Err("--minutes must be at least 1".into());
    }
    let (warmup_s, warmup_note) = warmup(cli.minutes, cli.warmup_minutes);
    quiet_internet(bed)?;
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
    let load_before = report::load_average();
    let before = watch::gateway_state(bed)?;
    let wanlb = stress::start_wanlb(bed, cli, &[])?;
    let fast_path = wanlb.output().contains("kernel fast path attached");
    let watching = Watch::start(
        bed,
        Target {
            wanlb: Some(wanlb.child.id()),
            status: false,
            every: EVERY,
        },
    );
    let seconds = (cli.minutes * 60).to_string();
    let rates = [SPRAY_RATE, SPRAY_SOCKETS, UDP_RATE, TCP_RATE].map(|n| n.to_string());
    let mut churn = Proc::start(bed.cmd(
        "lan",
        &[
            &probe,
            "churn",
            "--seconds",
            &seconds,
            "--spray-rate",
            &rates[0],
            "--spray-sockets",
            &rates[1],
            "--udp-rate",
            &rates[2],
            "--tcp-rate",
            &rates[3],
        ],
    ))?;
    let mut events = Vec::new();
    let began = Instant::now();
    let limit = Duration::from_secs(cli.minutes * 60 + 60);
    loop {
        if churn.wait_within(Duration::from_secs(60)).is_some() {
            break;
        }
        let last = watching
            .seen
            .lock()
            .expect("watch lock")
            .samples
            .last()
            .cloned();
        if let Some(s) = last {
            eprintln!(
                "soak {:>3.0} min: RSS {} MiB, flows {}",
                s.t / 60.0,
                s.rss_mib.map_or("-".into(), fmt),
                s.flows.map_or("-".into(), fmt)
            );
        }
        if began.elapsed() > limit {
            events.push("the churn did not end in time: stopped".into());
            break;
        }
    }
    let churned = churn.output();
    drop(churn);
    let seen = watching.finish();
    if let Some(t) = seen.gone_at {
        events.push(format!("wanlb was gone {:.0} min into the run", t / 60.0));
    }
    let (_, counters, counters_from) = watch::final_counters(bed, &wanlb);
    let (mut stop, log) = stress::stop_wanlb(wanlb);
    stress::check_left(bed, cli, &before, &mut stop);
    events.extend(
        watch::warnings(&log, 6)
            .into_iter()
            .map(|w| format!("wanlb logged `{w}`")),
    );
    drop(internet);
    let honest = stress::parse_honest(&churned);
    let sprayed = churned
        .lines()
        .find(|l| l.starts_with("total "))
        .and_then(|l| {
            stress::pairs(l)
                .into_iter()
                .find(|(k, _)| *k == "sprayed")?
                .1
                .parse()
                .ok()
        });
    let soak = Soak {
        minutes: cli.minutes,
        fast_path,
        summary: summarize(&seen.samples, warmup_s),
        warmup_note,
        honest,
        sprayed,
        counters: counters.into_iter().filter(|s| s.value != 0.0).collect(),
        counters_from: counters_from.into(),
        stop,
        events,
        samples: seen.samples,
    };
    let meta = format!(
        "{} Load average (1, 5, 15 min) before: {load_before}; after: {}.",
        report::machine(cli),
        report::load_average()
    );
    let flags = stress::wanlb_flags(cli, "DIR", &[]).join(" ");
    let md = format!("# wanlb soak\n\n{meta}\n{}", markdown(&soak, &flags));
    let json = serde_json::json!({ "meta": meta, "soak": soak });
    let samples = soak.samples.clone();
    report::write_report(
        cli,
        &md,
        &json,
        Some(&|path: &Path| chart(&samples, warmup_s, path)),
    )
}

fn markdown(s: &Soak, flags: &str) -> String {
    let sum = &s.summary;
    let mib = |v: Option<f64>| v.map_or("n/a".into(), fmt);
    let mut md = format!(
        "\n## Soak\n\nRough figures: the machine's cores are shared with other work while it \
         runs.\n\n`wanlb run {flags}` (fast path {}), started with `prlimit {}`. For {} \
         minutes the LAN host opened {SPRAY_RATE} new UDP flows a second that expect no \
         answer (from {SPRAY_SOCKETS} sockets to random addresses of 198.19.0.0/16 and \
         ports), and {UDP_RATE} UDP request/answer exchanges and {TCP_RATE} TCP connections a \
         second, each short-lived; wanlb's resident size (VmRSS) and flows (/metrics) were \
         sampled every {} s.\n\n",
        if s.fast_path { "on" } else { "NOT attached" },
        stress::WANLB_NOFILE,
        s.minutes,
        EVERY.as_secs()
    );
    md += &format!(
        "- Warm-up: the first {} min{}.\n",
        fmt(sum.warmup_s / 60.0),
        s.warmup_note
            .as_ref()
            .map_or(String::new(), |n| format!(" ({n})"))
    );
    md += &format!(
        "- RSS at the end of the warm-up {} MiB, at the end {} MiB: **{}** (between {} and {} \
         MiB after the warm-up).\n",
        mib(sum.rss_after_warmup_mib),
        mib(sum.rss_end_mib),
        sum.rss_change_pct
            .map_or("n/a".into(), |p| format!("{p:+.1} %")),
        mib(sum.rss_min_after_warmup_mib),
        mib(sum.rss_max_after_warmup_mib),
    );
    md += &format!(
        "- Flows: {} at the peak, {} at the end.\n",
        sum.flows_peak.map_or("n/a".into(), |f| format!("{f:.0}")),
        sum.flows_end.map_or("n/a".into(), |f| format!("{f:.0}")),
    );
    if let Some(h) = &s.honest {
        md += &format!(
            "- Exchanges that got through: TCP {} of {}, UDP {} of {}; one-way flows sent: {}.\n",
            h.tcp_ok,
            h.tcp_tried,
            h.udp_ok,
            h.udp_tried,
            s.sprayed.map_or("n/a".into(), |n| n.to_string())
        );
    }
    if !s.counters.is_empty() {
        let c: Vec<String> = s
            .counters
            .iter()
            .map(|c| format!("`{}` {}", c.key(), c.value))
            .collect();
        md += &format!("- Drops (from {}): {}.\n", s.counters_from, c.join(", "));
    }
    md += &format!(
        "- Stop: wanlb {}{}; the gateway namespace {}.\n",
        s.stop.how,
        s.stop
            .seconds
            .map_or(String::new(), |t| format!(" in {} s", fmt(t))),
        if s.stop.clean {
            "was left as it was found".to_string()
        } else {
            format!("differed in {} lines", s.stop.leftover.len())
        }
    );
    for e in &s.events {
        md += &format!("- {e}\n");
    }
    md += "\n| time (min:s) | RSS (MiB) | flows | open descriptors |\n|---|---:|---:|---:|\n";
    for x in &s.samples {
        let t = x.t.round() as u64;
        md += &format!(
            "| {}:{:02} | {} | {} | {} |\n",
            t / 60,
            t % 60,
            mib(x.rss_mib),
            x.flows.map_or("n/a".into(), |f| format!("{f:.0}")),
            x.fds.map_or("n/a".into(), |f| f.to_string()),
        );
    }
    md
}

/// RSS (left axis) and flows (right axis) over the run, the end of the warm-up marked.
fn chart(samples: &[Sample], warmup_s: f64, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let minutes = samples.last().map_or(1.0, |s| s.t / 60.0).max(1.0);
    let rss_max = samples.iter().filter_map(|s| s.rss_mib).fold(1.0, f64::max) * 1.15;
    let flows_max = samples.iter().filter_map(|s| s.flows).fold(1.0, f64::max) / 1e3 * 1.15;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "wanlb soak: resident memory (MiB, left) and flows (thousands, right)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0f64..minutes, 0f64..rss_max)
        .map_err(|x| e(&x))?
        .set_secondary_coord(0f64..minutes, 0f64..flows_max);
    c.configure_mesh()
        .x_desc("minutes")
        .y_desc("RSS (MiB)")
        .draw()
        .map_err(|x| e(&x))?;
    c.configure_secondary_axes()
        .y_desc("flows (k)")
        .draw()
        .map_err(|x| e(&x))?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    c.draw_series(LineSeries::new(
        samples
            .iter()
            .filter_map(|s| Some((s.t / 60.0, s.rss_mib?))),
        blue.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("RSS (MiB)")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], blue.stroke_width(2)));
    c.draw_secondary_series(LineSeries::new(
        samples
            .iter()
            .filter_map(|s| Some((s.t / 60.0, s.flows? / 1e3))),
        orange.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("flows (k)")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], orange.stroke_width(2)));
    let warm = warmup_s / 60.0;
    c.draw_series(LineSeries::new(
        [(warm, 0.0), (warm, rss_max)],
        BLACK.mix(0.5).stroke_width(1),
    ))
    .map_err(|x| e(&x))?
    .label("end of the warm-up")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
