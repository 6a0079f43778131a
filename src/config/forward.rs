//! Port forwards: `--forward PROTO:PORT=HOST:PORT@UPLINK` and `[[forward]]` in the file, and
//! their checks against the other settings and the system.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::Deserialize;
use toml::Spanned;

use super::{At, Config, ConfigError, Loading, err, number_text};
use crate::engine::select::Prefix;
use crate::engine::wire::{PROTO_TCP, PROTO_UDP};
use crate::io::iface::Interface;
use crate::io::system::LocalService;

const FORWARD_SPEC: &str = "PROTO:PORT=HOST:PORT@UPLINK, e.g. tcp:8080=192.168.3.10:80@isp2";

/// The protocols a port can be forwarded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardProto {
    Tcp,
    Udp,
}

impl ForwardProto {
    pub fn name(self) -> &'static str {
        match self {
            ForwardProto::Tcp => "tcp",
            ForwardProto::Udp => "udp",
        }
    }

    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            ForwardProto::Tcp => PROTO_TCP,
            ForwardProto::Udp => PROTO_UDP,
        }
    }
}

fn parse_proto(s: &str, origin: &str) -> Result<ForwardProto, ConfigError> {
    match s.trim() {
        "tcp" => Ok(ForwardProto::Tcp),
        "udp" => Ok(ForwardProto::Udp),
        other => err(origin, format!("protocol {other:?} must be tcp or udp")),
    }
}

/// A port from 1 to 65535.
fn parse_port(s: &str, origin: &str) -> Result<u16, ConfigError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => err(
            origin,
            format!("port must be a whole number from 1 to 65535, got {s:?}"),
        ),
    }
}

/// `HOST:PORT`, the LAN end of a forward.
fn parse_to(s: &str, origin: &str) -> Result<SocketAddrV4, ConfigError> {
    match s.trim().parse::<SocketAddrV4>() {
        Ok(to) if to.port() > 0 => Ok(to),
        _ => err(
            origin,
            format!("{s:?} is not a LAN host's address and port like 192.168.3.10:80"),
        ),
    }
}

/// Connections to `port` of an uplink's address, sent on to a LAN host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    pub proto: ForwardProto,
    pub port: u16,
    pub to: SocketAddrV4,
    pub uplink: String,
    /// Where it was given: the flag, or the file's line of `port`.
    pub origin: String,
    /// Where its `to` and its `uplink` were given (the flag's own origin for a flag).
    pub to_origin: String,
    pub uplink_origin: String,
}

impl ForwardSpec {
    /// Whether `other` forwards the same port of the same line.
    fn same_port(&self, other: &ForwardSpec) -> bool {
        (self.proto, self.port, &self.uplink) == (other.proto, other.port, &other.uplink)
    }
}

/// As the flag writes it: `tcp:8080=192.168.3.10:80@isp2`.
impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}={}@{}",
            self.proto.name(),
            self.port,
            self.to,
            self.uplink
        )
    }
}

/// `PROTO:PORT=HOST:PORT@UPLINK`.
pub fn parse_forward_flag(spec: &str) -> Result<ForwardSpec, ConfigError> {
    let origin = format!("--forward {spec:?}");
    let parts = spec.rsplit_once('@').and_then(|(mapping, uplink)| {
        let (outside, to) = mapping.split_once('=')?;
        let (proto, port) = outside.split_once(':')?;
        Some((proto, port, to, uplink.trim()))
    });
    let Some((proto, port, to, uplink)) = parts.filter(|p| !p.3.is_empty()) else {
        return err(&origin, format!("expected {FORWARD_SPEC}"));
    };
    Ok(ForwardSpec {
        proto: parse_proto(proto, &origin)?,
        port: parse_port(port, &origin)?,
        to: parse_to(to, &origin)?,
        uplink: uplink.to_string(),
        to_origin: origin.clone(),
        uplink_origin: origin.clone(),
        origin,
    })
}

/// `[[forward]]` in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileForward {
    proto: Spanned<String>,
    port: Spanned<toml::Value>,
    to: Spanned<String>,
    uplink: Spanned<String>,
}

fn twice(new: &ForwardSpec, first: &ForwardSpec) -> ConfigError {
    ConfigError {
        origin: new.origin.clone(),
        message: format!(
            "{}:{} of {} is forwarded twice (also at {})",
            new.proto.name(),
            new.port,
            new.uplink,
            first.origin
        ),
    }
}

impl Config {
    pub(super) fn apply_file_forwards(
        &mut self,
        forwards: &[FileForward],
        at: &At<'_>,
        l: &mut Loading,
    ) {
        for f in forwards {
            let proto = at.parse(l, &f.proto, "[[forward]] proto", |s, o| parse_proto(s, o));
            let port = at.parse(l, &f.port, "[[forward]] port", |v, o| {
                parse_port(&number_text(v), o)
            });
            let to = at.parse(l, &f.to, "[[forward]] to", |s, o| parse_to(s, o));
            let (Some(proto), Some(port), Some(to)) = (proto, port, to) else {
                continue;
            };
            let spec = ForwardSpec {
                proto,
                port,
                to,
                uplink: f.uplink.get_ref().clone(),
                origin: at.origin(l, &f.port, "[[forward]] port"),
                to_origin: at.origin(l, &f.to, "[[forward]] to"),
                uplink_origin: at.origin(l, &f.uplink, "[[forward]] uplink"),
            };
            match self.forwards.iter().find(|x| x.same_port(&spec)) {
                Some(first) => l.errors.push(twice(&spec, first)),
                None => self.forwards.push(spec),
            }
        }
    }

    /// The flags' forwards: each replaces the file's forward of the same port and line.
    pub(super) fn apply_forward_flags(&mut self, specs: &[String], l: &mut Loading) {
        let mut from_flags: Vec<ForwardSpec> = Vec::new();
        for spec in specs {
            let Some(f) = l.take(parse_forward_flag(spec)) else {
                continue;
            };
            if let Some(first) = from_flags.iter().find(|x| x.same_port(&f)) {
                l.errors.push(twice(&f, first));
                continue;
            }
            self.forwards.retain(|x| !x.same_port(&f));
            self.forwards.push(f.clone());
            from_flags.push(f);
        }
    }

    /// The forwards naming an uplink that is not configured (`names`: every uplink given,
    /// refused ones too, sorted), one error each.
    pub(super) fn forwards_to_unknown_uplinks(&self, names: &[&str]) -> Vec<ConfigError> {
        self.forwards
            .iter()
            .filter(|f| !names.contains(&f.uplink.as_str()))
            .map(|f| ConfigError {
                origin: f.uplink_origin.clone(),
                message: format!(
                    "unknown uplink {:?} (uplinks: {})",
                    f.uplink,
                    names.join(", ")
                ),
            })
            .collect()
    }

    /// Checks each forward against the system: its host is a LAN host (in `lan_sources`, not
    /// this gateway), and no service of this host holds its port on its uplink's address
    /// (`uplink_addrs`, by uplink name) or on every address: wanlb keeps what arrives there
    /// from the kernel, so such a service would be cut off from that line.
    pub(super) fn resolve_forwards(
        &self,
        lan_sources: &[Prefix],
        interfaces: &[Interface],
        services: &[LocalService],
        uplink_addrs: &[(&str, Ipv4Addr)],
        errors: &mut Vec<ConfigError>,
    ) {
        let own: HashSet<Ipv4Addr> = interfaces
            .iter()
            .flat_map(|i| i.ipv4.iter().map(|(a, _)| *a))
            .collect();
        for f in &self.forwards {
            let host = *f.to.ip();
            if own.contains(&host) {
                errors.push(ConfigError {
                    origin: f.to_origin.clone(),
                    message: format!(
                        "{host} is an address of this gateway; a forward goes to a LAN host"
                    ),
                });
            } else if !lan_sources.iter().any(|n| n.contains(u32::from(host))) {
                let nets: Vec<String> = lan_sources
                    .iter()
                    .map(|n| format!("{}/{}", Ipv4Addr::from(n.addr()), n.prefix_len()))
                    .collect();
                errors.push(ConfigError {
                    origin: f.to_origin.clone(),
                    message: format!(
                        "{host} is not in the LAN ({}); a routed LAN's network is added with --lan-net",
                        nets.join(", ")
                    ),
                });
            }
            let Some(&(_, addr)) = uplink_addrs.iter().find(|(name, _)| *name == f.uplink) else {
                continue;
            };
            let held = services.iter().find(|s| {
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
    }
}
