//! The side-by-side report: the paths a measurement runs on, and per metric each path's median
//! with its spread (lowest and highest repetition), the ratios to the kernel recipe, a
//! markdown table and an SVG chart.

use std::path::Path as FsPath;

use serde::Serialize;

use super::{Result, Sample, fmt, median};

/// What carries the LAN's traffic during a measurement, in the order each repetition runs
/// them (alternating, so drift on a shared machine hits every path alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    /// The kernel recipe wanlb replaces: multipath route, a table per uplink, MASQUERADE.
    Kernel,
    /// The gateway forwarding without any NAT through isp1 (the internet routes the LAN's
    /// addresses back): what forwarding alone costs, the floor for any NAT.
    Routed,
    Wanlb,
    /// wanlb without its kernel fast path: every packet through userspace.
    WanlbOffloadOff,
}

pub const PATHS: [Path; 4] = [
    Path::Kernel,
    Path::Routed,
    Path::Wanlb,
    Path::WanlbOffloadOff,
];

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Kernel => "kernel",
            Path::Routed => "routed",
            Path::Wanlb => "wanlb",
            Path::WanlbOffloadOff => "wanlb-off",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Path::Kernel => "kernel recipe",
            Path::Routed => "plain routing, no NAT",
            Path::Wanlb => "wanlb",
            Path::WanlbOffloadOff => "wanlb --offload off",
        }
    }
}

/// One path's repetitions of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    fn of(values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let n = values.len();
        Some(Spread {
            median: median(values),
            min,
            max,
            n,
        })
    }

    /// "median (min-max)", or the value alone for one repetition.
    fn cell(&self) -> String {
        if self.n == 1 {
            fmt(self.median)
        } else {
            format!("{} ({}-{})", fmt(self.median), fmt(self.min), fmt(self.max))
        }
    }
}

#[derive(Serialize)]
pub struct Line {
    pub metric: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Per path (in [`PATHS`] order), if measured on it.
    pub paths: Vec<(Path, Spread)>,
}

impl Line {
    pub fn get(&self, path: Path) -> Option<Spread> {
        self.paths.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
    }

    /// `path`'s median over the kernel recipe's.
    pub fn ratio(&self, path: Path) -> f64 {
        match (self.get(path), self.get(Path::Kernel)) {
            (Some(a), Some(k)) => a.median / k.median,
            _ => f64::NAN,
        }
    }
}

/// Medians and spreads per metric, in the order the metrics were first measured.
pub fn summarize(samples: &[Sample]) -> Vec<Line> {
    let mut metrics: Vec<&Sample> = Vec::new();
    for s in samples {
        if !metrics.iter().any(|m| m.metric == s.metric) {
            metrics.push(s);
        }
    }
    metrics
        .into_iter()
        .map(|m| {
            let paths = PATHS
                .iter()
                .filter_map(|&p| {
                    let values = samples
                        .iter()
                        .filter(|s| s.metric == m.metric && s.path == p)
                        .map(|s| s.value)
                        .collect();
                    Spread::of(values).map(|s| (p, s))
                })
                .collect();
            Line {
                metric: m.metric,
                unit: m.unit,
                higher_is_better: m.higher_is_better,
                paths,
            }
        })
        .collect()
}

pub fn markdown(lines: &[Line], reps: usize, meta: &str) -> String {
    let mut md = format!("# wanlb vs the kernel recipe\n\n{meta}\n");
    if lines.is_empty() {
        return md;
    }
    let shown: Vec<Path> = PATHS
        .into_iter()
        .filter(|p| lines.iter().any(|l| l.get(*p).is_some()))
        .collect();
    md += &format!(
        "\nMedians of {reps} alternating repetitions, lowest and highest in brackets; ratios \
         are of medians, to the kernel recipe's.\n\n| metric | unit |"
    );
    let ratios: Vec<Path> = shown
        .iter()
        .copied()
        .filter(|p| matches!(p, Path::Wanlb | Path::WanlbOffloadOff | Path::Routed))
        .collect();
    for p in &shown {
        md += &format!(" {} |", p.column());
    }
    for p in &ratios {
        md += &format!(" {}/kernel |", p.name());
    }
    md += "\n|---|---|";
    md += &"---:|".repeat(shown.len() + ratios.len());
    md += "\n";
    for l in lines {
        let note = if l.higher_is_better {
            ""
        } else {
            " (lower is better)"
        };
        md += &format!("| {}{} | {} |", l.metric, note, l.unit);
        for p in &shown {
            md += &format!(" {} |", l.get(*p).map_or("".into(), |s| s.cell()));
        }
        for p in &ratios {
            let r = l.ratio(*p);
            md += &format!(" {} |", if r.is_finite() { fmt(r) } else { "".into() });
        }
        md += "\n";
    }
    for l in lines
        .iter()
        .filter(|l| l.metric.starts_with("ping RTT p50") || l.metric.starts_with("first"))
    {
        if let (Some(w), Some(k)) = (l.get(Path::Wanlb), l.get(Path::Kernel)) {
            md += &format!(
                "\n{}: wanlb adds {} {}.\n",
                l.metric,
                fmt(w.median - k.median),
                l.unit
            );
        }
    }
    md
}

pub fn chart(lines: &[Line], path: &FsPath) -> Result<()> {
    use plotters::prelude::*;
    let shown: Vec<(&Line, f64)> = lines
        .iter()
        .map(|l| (l, l.ratio(Path::Wanlb)))
        .filter(|(_, r)| r.is_finite())
        .collect();
    let max = shown.iter().map(|l| l.1).fold(1.2f64, f64::max) * 1.1;
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
        .map(|(l, _)| format!("{} ({})", l.metric, l.unit))
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
    c.draw_series(shown.iter().enumerate().map(|(i, (l, ratio))| {
        let good = if l.higher_is_better {
            *ratio >= 1.0
        } else {
            *ratio <= 1.0
        };
        let color = if good {
            RGBColor(46, 139, 87)
        } else {
            RGBColor(205, 92, 92)
        };
        Rectangle::new(
            [(0.0, i as f64 + 0.15), (*ratio, i as f64 + 0.85)],
            color.filled(),
        )
    }))
    .map_err(|e| e.to_string())?;
    c.draw_series(shown.iter().enumerate().map(|(i, (_, ratio))| {
        Text::new(
            format!("{ratio:.2}"),
            (ratio + max * 0.01, i as f64 + 0.6),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: Path, rep: usize, value: f64) -> Sample {
        Sample {
            metric: "m",
            unit: "u",
            higher_is_better: true,
            path,
            rep,
            value,
        }
    }

    #[test]
    fn each_path_gets_its_median_and_spread() {
        let samples = [
            sample(Path::Kernel, 1, 10.0),
            sample(Path::Wanlb, 1, 30.0),
            sample(Path::Kernel, 2, 12.0),
            sample(Path::Wanlb, 2, 9.0),
            sample(Path::Kernel, 3, 11.0),
            sample(Path::Wanlb, 3, 22.0),
        ];
        let lines = summarize(&samples);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(
            l.get(Path::Kernel),
            Some(Spread {
                median: 11.0,
                min: 10.0,
                max: 12.0,
                n: 3
            })
        );
        assert_eq!(
            l.get(Path::Wanlb).map(|s| (s.median, s.min, s.max)),
            Some((22.0, 9.0, 30.0))
        );
        assert_eq!(l.get(Path::Routed), None);
        assert_eq!(l.ratio(Path::Wanlb), 2.0);
        assert!(l.ratio(Path::Routed).is_nan());
        let md = markdown(&lines, 3, "meta");
        assert!(
            md.contains("| m | u | 11.0 (10.0-12.0) | 22.0 (9.00-30.0) | 2.00 |"),
            "{md}"
        );
        assert!(
            !md.contains("plain routing"),
            "no column for a path not measured"
        );
    }
}
