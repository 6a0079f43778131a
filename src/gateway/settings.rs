//! Each running part's share of the settings: the engine's, the monitor's, the host route's.
//! Made at start and again at each reload, from the settings in force and the plan; the
//! settings themselves are never rewritten.

use std::time::SystemTime;

use crate::config::{Config, HostTraffic, Net6, OnUplinkDown};
use crate::engine::family::V6;
use crate::engine::port_forward::Forward;
use crate::engine::select::{Pin, Prefix};
use crate::engine::{EngineConfig, UplinkConfig};
use crate::io::host_route::HostRouteSettings;
use crate::io::monitor::MonitorSettings;
use crate::io::system;
use crate::preflight::Plan;
use crate::uplink::{self, UplinkId};

/// The id of uplink `name` (validated to be one of the settings').
pub(super) fn uplink_id(config: &Config, name: &str) -> UplinkId {
    let at = config.uplinks.iter().position(|u| u.name == name);
    uplink::id_at(at.expect("validated"))
}

/// The machine's memory, which sizes the flow table unless `max_flows` is given; a quarter
/// of a gigabyte (the smallest default table) if it cannot be read.
fn machine_memory() -> u64 {
    system::total_memory().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the machine's memory: the flow table gets the smallest default size");
        0
    })
}

/// The engine's part of `config`.
pub(super) fn engine_config(config: &Config, plan: &Plan) -> EngineConfig {
    let pins = config
        .pins
        .iter()
        .filter_map(|p| {
            Some(Pin {
                prefix: p.prefix.v4()?,
                strict: p.strict,
                uplink: uplink_id(config, &p.uplink),
            })
        })
        .collect();
    // the secret of the NAT's port choice: from a clock, the ports would be predictable
    let seed = getrandom::u64().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no random bytes from the kernel: NAT ports are predictable");
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    EngineConfig {
        uplinks: config
            .uplinks
            .iter()
            .zip(&plan.uplinks)
            .map(|(u, r)| UplinkConfig {
                name: u.name.clone(),
                addr: u32::from(r.addr),
                weight: u.weight,
                tier: u.tier,
            })
            .collect(),
        pins,
        affinity_timeout_ms: config.affinity_timeout.as_millis() as u64,
        timeouts: (&config.timeouts).into(),
        ports: plan.nat_pool,
        seed: seed ^ u64::from(std::process::id()),
        reset_tcp_on_down: config.on_uplink_down == OnUplinkDown::Reset,
        udp_affinity: config.udp_affinity,
        limits: config.limits(plan.nat_pool, machine_memory()),
    }
}

/// The IPv6 pins as the engine takes them.
pub(super) fn engine_pins6(config: &Config) -> Vec<Pin<V6>> {
    config
        .pins
        .iter()
        .filter_map(|p| {
            let net = p.prefix.v6()?;
            Some(Pin {
                prefix: net6(net)?,
                strict: p.strict,
                uplink: uplink_id(config, &p.uplink),
            })
        })
        .collect()
}

/// An IPv6 network of the settings as the engine keeps it.
pub(super) fn net6(net: Net6) -> Option<Prefix<V6>> {
    Prefix::masked(u128::from(net.addr()), net.prefix_len())
}

/// The forwards to IPv6 hosts as the engine takes them.
pub(super) fn engine_forwards6(config: &Config) -> Vec<Forward<V6>> {
    config
        .forwards
        .iter()
        .filter_map(|f| {
            let std::net::SocketAddr::V6(to) = f.to else {
                return None;
            };
            Some(Forward {
                proto: f.proto.number(),
                port: f.port,
                uplink: uplink_id(config, &f.uplink),
                host: u128::from(*to.ip()),
                host_port: to.port(),
            })
        })
        .collect()
}

/// The forwards to IPv4 hosts as the engine takes them.
pub(super) fn engine_forwards(config: &Config) -> Vec<Forward> {
    config
        .forwards4()
        .filter_map(|f| {
            let to = f.to4()?;
            Some(Forward {
                proto: f.proto.number(),
                port: f.port,
                uplink: uplink_id(config, &f.uplink),
                host: u32::from(*to.ip()),
                host_port: to.port(),
            })
        })
        .collect()
}

/// The monitor's part of `config`.
pub(super) fn monitor_settings(config: &Config) -> MonitorSettings {
    MonitorSettings {
        health: config.uplink_health(),
        targets: config.uplink_targets(),
        targets6: config.uplink_targets6(),
    }
}

/// The host route's part of `config`.
pub(super) fn host_route_settings(config: &Config) -> HostRouteSettings {
    HostRouteSettings {
        follow: config.host_traffic == HostTraffic::Follow,
        ranks: config.uplinks.iter().map(|u| (u.tier, u.weight)).collect(),
    }
}
