//! A snapshot in the Prometheus (OpenMetrics) text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::Snapshot;
use super::server::ControlCounts;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The metrics of `s` and of the control port's server (`control`), as `GET /metrics`
/// serves them.
pub fn render(s: &Snapshot, control: &ControlCounts) -> String {
    let mut registry = Registry::default();
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(name, help, family.clone());
        family
    };
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let up = gauge(
        &mut registry,
        "wanlb_uplink_up",
        "1 while the uplink carries new flows' traffic (health up), else 0",
    );
    let weight = gauge(
        &mut registry,
        "wanlb_uplink_weight",
        "The uplink's weight within its tier",
    );
    let tier = gauge(
        &mut registry,
        "wanlb_uplink_tier",
        "The uplink's tier (1 is used first)",
    );
    let rtt = gauge(
        &mut registry,
        "wanlb_uplink_rtt_seconds",
        "Median health-probe round-trip time over the recent window",
    );
    let loss = gauge(
        &mut registry,
        "wanlb_uplink_loss_ratio",
        "Fraction of health probes lost over the recent window",
    );
    let tx_bytes = counter(
        &mut registry,
        "wanlb_uplink_tx_bytes",
        "IP bytes sent through the uplink (userspace and fast path)",
    );
    let rx_bytes = counter(
        &mut registry,
        "wanlb_uplink_rx_bytes",
        "IP bytes received through the uplink (userspace and fast path)",
    );
    let tx_packets = counter(
        &mut registry,
        "wanlb_uplink_tx_packets",
        "Packets sent through the uplink (GSO segments counted one by one on the fast path)",
    );
    let rx_packets = counter(
        &mut registry,
        "wanlb_uplink_rx_packets",
        "Packets received through the uplink",
    );
    let changes = counter(
        &mut registry,
        "wanlb_uplink_state_changes",
        "Health state changes of the uplink",
    );
    let ipv6_up = gauge(
        &mut registry,
        "wanlb_uplink_ipv6_up",
        "1 while the uplink carries new IPv6 flows (its IPv6 up, judged apart from IPv4), else 0; only uplinks with IPv6",
    );
    let ipv6_rtt = gauge(
        &mut registry,
        "wanlb_uplink_ipv6_rtt_seconds",
        "Median IPv6 health-probe round-trip time over the recent window",
    );
    let ipv6_loss = gauge(
        &mut registry,
        "wanlb_uplink_ipv6_loss_ratio",
        "Fraction of IPv6 health probes lost over the recent window",
    );
    let ports = gauge(
        &mut registry,
        "wanlb_nat_ports_in_use",
        "NAT ports (and ICMP identifiers) in use, per uplink and protocol",
    );
    let cap = gauge(
        &mut registry,
        "wanlb_uplink_cap_bytes",
        "The uplink's data cap per period (IP bytes both ways), for uplinks with one",
    );
    let period = gauge(
        &mut registry,
        "wanlb_uplink_period_bytes",
        "IP bytes both ways counted in the uplink's current period (health probes included)",
    );
    for u in &s.uplinks {
        let l = labels(&[("uplink", &u.name)]);
        period.get_or_create(&l).set(u.period_bytes as f64);
        if let Some(c) = &u.cap {
            cap.get_or_create(&l).set(c.cap_bytes as f64);
        }
        up.get_or_create(&l)
            .set(if u.state == "up" { 1.0 } else { 0.0 });
        weight.get_or_create(&l).set(f64::from(u.weight));
        tier.get_or_create(&l).set(f64::from(u.tier));
        if let Some(r) = u.rtt_median_seconds {
            rtt.get_or_create(&l).set(r);
        }
        loss.get_or_create(&l).set(u.loss_ratio);
        tx_bytes.get_or_create(&l).inc_by(u.tx_bytes);
        rx_bytes.get_or_create(&l).inc_by(u.rx_bytes);
        tx_packets.get_or_create(&l).inc_by(u.tx_packets);
        rx_packets.get_or_create(&l).inc_by(u.rx_packets);
        changes.get_or_create(&l).inc_by(u.state_changes);
        if let Some(v6) = &u.ipv6 {
            ipv6_up
                .get_or_create(&l)
                .set(if v6.usable { 1.0 } else { 0.0 });
            if let Some(r) = v6.rtt_median_seconds {
                ipv6_rtt.get_or_create(&l).set(r);
            }
            ipv6_loss.get_or_create(&l).set(v6.loss_ratio);
        }
        for (proto, n) in [
            ("tcp", u.nat_ports_in_use.tcp),
            ("udp", u.nat_ports_in_use.udp),
            ("icmp", u.nat_ports_in_use.icmp),
        ] {
            let l = labels(&[("uplink", &u.name), ("proto", proto)]);
            ports.get_or_create(&l).set(n as f64);
        }
    }
    let flows = gauge(
        &mut registry,
        "wanlb_flows_active",
        "Live flows, per protocol (IPv4)",
    );
    gauge(
        &mut registry,
        "wanlb_flows_ipv6_active",
        "Live IPv6 flows, every protocol",
    )
    .get_or_create(&labels(&[]))
    .set(s.flows_ipv6 as f64);
    for (proto, n) in [
        ("tcp", s.flows.tcp),
        ("udp", s.flows.udp),
        ("icmp", s.flows.icmp),
    ] {
        flows
            .get_or_create(&labels(&[("proto", proto)]))
            .set(n as f64);
    }
    let flow_limit = gauge(
        &mut registry,
        "wanlb_flows_max",
        "The most flows the table holds (--max-flows)",
    );
    flow_limit
        .get_or_create(&Vec::new())
        .set(s.flow_limit as f64);
    let hosts = gauge(
        &mut registry,
        "wanlb_lan_hosts",
        "LAN addresses with flows: verified (a TCP handshake completed from them, each its own share) or not (one share per LAN network)",
    );
    for (state, n) in [
        ("verified", s.hosts.verified),
        ("unverified", s.hosts.unverified),
    ] {
        hosts
            .get_or_create(&labels(&[("state", state)]))
            .set(n as f64);
    }
    gauge(
        &mut registry,
        "wanlb_lan_host_identities",
        "LAN addresses whose link and MAC the neighbour table gives: verified addresses of one MAC are one host",
    )
    .get_or_create(&Vec::new())
    .set(s.hosts.identified as f64);
    counter(
        &mut registry,
        "wanlb_lan_host_identities_refused",
        "Identities from the neighbour table not kept, wanlb's table of them being full: those addresses stay hosts of their own",
    )
    .get_or_create(&Vec::new())
    .inc_by(s.hosts.identities_refused);
    let affinity = gauge(
        &mut registry,
        "wanlb_affinity_entries",
        "Destinations bound to an uplink",
    );
    affinity
        .get_or_create(&Vec::new())
        .set(s.affinity_entries as f64);
    let forward_total = counter(
        &mut registry,
        "wanlb_forward_connections",
        "Connections (UDP: flows) opened through a port forward, per uplink, protocol and port",
    );
    let forward_live = gauge(
        &mut registry,
        "wanlb_forward_connections_active",
        "Connections (UDP: flows) through a port forward now",
    );
    for f in &s.forwards {
        let port = f.port.to_string();
        let l = labels(&[("uplink", &f.uplink), ("proto", &f.proto), ("port", &port)]);
        forward_total.get_or_create(&l).inc_by(f.connections_total);
        forward_live
            .get_or_create(&l)
            .set(f.connections_live as f64);
    }
    let drops = counter(&mut registry, "wanlb_drops", "Packets dropped, by reason");
    for (reason, n) in &s.drops {
        drops
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    let evictions = counter(
        &mut registry,
        "wanlb_evictions",
        "Flows ended before their time (and destination bindings not kept) to bound the tables, by reason",
    );
    for (reason, n) in &s.evictions {
        evictions
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    counter(
        &mut registry,
        "wanlb_fast_path_hand_overs_deferred",
        "Hand-overs to the fast path that waited, its queue being full; offered again later",
    )
    .get_or_create(&Vec::new())
    .inc_by(s.hand_overs_deferred);
    let on_change = counter(
        &mut registry,
        "wanlb_on_change_commands",
        "--on-change commands, by outcome: started, failed, timed_out (killed), superseded (a newer change of the line came while it waited)",
    );
    for (outcome, n) in &s.on_change {
        on_change
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc_by(*n);
    }
    let connections = counter(
        &mut registry,
        "wanlb_control_connections",
        "Connections accepted on the control port",
    );
    connections
        .get_or_create(&Vec::new())
        .inc_by(control.connections);
    let closed = counter(
        &mut registry,
        "wanlb_control_connections_closed",
        "Control port connections closed by wanlb: the idlest at the connection limit, or a \
         client too slow to send its request or to read the answer",
    );
    for (reason, n) in &control.closed {
        closed
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    let refused = counter(
        &mut registry,
        "wanlb_control_requests_refused",
        "Control port requests refused: for another host (DNS rebinding), a POST from \
         another site, without the token, with a body",
    );
    for (reason, n) in &control.refused {
        refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ForwardReport, ProtoCounts, UplinkReport};

    #[test]
    fn every_metric_the_contract_names_is_there_with_its_labels() {
        let s = Snapshot {
            uplinks: vec![UplinkReport {
                name: "isp1".into(),
                weight: 2,
                tier: 1,
                state: "up".into(),
                rtt_median_seconds: Some(0.012),
                loss_ratio: 0.25,
                tx_bytes: 1000,
                rx_bytes: 2000,
                tx_packets: 10,
                rx_packets: 20,
                state_changes: 3,
                nat_ports_in_use: ProtoCounts {
                    tcp: 1,
                    udp: 2,
                    icmp: 0,
                },
                ipv6: Some(crate::control::Ipv6Report {
                    state: "down".into(),
                    usable: false,
                    rtt_median_seconds: Some(0.02),
                    loss_ratio: 1.0,
                    ..crate::control::Ipv6Report::default()
                }),
                ..UplinkReport::default()
            }],
            flows: ProtoCounts {
                tcp: 4,
                udp: 5,
                icmp: 6,
            },
            flows_ipv6: 12,
            affinity_entries: 7,
            flow_limit: 65_536,
            hosts: crate::control::HostCounts {
                verified: 3,
                unverified: 240,
                identified: 5,
                identities_refused: 1,
            },
            drops: vec![("no_flow".into(), 9)],
            evictions: vec![("early_drop".into(), 11)],
            hand_overs_deferred: 12,
            on_change: vec![("timed_out".into(), 13), ("superseded".into(), 14)],
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
        let control = ControlCounts {
            connections: 70,
            closed: vec![("idlest", 6), ("timeout", 1)],
            refused: vec![("host", 2), ("origin", 3), ("token", 4), ("body", 5)],
        };
        let text = render(&s, &control);
        for line in [
            r#"wanlb_uplink_up{uplink="isp1"} 1.0"#,
            r#"wanlb_uplink_ipv6_up{uplink="isp1"} 0.0"#,
            r#"wanlb_uplink_ipv6_rtt_seconds{uplink="isp1"} 0.02"#,
            r#"wanlb_uplink_ipv6_loss_ratio{uplink="isp1"} 1.0"#,
            r#"wanlb_uplink_weight{uplink="isp1"} 2.0"#,
            r#"wanlb_uplink_tx_bytes_total{uplink="isp1"} 1000"#,
            r#"wanlb_uplink_rx_bytes_total{uplink="isp1"} 2000"#,
            r#"wanlb_uplink_tx_packets_total{uplink="isp1"} 10"#,
            r#"wanlb_uplink_rx_packets_total{uplink="isp1"} 20"#,
            r#"wanlb_uplink_rtt_seconds{uplink="isp1"} 0.012"#,
            r#"wanlb_uplink_loss_ratio{uplink="isp1"} 0.25"#,
            r#"wanlb_uplink_state_changes_total{uplink="isp1"} 3"#,
            r#"wanlb_nat_ports_in_use{uplink="isp1",proto="udp"} 2.0"#,
            r#"wanlb_flows_active{proto="icmp"} 6.0"#,
            "wanlb_flows_ipv6_active 12.0",
            "wanlb_affinity_entries 7.0",
            r#"wanlb_drops_total{reason="no_flow"} 9"#,
            r#"wanlb_evictions_total{reason="early_drop"} 11"#,
            "wanlb_fast_path_hand_overs_deferred_total 12",
            r#"wanlb_on_change_commands_total{outcome="timed_out"} 13"#,
            r#"wanlb_on_change_commands_total{outcome="superseded"} 14"#,
            "wanlb_flows_max 65536.0",
            r#"wanlb_lan_hosts{state="unverified"} 240.0"#,
            "wanlb_lan_host_identities 5.0",
            "wanlb_lan_host_identities_refused_total 1",
            r#"wanlb_forward_connections_total{uplink="isp2",proto="tcp",port="8080"} 15"#,
            r#"wanlb_forward_connections_active{uplink="isp2",proto="tcp",port="8080"} 2.0"#,
            "wanlb_control_connections_total 70",
            r#"wanlb_control_connections_closed_total{reason="idlest"} 6"#,
            r#"wanlb_control_connections_closed_total{reason="timeout"} 1"#,
            r#"wanlb_control_requests_refused_total{reason="host"} 2"#,
            r#"wanlb_control_requests_refused_total{reason="origin"} 3"#,
            r#"wanlb_control_requests_refused_total{reason="token"} 4"#,
            r#"wanlb_control_requests_refused_total{reason="body"} 5"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
