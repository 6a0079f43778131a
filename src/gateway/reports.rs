//! What the running gateway tells: the snapshot behind `/status` and `/metrics`, the status
//! logged on SIGUSR1 and at exit, and each uplink's traffic for the history chart.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::config::Config;
use crate::control::history::Traffic;
use crate::engine::DropReason;
use crate::engine::limits::Eviction;
use crate::engine::select::Balance;
use crate::engine::wire::PROTO_TCP;
use crate::io::iface;
use crate::io::metering::{CapStatus, Metering};
use crate::io::nftables;
use crate::io::worker::Shared;
use crate::metered::OnCap;

use super::plumbing::nft_table_name;

/// How many of the busiest destinations the status lists.
const TOP_DESTINATIONS: usize = 10;

/// Each uplink's byte totals, userspace and fast path together, as the snapshot counts them
/// (without the rest of a snapshot, which runs nft).
pub(super) fn uplink_traffic(shared: &Shared) -> Vec<Traffic> {
    let fast = shared
        .fast_path
        .as_ref()
        .and_then(|f| f.totals().ok())
        .unwrap_or_default();
    let counters = shared.engine.counters();
    counters
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = fast.get(i).copied().unwrap_or_default();
            Traffic {
                tx_bytes: c.outbound_bytes + f.outbound_bytes,
                rx_bytes: c.inbound_bytes + f.inbound_bytes,
            }
        })
        .collect()
}

/// The busiest destinations now: a walk over every flow, and the fast path's.
pub(super) fn busiest_destinations(shared: &Shared) -> Vec<crate::control::DestinationReport> {
    shared
        .engine
        .busiest_destinations(TOP_DESTINATIONS, &shared.carried().unwrap_or_default())
        .into_iter()
        .map(|d| crate::control::DestinationReport {
            address: Ipv4Addr::from(d.addr).to_string(),
            uplink: shared.uplinks[d.uplink].name.clone(),
            bytes: d.bytes,
            flows: d.flows,
        })
        .collect()
}

/// What the status and metrics report, now, but the busiest destinations (see
/// [`busiest_destinations`]).
pub(super) fn snapshot(
    shared: &Shared,
    metering: &Metering,
    config: &Config,
) -> crate::control::Snapshot {
    use crate::control::{
        ForwardReport, HostCounts, Ipv6Report, PinReport, ProtoCounts, Snapshot, UplinkReport,
    };
    let caps = metering.status();
    let recent = metering.recent();
    let tier_bytes = |tier: u8| -> u64 {
        config
            .uplinks
            .iter()
            .zip(&recent)
            .filter(|(u, _)| u.tier == tier)
            .map(|(_, b)| b)
            .sum()
    };
    let counters = shared.engine.counters();
    let fast = shared
        .fast_path
        .as_ref()
        .and_then(|f| f.totals().ok())
        .unwrap_or_default();
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let destinations: u64 = counters.uplinks.iter().map(|c| c.destinations).sum();
    let uplinks = shared
        .uplinks
        .iter()
        .zip(&config.uplinks)
        .map(|(u, spec)| {
            let i = usize::from(u.id);
            let c = counters.uplinks[i];
            let f = fast.get(i).copied().unwrap_or_default();
            let status = u.status();
            let [tcp, udp, icmp] = shared.engine.ports_in_use(u.id);
            UplinkReport {
                name: u.name.clone(),
                device: u.dev.clone(),
                address: u.addr().to_string(),
                gateway: u.gateway().map(|g| g.to_string()).unwrap_or_default(),
                link: u.link.name().to_string(),
                gateway_mac: u.gateway_mac().map(crate::uplink::format_mac),
                tier: spec.tier,
                weight: spec.weight,
                state: status.state.name().to_string(),
                since: unix(status.since),
                reason: status.reason,
                carrier: status.carrier,
                rtt_median_seconds: status.stats.rtt_median_us.map(|us| us as f64 / 1e6),
                rtt_p90_seconds: status.stats.rtt_p90_us.map(|us| us as f64 / 1e6),
                loss_ratio: status.stats.loss(),
                state_changes: status.changes,
                tx_bytes: c.outbound_bytes + f.outbound_bytes,
                rx_bytes: c.inbound_bytes + f.inbound_bytes,
                tx_packets: c.outbound_packets + f.outbound_packets,
                rx_packets: c.inbound_packets + f.inbound_packets,
                flows_opened: c.flows,
                destinations: c.destinations,
                share: if destinations == 0 {
                    0.0
                } else {
                    c.destinations as f64 / destinations as f64
                },
                weight_share: f64::from(spec.weight)
                    / f64::from(config.tier_weight(spec.tier).max(1)),
                nat_ports_in_use: ProtoCounts { tcp, udp, icmp },
                period_bytes: caps[i].bytes,
                cap: cap_report(&caps[i]),
                byte_share: match tier_bytes(spec.tier) {
                    0 => 0.0,
                    all => recent[i] as f64 / all as f64,
                },
                ipv6: u.ipv6().map(|v6| Ipv6Report {
                    state: v6.state.name().to_string(),
                    usable: v6.is_up(status.state == crate::health::State::Up),
                    since: unix(v6.since),
                    reason: v6.reason.clone(),
                    address: v6.addr.map(|a| a.to_string()),
                    router: v6.router.map(|a| a.to_string()),
                    router_mac: v6.router_mac.map(crate::uplink::format_mac),
                    prefix: v6.prefix.map(|(p, len)| format!("{p}/{len}")),
                    translation: v6.translation().to_string(),
                    rtt_median_seconds: v6.stats.rtt_median_us.map(|us| us as f64 / 1e6),
                    loss_ratio: v6.stats.loss(),
                }),
            }
        })
        .collect();
    let [tcp, udp, icmp] = shared.engine.flows_by_proto();
    let flows_ipv6 = shared.engine.flows6() as u64;
    let io = &shared.io;
    let mut drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), counters.drop_count(*r)))
        .collect();
    for (name, n) in [
        ("no_gateway_mac", &io.no_gateway_mac),
        ("send_error", &io.send_errors),
        ("unsendable", &io.unsendable),
        ("tun_write_error", &io.tun_write_errors),
        ("short_read", &io.short_reads),
        ("truncated", &io.truncated),
        ("ring_full", &io.ring_full),
        ("forward_ring_full", &io.forward_ring_full),
    ] {
        drops.push((name.to_string(), n.load(Ordering::Relaxed)));
    }
    if let Ok(n) = iface::tx_dropped(&config.tun) {
        drops.push(("tun_queue_full".to_string(), n));
    }
    if let Ok(forward) = nftables::forward_drops(&nft_table_name(&config.tun)) {
        drops.push(("forwarded_from_uplink".to_string(), forward.from_uplink));
        drops.push(("ipv6_forward".to_string(), forward.ipv6));
        drops.push(("forwarded_from_tun".to_string(), forward.from_tun));
    }
    Snapshot {
        taken_at: unix(SystemTime::now()),
        uplinks,
        pins: config
            .pins
            .iter()
            .map(|p| PinReport {
                prefix: p.prefix.to_string(),
                uplink: p.uplink.clone(),
                strict: p.strict,
            })
            .collect(),
        flows: ProtoCounts { tcp, udp, icmp },
        flows_ipv6,
        flow_limit: u64::from(shared.engine.flow_limit()),
        hosts: {
            let (verified, unverified) = shared.engine.host_counts();
            let (identified, identities_refused) = shared.engine.host_identity_counts();
            HostCounts {
                verified: verified as u64,
                unverified: unverified as u64,
                identified: identified as u64,
                identities_refused,
            }
        },
        affinity_entries: shared.engine.destination_count() as u64,
        drops,
        hand_overs_deferred: counters.hand_overs_deferred,
        on_change: shared.io.hooks.counts(),
        evictions: Eviction::ALL
            .iter()
            .map(|e| (e.name().to_string(), counters.eviction_count(*e)))
            .collect(),
        // the control plane's, kept for a while: see [`busiest_destinations`]
        top_destinations: Vec::new(),
        // the engine's forwards are the configured ones, in order
        forwards: config
            .forwards4()
            .zip(shared.engine.forward_counts())
            .map(|(f, count)| ForwardReport {
                proto: f.proto.name().to_string(),
                port: f.port,
                to: f.to.to_string(),
                uplink: f.uplink.clone(),
                connections_live: count.live,
                connections_total: count.opened,
            })
            .collect(),
        balance: match config.balance {
            Balance::Destinations => "destinations",
            Balance::Bytes => "bytes",
        }
        .to_string(),
    }
}

/// An uplink's cap as the reports show it; None if it has none.
fn cap_report(c: &CapStatus) -> Option<crate::control::CapReport> {
    let cap = c.settings.cap?;
    Some(crate::control::CapReport {
        cap_bytes: cap,
        period_bytes: c.bytes,
        on_cap: match c.settings.on_cap {
            OnCap::Backup => "backup",
            OnCap::Off => "off",
            OnCap::Warn => "warn",
        }
        .to_string(),
        warn_percent: c.settings.warn_pct,
        period_start: c.period_start.map(|d| d.to_string()),
        resets_on: c.resets_on.map(|d| d.to_string()),
        state: if c.reached {
            "reached"
        } else if c.warned {
            "warned"
        } else {
            "under"
        }
        .to_string(),
    })
}

/// Logs the table sizes, per-uplink totals and drops (on SIGUSR1 and at exit); `table` is
/// wanlb's nftables table, whose forward rule counts what the uplinks tried to send in.
pub(super) fn log_status(shared: &Shared, table: &str, tun: &str) {
    let tun_queue_full =
        iface::tx_dropped(tun).map_or_else(|_| "unknown".into(), |n| n.to_string());
    let (counters, flows, mappings, destinations) = {
        let e = &shared.engine;
        (
            e.counters(),
            e.flow_count(),
            e.mapping_count(),
            e.destination_count(),
        )
    };
    let (verified_hosts, unverified_hosts) = shared.engine.host_counts();
    let evictions: Vec<String> = Eviction::ALL
        .iter()
        .map(|e| format!("{}={}", e.name(), counters.eviction_count(*e)))
        .collect();
    tracing::info!(
        flows,
        max_flows = shared.engine.flow_limit(),
        mappings,
        destinations,
        verified_hosts,
        unverified_hosts,
        moved = counters.moved,
        resets = counters.resets,
        unreachables = counters.unreachables,
        evictions = %evictions.join(" "),
        "status"
    );
    let forwards = shared.engine.forwards().iter();
    for (f, count) in forwards.zip(shared.engine.forward_counts()) {
        tracing::info!(
            forward = %format!(
                "{}:{} of {} -> {}:{}",
                if f.proto == PROTO_TCP { "tcp" } else { "udp" },
                f.port,
                shared.uplinks[f.uplink].name,
                Ipv4Addr::from(f.host),
                f.host_port
            ),
            connections_now = count.live,
            connections_so_far = count.opened,
            "forward"
        );
    }
    for (uplink, c) in shared.uplinks.iter().zip(&counters.uplinks) {
        let status = uplink.status();
        tracing::info!(
            uplink = %uplink.name,
            state = %status.state.name(),
            rtt_ms = %status.stats.rtt_ms_text(),
            loss_pct = status.stats.loss_pct(),
            outbound_packets = c.outbound_packets,
            outbound_bytes = c.outbound_bytes,
            inbound_packets = c.inbound_packets,
            inbound_bytes = c.inbound_bytes,
            flows = c.flows,
            destinations = c.destinations,
            "uplink totals"
        );
    }
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| counters.drop_count(**r) > 0)
        .map(|r| format!("{}={}", r.name(), counters.drop_count(*r)))
        .collect();
    if let Some(fast) = &shared.fast_path {
        let (handed_over, withdrawn, refused) = fast.flow_counts();
        tracing::info!(
            flows = handed_over - withdrawn,
            handed_over,
            withdrawn,
            refused,
            "kernel fast path"
        );
        match fast.totals() {
            Ok(totals) => {
                for (uplink, t) in shared.uplinks.iter().zip(totals) {
                    tracing::info!(
                        uplink = %uplink.name,
                        outbound_packets = t.outbound_packets,
                        outbound_bytes = t.outbound_bytes,
                        inbound_packets = t.inbound_packets,
                        inbound_bytes = t.inbound_bytes,
                        "uplink fast path totals"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the fast path's counters"),
        }
    }
    let io = &shared.io;
    let (from_uplinks, ipv6_forward, from_tun) = match nftables::forward_drops(table) {
        Ok(d) => (
            d.from_uplink.to_string(),
            d.ipv6.to_string(),
            d.from_tun.to_string(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the forward counters");
            ("unknown".into(), "unknown".into(), "unknown".into())
        }
    };
    tracing::info!(
        engine = %drops.join(" "),
        forwarded_from_uplinks = %from_uplinks,
        ipv6_forward = %ipv6_forward,
        forwarded_from_tun = %from_tun,
        no_gateway_mac = io.no_gateway_mac.load(Ordering::Relaxed),
        send_errors = io.send_errors.load(Ordering::Relaxed),
        unsendable = io.unsendable.load(Ordering::Relaxed),
        tun_write_errors = io.tun_write_errors.load(Ordering::Relaxed),
        short_reads = io.short_reads.load(Ordering::Relaxed),
        truncated = io.truncated.load(Ordering::Relaxed),
        ring_full = io.ring_full.load(Ordering::Relaxed),
        forward_ring_full = io.forward_ring_full.load(Ordering::Relaxed),
        tun_queue_full = %tun_queue_full,
        "drops"
    );
}
