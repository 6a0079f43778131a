//! `wanlb status`: a snapshot as a table for a person, like `mwan3 status`.

use super::Snapshot;

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn rate(bytes: u64, earlier: Option<u64>, seconds: f64) -> String {
    match earlier {
        Some(e) if seconds > 0.0 => {
            let bits = bytes.saturating_sub(e) as f64 * 8.0 / seconds;
            if bits >= 1e9 {
                format!("{:.1} Gb/s", bits / 1e9)
            } else if bits >= 1e6 {
                format!("{:.1} Mb/s", bits / 1e6)
            } else {
                format!("{:.0} kb/s", bits / 1e3)
            }
        }
        _ => "-".into(),
    }
}

/// The table for `now`; with an earlier snapshot, throughput over the time between them.
pub fn render(s: &Snapshot, earlier: Option<&Snapshot>) -> String {
    let seconds = earlier.map_or(0.0, |e| s.taken_at.saturating_sub(e.taken_at) as f64);
    let before = |name: &str| earlier?.uplinks.iter().find(|u| u.name == name);
    let mut out = format!(
        "{:<10} {:<6} {:>6} {:>9} {:>6} {:>12} {:>12} {:>7} {:>14}\n",
        "uplink",
        "state",
        "since",
        "rtt",
        "loss",
        "out",
        "in",
        "flows",
        if s.balance == "bytes" {
            "bytes (weight)"
        } else {
            "share (weight)"
        }
    );
    for u in &s.uplinks {
        let prev = before(&u.name);
        let rtt = u
            .rtt_median_seconds
            .map_or("-".to_string(), |r| format!("{:.1} ms", r * 1000.0));
        out += &format!(
            "{:<10} {:<6} {:>6} {:>9} {:>5.0}% {:>12} {:>12} {:>7} {:>6.0}% ({:.0}%)\n",
            u.name,
            u.state,
            ago(s.taken_at, u.since),
            rtt,
            u.loss_ratio * 100.0,
            rate(u.tx_bytes, prev.map(|p| p.tx_bytes), seconds),
            rate(u.rx_bytes, prev.map(|p| p.rx_bytes), seconds),
            u.nat_ports_in_use.tcp + u.nat_ports_in_use.udp + u.nat_ports_in_use.icmp,
            if s.balance == "bytes" {
                u.byte_share
            } else {
                u.share
            } * 100.0,
            u.weight_share * 100.0,
        );
        if u.state != "up" && !u.reason.is_empty() {
            out += &format!("{:<10} {}\n", "", u.reason);
        }
        if let Some(c) = &u.cap {
            use crate::metered::size::human_size;
            out += &format!(
                "{:<10} cap: {} of {} ({}){}\n",
                "",
                human_size(c.period_bytes),
                human_size(c.cap_bytes),
                c.state,
                c.resets_on
                    .as_ref()
                    .map_or(String::new(), |d| format!(", starts again on {d}"))
            );
        }
    }
    out += &format!(
        "flows: {} tcp, {} udp, {} icmp; destinations bound: {}\n",
        s.flows.tcp, s.flows.udp, s.flows.icmp, s.affinity_entries
    );
    for p in &s.pins {
        out += &format!(
            "pin {} -> {}{}\n",
            p.prefix,
            p.uplink,
            if p.strict { " (strict)" } else { "" }
        );
    }
    for f in &s.forwards {
        out += &format!(
            "forward {}:{} of {} -> {}: {} now, {} so far\n",
            f.proto, f.port, f.uplink, f.to, f.connections_live, f.connections_total
        );
    }
    for d in s.top_destinations.iter().take(5) {
        out += &format!(
            "busy {} via {}: {} in {} flow{}\n",
            d.address,
            d.uplink,
            size(d.bytes),
            d.flows,
            if d.flows == 1 { "" } else { "s" }
        );
    }
    out
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{DestinationReport, ForwardReport, PinReport, UplinkReport};

    #[test]
    fn a_line_per_uplink_with_state_rtt_loss_throughput_and_share() {
        let u = |name: &str, state: &str, tx: u64| UplinkReport {
            name: name.into(),
            state: state.into(),
            since: 1000,
            reason: if state == "down" {
                "3 probe rounds in a row unanswered".into()
            } else {
                String::new()
            },
            rtt_median_seconds: Some(0.0125),
            loss_ratio: 0.1,
            tx_bytes: tx,
            share: 0.5,
            weight_share: 0.667,
            ..UplinkReport::default()
        };
        let earlier = Snapshot {
            taken_at: 1100,
            uplinks: vec![u("isp1", "up", 0), u("isp2", "down", 0)],
            ..Snapshot::default()
        };
        let now = Snapshot {
            taken_at: 1101,
            uplinks: vec![u("isp1", "up", 1_250_000), u("isp2", "down", 0)],
            pins: vec![PinReport {
                prefix: "198.19.200.91/32".into(),
                uplink: "isp2".into(),
                strict: true,
            }],
            top_destinations: vec![DestinationReport {
                address: "198.19.0.7".into(),
                uplink: "isp1".into(),
                bytes: 8_013_756,
                flows: 2,
            }],
            forwards: vec![ForwardReport {
                proto: "tcp".into(),
                port: 8080,
                to: "198.18.3.10:80".into(),
                uplink: "isp2".into(),
                connections_live: 2,
                connections_total: 15,
            }],
            ..Snapshot::default()
        };
        let table = render(&now, Some(&earlier));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("uplink"), "{table}");
        assert!(lines[1].starts_with("isp1       up"), "{table}");
        assert!(
            lines[1].contains("10.0 Mb/s") && lines[1].contains("12.5 ms"),
            "{table}"
        );
        assert!(lines[1].contains("50% (67%)"), "{table}");
        assert!(lines[2].starts_with("isp2       down"), "{table}");
        assert!(
            lines[3].contains("3 probe rounds in a row unanswered"),
            "{table}"
        );
        assert!(
            table.contains("pin 198.19.200.91/32 -> isp2 (strict)"),
            "{table}"
        );
        assert!(
            table.contains("busy 198.19.0.7 via isp1: 8.0 MB in 2 flows"),
            "{table}"
        );
        assert!(
            table.contains("forward tcp:8080 of isp2 -> 198.18.3.10:80: 2 now, 15 so far"),
            "{table}"
        );
    }
}
