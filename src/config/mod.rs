//! Settings from a TOML file and command-line flags, validated before anything on the system
//! is touched. Every error names the flag or the file, line and key it comes from.
//!
//! Each setting is declared once, in settings.rs (an uplink's keys in uplink.rs); declare.rs
//! and spec.rs turn the declarations into the file's and the flags' forms, loading, reload
//! (reload.rs) and the README's reference (reference.rs). Checking the settings against the
//! running system is not done here but in `crate::preflight`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::engine::flow::Timeouts;
use crate::engine::limits::{self, Limits};
use crate::health::HealthSettings;

mod declare;
mod forward;
mod listen;
mod load;
mod metered;
mod net;
mod parse;
mod pin;
pub mod reference;
mod reload;
mod settings;
mod spec;
mod uplink;
mod values;

pub use declare::{ReloadClass, Row, Written};
pub use forward::{ForwardProto, ForwardSpec, parse_forward_flag};
pub use metered::ByteSize;
pub use net::{Cidr, Net6, is_routable_unicast6};
pub use parse::{
    format_duration, parse_duration, parse_ipv4, parse_ports, parse_prefix, parse_target,
};
pub use pin::{PinSpec, parse_pin_flag};
pub use reload::Reload;
pub use settings::{Config, DEFAULT_LISTEN, Flags, IdleTimeouts, TimeoutFlags};
pub use uplink::{Gateway6Spec, GatewaySpec, Prefix6Spec, UplinkSpec, parse_uplink_flag};
pub use values::{FastPathMode, HostTraffic, OnUplinkDown, Steering};

use declare::Settings;
use load::{At, Loading, line_of};

/// The most uplinks wanlb runs with: sets of uplinks are 32-bit masks in the engine.
pub const MAX_UPLINKS: usize = crate::engine::MAX_UPLINKS;

/// A setting that cannot be used, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub message: String,
}

fn err<T>(origin: impl fmt::Display, message: impl fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError {
        origin: origin.to_string(),
        message: message.to_string(),
    })
}

/// Every setting that cannot be used, one a line: the file's in the order of its lines, then
/// the flags' and the checks between settings in the order found. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    /// `errors`, which must not be empty.
    fn from(errors: Vec<ConfigError>) -> ConfigErrors {
        debug_assert!(!errors.is_empty());
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads the file (if any), applies the flags, and checks everything that can be checked
    /// without looking at the system. Returns every error found, not just the first.
    pub fn load(flags: &Flags) -> Result<Config, ConfigErrors> {
        let mut c = Config::defaults();
        let mut loading = Loading::default();
        let mut file_read = true;
        if let Some(path) = &flags.config {
            file_read = match std::fs::read_to_string(path) {
                Ok(text) => c.read_file(path, &text, &mut loading),
                Err(e) => {
                    loading.errors.push(ConfigError {
                        origin: format!("--config {}", path.display()),
                        message: format!("cannot read it: {e}"),
                    });
                    false
                }
            };
        }
        c.apply_flags(flags, &mut loading);
        // without the file, the checks between settings would mostly report what it holds
        if file_read {
            c.validate(&mut loading);
        }
        loading.finish(c)
    }

    /// Applies the file. False if it is not TOML of the expected shape: that error is the
    /// only one found in it.
    fn read_file(&mut self, path: &Path, text: &str, l: &mut Loading) -> bool {
        let file = match toml::from_str(text) {
            Ok(file) => file,
            Err(e) => {
                let origin = match e.span() {
                    Some(s) => format!("{} line {}", path.display(), line_of(text, s.start)),
                    None => path.display().to_string(),
                };
                l.take(err::<()>(origin, e.message()));
                return false;
            }
        };
        self.apply_file(&file, &At { file: path, text }, l);
        true
    }

    /// The checks between settings, past those whose value was refused.
    fn validate(&self, l: &mut Loading) {
        if self.lan.is_empty() && !l.refused.contains("lan") {
            l.take(err::<()>(
                "--lan",
                "at least one LAN interface is needed (--lan IFACE or lan = [...] in the file)",
            ));
        }
        if self.uplinks.is_empty() && l.refused_uplinks.is_empty() {
            l.take(err::<()>(
                "--uplink",
                "at least one uplink is needed (--uplink NAME,dev=IFACE[,gw=IPV4] or [[uplink]] in the file)",
            ));
        }
        if self.uplinks.len() > MAX_UPLINKS {
            l.take(err::<()>(
                "--uplink",
                format!("at most {MAX_UPLINKS} uplinks are supported"),
            ));
        }
        if let (Some(per_host), Some(all)) = (self.max_flows_per_host, self.max_flows)
            && per_host > all
        {
            l.take(err::<()>(
                l.place("max_flows_per_host", "--max-flows-per-host"),
                format!("{per_host} is more than max_flows ({all}): one host cannot have more flows than the table holds"),
            ));
        }
        let mut devs = HashSet::new();
        for u in &self.uplinks {
            l.take(parse::check_name(&u.name, &u.origin, "uplink name"));
            if l.take(parse::check_name(&u.dev, &u.origin, "dev"))
                .is_none()
            {
                continue;
            }
            let clash = if !devs.insert(&u.dev) {
                "is already used by another uplink"
            } else if self.lan.contains(&u.dev) {
                "is also a LAN interface"
            } else if self.tun == u.dev && !l.refused.contains("tun") {
                "is the TUN device's name"
            } else {
                continue;
            };
            l.take(err::<()>(&u.origin, format!("dev {:?} {clash}", u.dev)));
        }
        self.check_ipv6(l);
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && self.listen_token.is_none()
            && !l.refused.contains("listen_token")
        {
            l.take(err::<()>(
                l.place("listen", "--listen"),
                format!(
                    "{addr} is reachable from other hosts, and the status tells them about your lines and their traffic: give a token (--listen-token TOKEN or listen_token in the file; clients then send Authorization: Bearer TOKEN), or listen on 127.0.0.1"
                ),
            ));
        }
        if let Some(rtt) = self.max_rtt
            && rtt >= self.health_timeout
            && !l.refused.contains("health_timeout")
        {
            l.take(err::<()>(
                l.place("max_rtt", "--max-rtt"),
                format!(
                    "{rtt:?} can never be reached: answers later than the health timeout ({:?}) count as lost",
                    self.health_timeout
                ),
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        let refused = l.refused_uplinks.iter().map(String::as_str);
        for name in self.uplinks.iter().map(|u| u.name.as_str()).chain(refused) {
            // a flag without a name gives none
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort_unstable();
        let unknown: Vec<_> = self
            .pins
            .iter()
            .filter(|p| !names.contains(&p.uplink.as_str()))
            .map(|p| ConfigError {
                origin: p.origin.clone(),
                message: format!(
                    "unknown uplink {:?} (uplinks: {})",
                    p.uplink,
                    names.join(", ")
                ),
            })
            .collect();
        let unknown_for_forwards = self.forwards_to_unknown_uplinks(&names);
        l.errors.extend(unknown);
        l.errors.extend(unknown_for_forwards);
    }

    /// The uplinks' IPv6 keys against each other.
    fn check_ipv6(&self, l: &mut Loading) {
        let mut prefixes: Vec<(Net6, &str)> = Vec::new();
        let mut auto: Option<&str> = None;
        for u in &self.uplinks {
            if u.gw6.is_none() && (u.prefix6.is_some() || u.src6.is_some()) {
                let key = if u.prefix6.is_some() {
                    "prefix6"
                } else {
                    "src6"
                };
                l.take(err::<()>(
                    &u.origin,
                    format!(
                        "{key} needs gw6 (IPV6|auto): without a router the line carries no IPv6"
                    ),
                ));
            }
            match u.prefix6 {
                Some(Prefix6Spec::Auto) => match auto {
                    Some(first) => {
                        l.take(err::<()>(
                            &u.origin,
                            format!("prefix6=auto is also given to uplink {first:?}: the kernel's route for a delegated prefix does not say through which line it came, so only one line can follow it; give the others' prefixes"),
                        ));
                    }
                    None => auto = Some(&u.name),
                },
                Some(Prefix6Spec::Net(n)) => {
                    let overlap = prefixes
                        .iter()
                        .find(|(p, _)| p.contains(n.addr()) || n.contains(p.addr()));
                    match overlap {
                        Some((p, name)) => {
                            l.take(err::<()>(
                                &u.origin,
                                format!("prefix6 {n} overlaps uplink {name:?}'s {p}: each line delegates a prefix of its own"),
                            ));
                        }
                        None => prefixes.push((n, &u.name)),
                    }
                }
                None => {}
            }
        }
    }

    /// Every setting at its default: what a file and flags that give nothing load to (but
    /// for the checks, which want a LAN and an uplink).
    pub fn defaults() -> Config {
        <Config as Settings>::defaults()
    }

    /// Each setting with one value or a list, as the file would write it, for check-config.
    pub fn written(&self) -> Vec<Written> {
        <Config as Settings>::written(self, &Config::defaults())
    }

    /// The health targets probed through `uplink`, of both families.
    pub fn targets_of<'a>(&'a self, uplink: &'a UplinkSpec) -> &'a [IpAddr] {
        uplink.check.as_deref().unwrap_or(&self.health_target)
    }

    /// The IPv4 health targets probed through `uplink`: they judge the line.
    pub fn targets4_of(&self, uplink: &UplinkSpec) -> Vec<Ipv4Addr> {
        let v4 = |a: &IpAddr| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        };
        self.targets_of(uplink).iter().filter_map(v4).collect()
    }

    /// The IPv6 health targets probed through `uplink`: they judge the line's IPv6 alone.
    pub fn targets6_of(&self, uplink: &UplinkSpec) -> Vec<Ipv6Addr> {
        let v6 = |a: &IpAddr| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        };
        self.targets_of(uplink).iter().filter_map(v6).collect()
    }

    /// Each uplink's IPv4 health targets, in the uplinks' order.
    pub fn uplink_targets(&self) -> Vec<Vec<Ipv4Addr>> {
        self.uplinks.iter().map(|u| self.targets4_of(u)).collect()
    }

    /// Each uplink's IPv6 health targets, in the uplinks' order.
    pub fn uplink_targets6(&self) -> Vec<Vec<Ipv6Addr>> {
        self.uplinks.iter().map(|u| self.targets6_of(u)).collect()
    }

    /// Whether any uplink carries IPv6 (has an IPv6 router).
    pub fn has_ipv6(&self) -> bool {
        self.uplinks.iter().any(|u| u.gw6.is_some())
    }

    /// How each uplink's health is judged, in the uplinks' order: as `health()`, at the
    /// uplink's own `interval` if it has one.
    pub fn uplink_health(&self) -> Vec<HealthSettings> {
        self.uplinks
            .iter()
            .map(|u| HealthSettings {
                interval: u.interval.unwrap_or(self.health_interval),
                ..self.health()
            })
            .collect()
    }

    /// How a line's health is judged (at `health_interval`).
    pub fn health(&self) -> HealthSettings {
        HealthSettings {
            interval: self.health_interval,
            timeout: self.health_timeout,
            down_after: self.down_after,
            up_after: self.up_after,
            max_loss_pct: self.max_loss,
            max_rtt: self.max_rtt,
        }
    }

    /// The weights of the uplinks in `tier` added up: a line's share of new destinations
    /// while its whole tier is up is its weight over this.
    pub fn tier_weight(&self, tier: u8) -> u32 {
        self.uplinks
            .iter()
            .filter(|u| u.tier == tier)
            .map(|u| u.weight)
            .sum()
    }

    /// Ports one LAN host may hold per uplink and protocol, for a pool of `pool`.
    pub fn ports_per_host(&self, pool: (u16, u16)) -> u32 {
        let size = u32::from(pool.1 - pool.0) + 1;
        self.max_ports_per_host.unwrap_or((size / 4).max(1))
    }

    /// The engine's limits for the NAT pool `pool` on a machine with `total_memory` bytes: as
    /// given, else flows by the memory ([`limits::default_max_flows`]), a sixteenth of them
    /// per host, a quarter of the pool per host; a forward's connections from one source, an
    /// eighth of its (one host's) share.
    pub fn limits(&self, pool: (u16, u16), total_memory: u64) -> Limits {
        let max_flows = self
            .max_flows
            .unwrap_or_else(|| limits::default_max_flows(total_memory));
        let max_flows_per_host = self
            .max_flows_per_host
            .unwrap_or_else(|| limits::default_max_flows_per_host(max_flows))
            .min(max_flows);
        Limits {
            max_flows,
            max_flows_per_host,
            max_ports_per_host: self.ports_per_host(pool),
            max_embryonic_per_forward: self.max_embryonic_per_forward,
            max_flows_per_forward_source: (max_flows_per_host / limits::FORWARD_SOURCE_SHARE)
                .max(1),
        }
    }
}

impl From<&IdleTimeouts> for Timeouts {
    fn from(t: &IdleTimeouts) -> Timeouts {
        // at most a week each: far from u64's end
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Timeouts {
            tcp_established: ms(t.tcp_established),
            tcp_transitory: ms(t.tcp_transitory),
            tcp_reset: ms(t.tcp_reset),
            udp: ms(t.udp),
            icmp: ms(t.icmp),
        }
    }
}

#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod listen_tests;
#[cfg(test)]
mod metered_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
pub(crate) mod tests;
