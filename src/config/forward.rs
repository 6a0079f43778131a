//! Port forwards: `--forward PROTO:PORT=HOST:PORT@UPLINK` and `[[forward]]` in the file, and
//! their checks against the other settings (those against the system are in
//! `crate::preflight`).

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

use serde::Deserialize;
use toml::Spanned;

use super::declare::{Changes, ReloadClass, ReloadContext, Row, Table, Tables};
use super::load::{At, FileText, Loading};
use super::net::is_routable_unicast6;
use super::{Config, ConfigError, err};
use crate::engine::wire::{PROTO_TCP, PROTO_UDP};

const FORWARD_SPEC: &str = "PROTO:PORT=HOST:PORT@UPLINK, e.g. tcp:8080=192.168.3.10:80@isp2 or tcp:8080=[fd00:3::10]:80@isp2";

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

/// `HOST:PORT` or `[IPV6]:PORT`, the LAN end of a forward.
fn parse_to(s: &str, origin: &str) -> Result<SocketAddr, ConfigError> {
    match s.trim().parse::<SocketAddr>() {
        Ok(SocketAddr::V6(to)) if to.scope_id() != 0 || to.flowinfo() != 0 => err(
            origin,
            format!("{s:?}: a forward's host is a global or unique-local address, without a zone"),
        ),
        Ok(SocketAddr::V6(to)) if !is_routable_unicast6(*to.ip()) => err(
            origin,
            format!("{s:?}: a forward's host is a global or unique-local address"),
        ),
        Ok(to) if to.port() > 0 => Ok(to),
        _ => err(
            origin,
            format!(
                "{s:?} is not a LAN host's address and port like 192.168.3.10:80 or [fd00:3::10]:80"
            ),
        ),
    }
}

/// Connections to `port` of an uplink's address, sent on to a LAN host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    pub proto: ForwardProto,
    pub port: u16,
    /// The LAN host: an IPv4 one for the uplink's IPv4 address, an IPv6 one for its IPv6
    /// address.
    pub to: SocketAddr,
    pub uplink: String,
    /// Where it was given: the flag, or the file's line of `port`.
    pub origin: String,
    /// Where its `to` and its `uplink` were given (the flag's own origin for a flag).
    pub to_origin: String,
    pub uplink_origin: String,
}

impl ForwardSpec {
    /// Whether `other` forwards the same port of the same line and family.
    pub fn same_port(&self, other: &ForwardSpec) -> bool {
        (self.proto, self.port, &self.uplink, self.to.is_ipv4())
            == (other.proto, other.port, &other.uplink, other.to.is_ipv4())
    }

    /// Its LAN host, if an IPv4 one.
    pub fn to4(&self) -> Option<SocketAddrV4> {
        match self.to {
            SocketAddr::V4(to) => Some(to),
            SocketAddr::V6(_) => None,
        }
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
    from_flag("--forward", spec)
}

fn from_flag(flag: &str, spec: &str) -> Result<ForwardSpec, ConfigError> {
    let origin = format!("{flag} {spec:?}");
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
pub struct FileForward {
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

impl Table for ForwardSpec {
    type File = FileForward;
    const VALUE_NAME: &'static str = "PROTO:PORT=HOST:PORT@UPLINK";

    fn help() -> String {
        "Send connections to PORT of UPLINK's address on to HOST:PORT in the LAN, e.g. \
         tcp:8080=192.168.3.10:80@isp2 (repeatable); [IPV6]:PORT forwards PORT of UPLINK's \
         IPv6 address. Their replies always leave through UPLINK; \
         LAN hosts reach the forward through UPLINK's address too."
            .into()
    }

    fn apply_file(
        t: &Tables<Self>,
        list: &mut Vec<Self>,
        file: &[FileForward],
        at: &At<'_>,
        l: &mut Loading,
    ) {
        let key = |k: &str| format!("[[{}]] {k}", t.key);
        for f in file {
            let proto = at.parse(l, &f.proto, &key("proto"), |s, o| parse_proto(s, o));
            let port = at.parse(l, &f.port, &key("port"), |v, o| parse_port(&v.text(), o));
            let to = at.parse(l, &f.to, &key("to"), |s, o| parse_to(s, o));
            let (Some(proto), Some(port), Some(to)) = (proto, port, to) else {
                continue;
            };
            let spec = ForwardSpec {
                proto,
                port,
                to,
                uplink: f.uplink.get_ref().clone(),
                origin: at.origin(l, &f.port, &key("port")),
                to_origin: at.origin(l, &f.to, &key("to")),
                uplink_origin: at.origin(l, &f.uplink, &key("uplink")),
            };
            match list.iter().find(|x| x.same_port(&spec)) {
                Some(first) => l.errors.push(twice(&spec, first)),
                None => list.push(spec),
            }
        }
    }

    /// Each flag's forward replaces the file's forward of the same port and line.
    fn apply_flags(t: &Tables<Self>, list: &mut Vec<Self>, flags: &[String], l: &mut Loading) {
        let mut given: Vec<ForwardSpec> = Vec::new();
        for spec in flags {
            let Some(f) = l.take(from_flag(t.flag, spec)) else {
                continue;
            };
            if let Some(first) = given.iter().find(|x| x.same_port(&f)) {
                l.errors.push(twice(&f, first));
                continue;
            }
            list.retain(|x| !x.same_port(&f));
            list.push(f.clone());
            given.push(f);
        }
    }

    /// The NAT pools, the socket filters and the nftables table are made for the forwards:
    /// one added or removed waits for a restart.
    fn reload(running: &mut Vec<Self>, new: &[Self], _: &ReloadContext, c: &mut Changes) {
        let shown =
            |f: &[ForwardSpec]| -> Vec<String> { f.iter().map(ToString::to_string).collect() };
        let (before, after) = (shown(running), shown(new));
        for f in after.iter().filter(|f| !before.contains(f)) {
            c.need_restart
                .push(format!("forward {f} is new: restart wanlb to add it"));
        }
        for f in before.iter().filter(|f| !after.contains(f)) {
            c.need_restart.push(format!(
                "forward {f} is no longer in the settings: restart wanlb to remove it"
            ));
        }
    }

    fn rows(t: &Tables<Self>) -> Vec<Row> {
        vec![Row {
            key: format!("[[{}]] proto, port, to, uplink", t.key),
            flag: format!("{} {}", t.flag, Self::VALUE_NAME),
            repeatable: true,
            default: "none".into(),
            doc: "connections to `port` (tcp or udp) of the uplink's address go to the LAN host `to` (`HOST:PORT`; `[IPV6]:PORT` for the port of the uplink's IPv6 address); their answers always leave through that uplink (see [Port forwarding](#port-forwarding))".into(),
            reload: Some(ReloadClass::Restart),
        }]
    }
}

impl Config {
    /// The forwards to IPv4 LAN hosts, in the settings' order.
    pub fn forwards4(&self) -> impl Iterator<Item = &ForwardSpec> {
        self.forwards.iter().filter(|f| f.to.is_ipv4())
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
}
