//! The settings against the running system, before anything on it is changed: interfaces
//! exist and are links wanlb can send on, uplink addresses and gateways are on their
//! interface's subnet (a point-to-point link needs no gateway), the LAN has sources to
//! translate, the NAT port pool leaves the kernel's ephemeral ports and the gateway's own
//! services alone, and each forward goes to a LAN host from a port no service of the gateway
//! holds.
//!
//! What passes becomes a [`Plan`]: what the settings left to the system, settled (each
//! uplink's interface, address and gateway, the pool, the LAN's sources). The gateway runs
//! from the settings and the plan; the settings themselves are never rewritten. This module
//! sits above `config` and `io`, which know nothing of each other.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::config::{
    Cidr, Config, ConfigError, ConfigErrors, Gateway6Spec, GatewaySpec, Net6, Prefix6Spec,
    UplinkSpec,
};
use crate::engine::select::Prefix;
use crate::io::iface::{self, Interface};
use crate::io::system::{self, LocalService, SystemError};
use crate::uplink::{Addressing6, Delegation, LinkEvent, LinkKind, Router6};

/// The pool when no range of ports is free at all (the kernel's ephemeral ports and this
/// host's services cover them).
pub const FALLBACK_NAT_PORTS: (u16, u16) = (61000, 65535);

/// What the settings are checked against.
#[derive(Clone, Debug, Default)]
pub struct SystemFacts {
    pub interfaces: Vec<Interface>,
    pub ephemeral_ports: (u16, u16),
    pub services: Vec<LocalService>,
    /// The IPv4 default routes of the main table: interface index and gateway.
    pub default_routes: Vec<(u32, Ipv4Addr)>,
    /// What the kernel says of IPv6: addresses, default routes, delegated prefixes.
    pub ipv6: Vec<LinkEvent>,
}

/// Why the system could not be checked, or the settings do not fit it.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Every setting that does not fit, one a line.
    #[error(transparent)]
    Settings(#[from] ConfigErrors),
    #[error(transparent)]
    System(#[from] SystemError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl SystemFacts {
    /// Reads what `config` is checked against.
    pub fn read(config: &Config) -> Result<SystemFacts, PreflightError> {
        let io = |what| move |source| PreflightError::Io { what, source };
        let interfaces = iface::list().map_err(io("listing interfaces"))?;
        let range = system::read_sysctl("net.ipv4.ip_local_port_range")?;
        let mut bounds = range
            .split_whitespace()
            .filter_map(|p| p.parse::<u16>().ok());
        let ephemeral_ports = (
            bounds.next().unwrap_or(32768),
            bounds.next().unwrap_or(60999),
        );
        let uplink_addrs: Vec<Ipv4Addr> = interfaces
            .iter()
            .filter(|i| config.uplinks.iter().any(|u| u.dev == i.name))
            .flat_map(|i| i.ipv4.iter().map(|(a, _)| *a))
            .collect();
        let services = system::local_services(&uplink_addrs)?;
        let mut default_routes = Vec::new();
        let mut ipv6 = Vec::new();
        let dump = |e: LinkEvent| match e {
            LinkEvent::DefaultRoute {
                ifindex,
                gateway,
                present: true,
            } => default_routes.push((ifindex, gateway)),
            LinkEvent::Address6 { .. }
            | LinkEvent::DefaultRoute6 { .. }
            | LinkEvent::Delegated { .. } => ipv6.push(e),
            _ => {}
        };
        crate::io::netlink::dump(dump).map_err(io("reading addresses and routes (netlink)"))?;
        Ok(SystemFacts {
            interfaces,
            ephemeral_ports,
            services,
            default_routes,
            ipv6,
        })
    }
}

/// An uplink as found on the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUplink {
    pub iface: Interface,
    pub link: LinkKind,
    pub addr: Ipv4Addr,
    /// The gateway ARP asks for: as given, or with `gw=auto` the interface's default route's.
    pub gateway: Option<Ipv4Addr>,
    /// Its IPv6 as the kernel shows it now, on a line with `gw6`.
    pub v6: Option<Addressing6>,
}

/// What the gateway runs from besides the settings: what they left to the system, settled,
/// and the system as it was read, once, at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Each uplink, in the settings' order.
    pub uplinks: Vec<ResolvedUplink>,
    /// The NAT port pool: as given, or the one `nat_ports = "auto"` found.
    pub nat_pool: (u16, u16),
    /// The sources wanlb translates: the LAN interfaces' subnets and `lan_net`.
    pub lan_sources: Vec<Prefix>,
    /// The IPv6 sources wanlb translates: the LAN interfaces' global and unique-local
    /// prefixes, and `lan_net`'s IPv6 ones.
    pub lan_sources6: Vec<Net6>,
    /// The LAN interfaces' own IPv6 prefixes, with the interface each is on: the hosts the
    /// kernel fast path reaches directly.
    pub lan_links6: Vec<(u32, Net6)>,
    /// Every interface of the system, as checked.
    pub interfaces: Vec<Interface>,
}

/// The LAN interfaces whose reverse-path filter is not strict, with its effective value (the
/// larger of `all`'s and the interface's `rp_filter`, as the kernel takes it), when there are
/// two or more: only strict filtering (1) keeps a host on one LAN link from sending from
/// another link's network, and so from using that network's per-host shares. `rp_filter`
/// reads the value for an interface name, or `all`; one it cannot read is left out.
pub fn loose_reverse_path(
    lans: &[String],
    rp_filter: impl Fn(&str) -> Option<u8>,
) -> Vec<(String, u8)> {
    if lans.len() < 2 {
        return Vec::new();
    }
    let all = rp_filter("all").unwrap_or(0);
    lans.iter()
        .filter_map(|lan| Some((lan.clone(), rp_filter(lan)?.max(all))))
        .filter(|&(_, effective)| effective != 1)
        .collect()
}

/// [`loose_reverse_path`] of the running system, logged as a warning naming the interfaces
/// and the sysctls to set.
pub fn warn_of_loose_reverse_path(lans: &[String]) {
    let loose = loose_reverse_path(lans, |dev| {
        system::read_sysctl(&system::interface_sysctl(dev, "rp_filter"))
            .ok()?
            .parse()
            .ok()
    });
    if loose.is_empty() {
        return;
    }
    let found: Vec<String> = loose.iter().map(|(l, v)| format!("{l}={v}")).collect();
    let fix: Vec<String> = loose
        .iter()
        .map(|(l, _)| format!("net.ipv4.conf.{l}.rp_filter=1"))
        .collect();
    tracing::warn!(
        rp_filter = %found.join(","),
        "reverse-path filtering is not strict on LAN interfaces: a host on one LAN link can send from another LAN network and take that network's per-host shares; set {} and net.ipv4.conf.all.rp_filter to 0 or 1 (the kernel uses the larger)",
        fix.join(" ")
    );
}

/// Reads the system and checks `config` against it, changing nothing.
pub fn plan(config: &Config) -> Result<Plan, PreflightError> {
    let facts = SystemFacts::read(config)?;
    Ok(check(config, &facts)?)
}

/// Checks `config` against `system` (see the module's doc): the plan, or every problem found.
pub fn check(config: &Config, system: &SystemFacts) -> Result<Plan, ConfigErrors> {
    let mut errors = Vec::new();
    let exists = |name: &str| system.interfaces.iter().any(|i| i.name == name);
    let missing_lan: Vec<_> = config.lan.iter().filter(|l| !exists(l)).collect();
    for l in &missing_lan {
        errors.push(ConfigError {
            origin: format!("--lan {l:?}"),
            message: "no such interface".into(),
        });
    }
    // a missing LAN interface has no addresses either: that would only say it again
    let lan_sources = if missing_lan.is_empty() {
        lan_sources(config, &system.interfaces)
            .map_err(|e| errors.push(e))
            .ok()
    } else {
        None
    };
    let pool = nat_pool(config, system);
    errors.extend(check_pool(config, pool, system));
    let mut uplinks = Vec::new();
    let mut uplink_addrs = Vec::new();
    for u in &config.uplinks {
        match resolve_uplink(u, system) {
            Ok(r) => {
                uplink_addrs.push((u.name.as_str(), r.addr));
                uplinks.push(r);
            }
            Err(e) => errors.push(e),
        }
    }
    let lan_sources6 = lan_sources6(config, system);
    // a forward's host is judged against the LAN only when the LAN could be told
    if let Some(lan_sources) = &lan_sources {
        let lan = Lan {
            v4: lan_sources,
            v6: &lan_sources6,
        };
        errors.extend(check_forwards(config, lan, system, &uplink_addrs));
    }
    match lan_sources {
        Some(lan_sources) if errors.is_empty() => Ok(Plan {
            uplinks,
            nat_pool: pool,
            lan_sources,
            lan_sources6,
            lan_links6: lan_links6(config, system),
            interfaces: system.interfaces.clone(),
        }),
        _ => Err(errors.into()),
    }
}
/// The sources wanlb translates: the LAN interfaces' subnets and `lan_net`.
pub fn lan_sources(config: &Config, interfaces: &[Interface]) -> Result<Vec<Prefix>, ConfigError> {
    let mut nets: Vec<Prefix> = interfaces
        .iter()
        .filter(|i| config.lan.contains(&i.name))
        .flat_map(|i| i.ipv4.iter())
        .filter_map(|&(addr, len)| Prefix::new(u32::from(addr), len))
        .collect();
    nets.extend(config.lan_net.iter().filter_map(Cidr::v4));
    if nets.is_empty() {
        return Err(ConfigError {
            origin: "--lan".into(),
            message: format!(
                "{} has no IPv4 address, so no LAN source would be translated: give the LAN's networks with --lan-net CIDR",
                config.lan.join(", ")
            ),
        });
    }
    Ok(nets)
}

/// The IPv6 sources wanlb translates: the LAN interfaces' global and unique-local prefixes
/// (never link-local: the kernel keeps those on their link) and `lan_net`'s IPv6 ones.
pub fn lan_sources6(config: &Config, system: &SystemFacts) -> Vec<Net6> {
    let mut nets: Vec<Net6> = Vec::new();
    let on_lan = lan_links6(config, system).into_iter().map(|(_, net)| net);
    for net in on_lan.chain(config.lan_net.iter().filter_map(Cidr::v6)) {
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    nets
}

/// The LAN interfaces' global and unique-local IPv6 prefixes, each with its interface.
fn lan_links6(config: &Config, system: &SystemFacts) -> Vec<(u32, Net6)> {
    let lan_indexes: Vec<u32> = system
        .interfaces
        .iter()
        .filter(|i| config.lan.contains(&i.name))
        .map(|i| i.index)
        .collect();
    system
        .ipv6
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Address6 {
                ifindex,
                addr,
                prefix_len,
                present: true,
                ..
            } if lan_indexes.contains(ifindex) => Some((*ifindex, Net6::new(*addr, *prefix_len)?)),
            _ => None,
        })
        .collect()
}

/// The NAT port pool on this system: as configured, or (`auto`, the default) the largest
/// range of ports from 1024 up that is clear of the kernel's ephemeral ports and of this
/// host's services.
pub fn nat_pool(config: &Config, system: &SystemFacts) -> (u16, u16) {
    if let Some(range) = config.nat_ports {
        return range;
    }
    let services = system.services.iter().map(|s| s.port);
    largest_free_range(
        system.ephemeral_ports,
        services.chain(listen_port_on_uplinks(config, system)),
    )
}

/// The pool `pool` against the kernel's ephemeral ports and this host's services.
fn check_pool(config: &Config, pool: (u16, u16), system: &SystemFacts) -> Vec<ConfigError> {
    let (lo, hi) = pool;
    let mut errors = Vec::new();
    let mut refuse = |message: String| {
        errors.push(ConfigError {
            origin: "nat_ports".into(),
            message,
        });
    };
    let (klo, khi) = system.ephemeral_ports;
    if lo <= khi && klo <= hi {
        refuse(format!(
            "{lo}-{hi} overlaps the kernel's ephemeral ports {klo}-{khi} (net.ipv4.ip_local_port_range); choose a range outside it"
        ));
    }
    if let Some(s) = system.services.iter().find(|s| (lo..=hi).contains(&s.port)) {
        refuse(format!(
            "{lo}-{hi} contains port {}/{}, which a service on this host uses; choose a range without it",
            s.proto, s.port
        ));
    }
    if let Some(port) = listen_port_on_uplinks(config, system)
        && (lo..=hi).contains(&port)
    {
        refuse(format!(
            "{lo}-{hi} contains port {port}, where wanlb serves its status (listen {}) on an address the uplinks reach; choose a range without it",
            config.listen.map_or(String::new(), |l| l.to_string())
        ));
    }
    errors
}

/// The port of `listen` if what arrives on an uplink for that port could reach wanlb's
/// status server (it listens on every address, or on an uplink's): a service of this host
/// the NAT pool must not hold, which is not listening yet when the pool is chosen. On
/// loopback (the default) or a LAN address it shares nothing with the NAT ports.
fn listen_port_on_uplinks(config: &Config, system: &SystemFacts) -> Option<u16> {
    let listen = config.listen?;
    // `[::]` takes IPv4 too (unless v6only); another IPv6 address sees no IPv4 packet
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) => Some(ip),
        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let on_uplink = ip.is_some_and(|ip| {
        system
            .interfaces
            .iter()
            .filter(|i| config.uplinks.iter().any(|u| u.dev == i.name))
            .any(|i| i.ipv4.iter().any(|(a, _)| *a == ip))
    });
    (listen.ip().is_unspecified() || on_uplink).then_some(listen.port())
}

/// The largest range of ports from 1024 to 65535 outside `ephemeral` and not holding any of
/// `used`.
pub fn largest_free_range(ephemeral: (u16, u16), used: impl Iterator<Item = u16>) -> (u16, u16) {
    let mut blocked: Vec<(u32, u32)> = vec![(u32::from(ephemeral.0), u32::from(ephemeral.1))];
    blocked.extend(used.map(|p| (u32::from(p), u32::from(p))));
    blocked.push((65536, 65536));
    blocked.sort_unstable();
    let mut best: Option<(u32, u32)> = None;
    let mut next = 1024u32;
    for (lo, hi) in blocked {
        if lo > next {
            let gap = (next, lo - 1);
            if best.is_none_or(|b| gap.1 - gap.0 > b.1 - b.0) {
                best = Some(gap);
            }
        }
        next = next.max(hi + 1);
    }
    // both ends are at most 65535: the ports are u16, the end marker is not a gap's end
    best.map_or(FALLBACK_NAT_PORTS, |(lo, hi)| {
        (
            u16::try_from(lo).unwrap_or(u16::MAX),
            u16::try_from(hi).unwrap_or(u16::MAX),
        )
    })
}

/// Uplink `u`'s interface, its kind of link and source address on the system.
fn resolve_uplink(u: &UplinkSpec, system: &SystemFacts) -> Result<ResolvedUplink, ConfigError> {
    let refuse = |message: String| ConfigError {
        origin: u.origin.clone(),
        message,
    };
    let Some(iface) = system.interfaces.iter().find(|i| i.name == u.dev) else {
        return Err(refuse(format!("dev {:?}: no such interface", u.dev)));
    };
    let Some(link) = LinkKind::of(iface.hardware_type, iface.point_to_point) else {
        return Err(refuse(format!(
            "dev {:?}: wanlb sends on Ethernet links and on point-to-point links without a link-layer header (PPP, raw-IP modems, TUN, WireGuard, GRE or IPIP with a remote), not on this one (hardware type {})",
            u.dev, iface.hardware_type
        )));
    };
    let addr = match u.src {
        Some(src) => iface.ipv4.iter().find(|(a, _)| *a == src).copied(),
        None => iface.ipv4.first().copied(),
    };
    let Some((addr, len)) = addr else {
        return Err(refuse(match u.src {
            Some(src) => format!("src {src} is not an address of {}", u.dev),
            None => format!("{} has no IPv4 address", u.dev),
        }));
    };
    let gateway = match u.gw {
        Some(GatewaySpec::Address(gw)) => Some(gw),
        None => None,
        Some(GatewaySpec::Auto) => {
            let route = system
                .default_routes
                .iter()
                .find(|(index, _)| *index == iface.index);
            match (route, link) {
                (Some((_, gw)), _) => Some(*gw),
                // a point-to-point link's default route names no gateway
                (None, LinkKind::PointToPoint) => None,
                (None, LinkKind::Ethernet) => {
                    return Err(refuse(format!(
                        "gw=auto: the main table has no default route through {} (is its DHCP client done? wanlb follows the route once it has one)",
                        u.dev
                    )));
                }
            }
        }
    };
    match (link, gateway) {
        (LinkKind::Ethernet, None) => {
            return Err(refuse(format!(
                "gw=IPV4 is missing: {} is an Ethernet link, where the gateway must be named (only a point-to-point link, like PPP, a raw-IP modem or a tunnel, may leave it out)",
                u.dev
            )));
        }
        (LinkKind::Ethernet, Some(gw)) => {
            let subnet =
                Prefix::new(u32::from(addr), len).expect("kernel prefix lengths are at most 32");
            if !subnet.contains(u32::from(gw)) || gw == addr {
                return Err(refuse(format!(
                    "gw {gw} is not on {}'s subnet {}/{len}",
                    u.dev,
                    Ipv4Addr::from(subnet.addr()),
                )));
            }
        }
        (LinkKind::PointToPoint, Some(gw)) if gw == addr => {
            return Err(refuse(format!(
                "gw {gw} is {}'s own address, not its peer's",
                u.dev
            )));
        }
        // the peer of a point-to-point link is reached without its address
        (LinkKind::PointToPoint, _) => {}
    }
    let v6 = match u.gw6 {
        Some(gw6) => Some(resolve_ipv6(u, gw6, iface, link, system)?),
        None => None,
    };
    Ok(ResolvedUplink {
        iface: iface.clone(),
        link,
        addr,
        gateway,
        v6,
    })
}

/// Uplink `u`'s IPv6 on the system, as it is now. An address or a router that is not there
/// yet (router advertisements and DHCPv6 take their time) is no error: the line's IPv6 is
/// down until they come. An address or router that can never be right is.
fn resolve_ipv6(
    u: &UplinkSpec,
    gw6: Gateway6Spec,
    iface: &Interface,
    link: LinkKind,
    system: &SystemFacts,
) -> Result<Addressing6, ConfigError> {
    let refuse = |message: String| ConfigError {
        origin: u.origin.clone(),
        message,
    };
    let subnets: Vec<Net6> = system
        .ipv6
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Address6 {
                ifindex,
                addr,
                prefix_len,
                present: true,
                ..
            } if *ifindex == iface.index => Net6::new(*addr, *prefix_len),
            _ => None,
        })
        .collect();
    let router = match (link, gw6) {
        (LinkKind::PointToPoint, _) => Router6::Peer,
        (LinkKind::Ethernet, Gateway6Spec::Auto) => Router6::Auto(Vec::new()),
        (LinkKind::Ethernet, Gateway6Spec::Address(gw)) => {
            if !gw.is_unicast_link_local() && !subnets.iter().any(|n| n.contains(gw)) {
                return Err(refuse(format!(
                    "gw6 {gw} is not on {}'s IPv6 subnets (a router's link-local address, fe80::..., always is)",
                    u.dev
                )));
            }
            Router6::Fixed(gw)
        }
    };
    if let Some(src6) = u.src6
        && !system.ipv6.iter().any(|e| {
            matches!(e, LinkEvent::Address6 { ifindex, addr, present: true, .. }
                if *ifindex == iface.index && *addr == src6)
        })
    {
        return Err(refuse(format!(
            "src6 {src6} is not an address of {}",
            u.dev
        )));
    }
    let delegation = match u.prefix6 {
        None => Delegation::None,
        Some(Prefix6Spec::Net(n)) => Delegation::Fixed(n.addr(), n.prefix_len()),
        Some(Prefix6Spec::Auto) => Delegation::Auto(Vec::new()),
    };
    let mut v6 = Addressing6::new(u.src6, router, delegation);
    let ours = system.ipv6.iter().filter(|e| match e {
        LinkEvent::Address6 { ifindex, .. } | LinkEvent::DefaultRoute6 { ifindex, .. } => {
            *ifindex == iface.index
        }
        LinkEvent::Delegated { .. } => true,
        _ => false,
    });
    v6.resync(ours);
    Ok(v6)
}

/// The LAN's sources of both families.
#[derive(Clone, Copy)]
struct Lan<'a> {
    v4: &'a [Prefix],
    v6: &'a [Net6],
}

impl Lan<'_> {
    fn contains(&self, host: IpAddr) -> bool {
        match host {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(u32::from(a))),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(a)),
        }
    }

    /// Its networks of `host`'s family, as the settings write them.
    fn shown(&self, host: IpAddr) -> String {
        let nets: Vec<String> = match host {
            IpAddr::V4(_) => self.v4.iter().map(|n| Cidr::V4(*n).to_string()).collect(),
            IpAddr::V6(_) => self.v6.iter().map(ToString::to_string).collect(),
        };
        if nets.is_empty() {
            "none".into()
        } else {
            nets.join(", ")
        }
    }
}

/// Checks each forward against the system: its host is a LAN host (in the LAN's sources of
/// its family, not this gateway), an IPv6 one's uplink carries IPv6, and no service of this
/// host holds its port on its uplink's address (`uplink_addrs`, by uplink name) or on every
/// address: wanlb keeps what arrives there from the kernel, so such a service would be cut
/// off from that line.
fn check_forwards(
    config: &Config,
    lan: Lan<'_>,
    system: &SystemFacts,
    uplink_addrs: &[(&str, Ipv4Addr)],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let own: HashSet<IpAddr> = system
        .interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter().map(|(a, _)| IpAddr::V4(*a)))
        .chain(system.ipv6.iter().filter_map(|e| match e {
            LinkEvent::Address6 { addr, .. } => Some(IpAddr::V6(*addr)),
            _ => None,
        }))
        .collect();
    for f in &config.forwards {
        let host = f.to.ip();
        if own.contains(&host) {
            errors.push(ConfigError {
                origin: f.to_origin.clone(),
                message: format!(
                    "{host} is an address of this gateway; a forward goes to a LAN host"
                ),
            });
        } else if !lan.contains(host) {
            errors.push(ConfigError {
                origin: f.to_origin.clone(),
                message: format!(
                    "{host} is not in the LAN ({}); a routed LAN's network is added with --lan-net",
                    lan.shown(host)
                ),
            });
        }
        if host.is_ipv6() {
            let uplink = config.uplinks.iter().find(|u| u.name == f.uplink);
            if uplink.is_some_and(|u| u.gw6.is_none()) {
                errors.push(ConfigError {
                    origin: f.uplink_origin.clone(),
                    message: format!(
                        "{} carries no IPv6 (it has no gw6): an IPv6 host's forward needs a line that does",
                        f.uplink
                    ),
                });
            }
            // the IPv4 address's services are what the checks below are about
            continue;
        }
        let Some(&(_, addr)) = uplink_addrs.iter().find(|(name, _)| *name == f.uplink) else {
            continue;
        };
        let held = system.services.iter().find(|s| {
            s.proto == f.proto.name()
                && s.port == f.port
                && (s.addr == addr || s.addr.is_unspecified())
        });
        if let Some(s) = held {
            errors.push(ConfigError {
                origin: f.origin.clone(),
                message: format!(
                    "{}/{} is used by a service on this host ({}:{}): the forward would cut it off from {}; forward another port, or move the service",
                    s.proto, s.port, s.addr, s.port, f.uplink
                ),
            });
        }
    }
    errors
}

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod tests;
