//! Settings from a TOML file and command-line flags, validated before anything on the system
//! is touched. Every error names the flag or the file, line and key it comes from.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::engine::flow::Timeouts;
use crate::engine::select::Prefix;
use crate::health::HealthSettings;
use crate::io::iface::Interface;

pub const DEFAULT_TUN: &str = "wanlb0";
pub const DEFAULT_AFFINITY: Duration = Duration::from_secs(600);
pub const DEFAULT_NAT_PORTS: (u16, u16) = (61000, 65535);
pub const MAX_WEIGHT: u32 = 1000;
pub const MAX_UPLINKS: usize = 32;
/// Table entries keep 32-bit millisecond stamps, good for ages up to 24 days.
pub const MAX_AFFINITY: Duration = Duration::from_secs(86400);
pub const MAX_TIER: u8 = 9;
/// Health targets per uplink (each round sends one probe to each).
pub const MAX_TARGETS: usize = 16;
const UPLINK_SPEC: &str = "NAME,dev=IFACE,gw=IPV4[,weight=N][,tier=N][,check=IPV4]...[,src=IPV4]";

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkSpec {
    pub name: String,
    pub dev: String,
    pub gw: Ipv4Addr,
    pub weight: u32,
    /// New flows use the healthy uplinks of the lowest tier that has one (1 is the best).
    pub tier: u8,
    pub src: Option<Ipv4Addr>,
    /// Health targets for this uplink only, replacing the global ones.
    pub checks: Option<Vec<Ipv4Addr>>,
    /// Where it was given, for errors found later against the system.
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSpec {
    pub prefix: Prefix,
    pub uplink: String,
    /// Refuse the traffic while the uplink is down instead of sending it elsewhere.
    pub strict: bool,
    pub origin: String,
}

/// What happens to an uplink's TCP connections when it goes down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUplinkDown {
    /// Reset them towards the LAN host, so applications reconnect at once.
    #[default]
    Reset,
    /// Leave them: they resume if the line comes back before they time out.
    Keep,
}

fn parse_on_uplink_down(s: &str, origin: &str) -> Result<OnUplinkDown, ConfigError> {
    match s {
        "reset" | "rst" => Ok(OnUplinkDown::Reset),
        "keep" => Ok(OnUplinkDown::Keep),
        _ => err(origin, "must be reset (the default) or keep"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub lan: Vec<String>,
    /// Networks behind the LAN interfaces, besides their own subnets, whose hosts wanlb
    /// translates (routed LANs behind another router).
    pub lan_nets: Vec<Prefix>,
    pub uplinks: Vec<UplinkSpec>,
    pub pins: Vec<PinSpec>,
    pub affinity_timeout: Duration,
    /// How long a worker keeps looking for packets after one before it sleeps (0: never).
    pub busy_poll: Duration,
    pub tun: String,
    pub workers: usize,
    pub nat_ports: (u16, u16),
    /// `nat_ports` was not given: the pool is chosen on the system ([`Config::nat_pool`]).
    pub nat_ports_auto: bool,
    /// Ports one LAN host may hold per uplink and protocol; default: a quarter of the pool.
    pub max_ports_per_host: Option<u32>,
    pub fast_path: FastPathMode,
    pub health: HealthSettings,
    /// Probed through every uplink that names none of its own (`check`).
    pub health_targets: Vec<Ipv4Addr>,
    pub on_uplink_down: OnUplinkDown,
    /// Run through `sh -c` on every uplink state change.
    pub on_change: Option<String>,
    /// Where the metrics and the status are served; `None`: nowhere.
    pub listen: Option<std::net::SocketAddr>,
    /// Required of every HTTP request when given (and given it must be, off loopback).
    pub listen_token: Option<String>,
    /// Idle timeouts of flows, by protocol and TCP phase (`[timeouts]`).
    pub timeouts: Timeouts,
}

impl Config {
    /// The health targets probed through `uplink`.
    pub fn targets_of<'a>(&'a self, uplink: &'a UplinkSpec) -> &'a [Ipv4Addr] {
        uplink.checks.as_deref().unwrap_or(&self.health_targets)
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
}

/// Whether steady flows move to the in-kernel fast path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FastPathMode {
    /// Where the kernel can (TCX, Linux 6.6 or later); otherwise warn and carry everything
    /// in userspace.
    #[default]
    Auto,
    /// Always: refuse to start without it.
    On,
    /// Never: every packet through wanlb's own userspace data path.
    Off,
}

fn parse_fast_path_mode(s: &str, origin: &str) -> Result<FastPathMode, ConfigError> {
    match s {
        "auto" => Ok(FastPathMode::Auto),
        "on" => Ok(FastPathMode::On),
        "off" => Ok(FastPathMode::Off),
        _ => err(origin, "offload must be auto, on or off"),
    }
}

/// What the command line adds to (or overrides in) the file.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub lan: Vec<String>,
    pub lan_nets: Vec<String>,
    pub uplinks: Vec<String>,
    pub pins: Vec<String>,
    pub affinity_timeout: Option<String>,
    pub busy_poll: Option<String>,
    pub tun: Option<String>,
    pub workers: Option<usize>,
    pub nat_ports: Option<String>,
    pub max_ports_per_host: Option<String>,
    pub offload: Option<String>,
    pub health_targets: Vec<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub down_after: Option<String>,
    pub up_after: Option<String>,
    pub max_loss: Option<String>,
    pub max_rtt: Option<String>,
    pub on_uplink_down: Option<String>,
    pub on_change: Option<String>,
    pub listen: Option<String>,
    pub listen_token: Option<String>,
    pub timeouts: TimeoutFlags,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    lan: Option<Vec<Spanned<String>>>,
    lan_net: Option<Vec<Spanned<String>>>,
    tun: Option<Spanned<String>>,
    workers: Option<Spanned<toml::Value>>,
    affinity_timeout: Option<Spanned<String>>,
    busy_poll: Option<Spanned<String>>,
    nat_ports: Option<Spanned<String>>,
    max_ports_per_host: Option<Spanned<toml::Value>>,
    offload: Option<Spanned<String>>,
    health_target: Option<Vec<Spanned<String>>>,
    health_interval: Option<Spanned<String>>,
    health_timeout: Option<Spanned<String>>,
    down_after: Option<Spanned<toml::Value>>,
    up_after: Option<Spanned<toml::Value>>,
    max_loss: Option<Spanned<toml::Value>>,
    max_rtt: Option<Spanned<String>>,
    on_uplink_down: Option<Spanned<String>>,
    on_change: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    listen_token: Option<Spanned<String>>,
    timeouts: Option<FileTimeouts>,
    #[serde(default)]
    uplink: Vec<FileUplink>,
    #[serde(default)]
    pin: Vec<FilePin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUplink {
    name: Spanned<String>,
    dev: Spanned<String>,
    gw: Spanned<String>,
    weight: Option<Spanned<toml::Value>>,
    tier: Option<Spanned<toml::Value>>,
    src: Option<Spanned<String>>,
    check: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePin {
    dst: Spanned<String>,
    uplink: Spanned<String>,
    strict: Option<Spanned<bool>>,
}

/// "FILE line N, KEY" for a value in a file.
struct At<'a> {
    file: &'a Path,
    text: &'a str,
}

impl At<'_> {
    fn key<T>(&self, v: &Spanned<T>, key: &str) -> String {
        let line = self.text[..v.span().start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{} line {line}, {key}", self.file.display())
    }
}

pub fn parse_ipv4(s: &str, origin: &str, what: &str) -> Result<Ipv4Addr, ConfigError> {
    s.parse()
        .or_else(|_| err(origin, format!("{what} {s:?} is not an IPv4 address")))
}

pub fn parse_weight(s: &str, origin: &str) -> Result<u32, ConfigError> {
    match s.parse::<u32>() {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => err(
            origin,
            format!("weight must be a whole number from 1 to {MAX_WEIGHT}, got {s:?}"),
        ),
    }
}

/// `600s`, `10m`, `1h30m`, `250ms`, `1d`.
pub fn parse_duration(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        err(
            origin,
            format!(
                "{s:?} is not a duration: use a number and a unit (us, ms, s, m, h, d), e.g. 600s, 10m, 1h"
            ),
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return bad();
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Ok(n) = rest[..digits].parse::<u64>() else {
            return bad();
        };
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "us" => Duration::from_micros(1),
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            _ => return bad(),
        };
        rest = &rest[unit_len..];
        let Some(part) = unit.checked_mul(u32::try_from(n).unwrap_or(u32::MAX)) else {
            return bad();
        };
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return err(origin, "the duration must be longer than zero");
    }
    Ok(total)
}

/// A health target: an address that answers ping, beyond the uplink's gateway.
pub fn parse_target(s: &str, origin: &str) -> Result<Ipv4Addr, ConfigError> {
    let a = parse_ipv4(s.trim(), origin, "health target")?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return err(
            origin,
            format!("health target {a} must be a unicast address beyond the gateway"),
        );
    }
    Ok(a)
}

/// A duration between `min` and `max`.
fn parse_bounded(
    s: &str,
    origin: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(s, origin)?;
    if d < min || d > max {
        return err(
            origin,
            format!("must be from {min:?} to {max:?}, got {s:?}"),
        );
    }
    Ok(d)
}

/// A whole number from `lo` to `hi`.
fn parse_count(s: &str, origin: &str, lo: u32, hi: u32) -> Result<u32, ConfigError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => err(
            origin,
            format!("must be a whole number from {lo} to {hi}, got {s:?}"),
        ),
    }
}

/// `20` or `20%`: a loss percentage from 1 to 99.
fn parse_loss(s: &str, origin: &str) -> Result<u32, ConfigError> {
    parse_count(s.trim().trim_end_matches('%'), origin, 1, 99)
}

fn parse_tier(s: &str, origin: &str) -> Result<u8, ConfigError> {
    parse_count(s, origin, 1, u32::from(MAX_TIER)).map(|t| t as u8)
}

fn parse_affinity(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(s, origin)?;
    if d > MAX_AFFINITY {
        return err(origin, "the affinity timeout can be at most 1d");
    }
    Ok(d)
}

fn parse_interval(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    parse_bounded(
        s,
        origin,
        Duration::from_millis(10),
        Duration::from_secs(60),
    )
}

fn parse_timeout(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    parse_bounded(s, origin, Duration::from_millis(1), Duration::from_secs(60))
}

fn parse_max_rtt(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    parse_bounded(
        s,
        origin,
        Duration::from_micros(100),
        Duration::from_secs(60),
    )
}

/// Where the HTTP control plane listens by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";

/// `ADDR:PORT`, or `off`.
fn parse_listen(s: &str, origin: &str) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    if s.trim() == "off" {
        return Ok(None);
    }
    s.trim().parse().map(Some).or_else(|_| {
        err(
            origin,
            format!("{s:?} is not an address and port like 127.0.0.1:9911, nor off"),
        )
    })
}

fn parse_command(s: &str, origin: &str) -> Result<String, ConfigError> {
    if s.trim().is_empty() {
        return err(origin, "the command is empty");
    }
    Ok(s.to_string())
}

/// `0` (off) or a duration up to 1s.
fn parse_busy_poll(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(Duration::ZERO);
    }
    let d = parse_duration(s, origin)?;
    if d > Duration::from_secs(1) {
        return err(origin, "busy polling can last at most 1s after a packet");
    }
    Ok(d)
}

/// `A.B.C.D/LEN` (or a bare address, meaning /32).
pub fn parse_prefix(s: &str, origin: &str) -> Result<Prefix, ConfigError> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr.parse().or_else(|_| {
        err(
            origin,
            format!("{s:?} is not an IPv4 prefix like 174.143.119.91/32"),
        )
    })?;
    let len = len
        .parse::<u8>()
        .ok()
        .and_then(|l| Prefix::new(u32::from(addr), l));
    len.ok_or_else(|| ConfigError {
        origin: origin.into(),
        message: format!("{s:?}: the prefix length must be 0 to 32"),
    })
}

/// `LOW-HIGH`, both from 1024 to 65535.
pub fn parse_ports(s: &str, origin: &str) -> Result<(u16, u16), ConfigError> {
    let parsed = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((lo, hi)) if lo >= 1024 && lo <= hi => Ok((lo, hi)),
        _ => err(
            origin,
            format!("{s:?} is not a port range like 61000-65535 (from 1024 up, low before high)"),
        ),
    }
}

/// `NAME,dev=IFACE,gw=IPV4[,weight=N][,tier=N][,check=IPV4]...[,src=IPV4]`
pub fn parse_uplink_flag(spec: &str) -> Result<UplinkSpec, ConfigError> {
    let origin = format!("--uplink {spec:?}");
    let mut parts = spec.split(',');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty() || name.contains('=') {
        return err(
            &origin,
            format!("must start with the uplink's name: {UPLINK_SPEC}"),
        );
    }
    let (mut dev, mut gw, mut weight, mut src) = (None, None, 1, None);
    let (mut tier, mut checks) = (1, None::<Vec<Ipv4Addr>>);
    for part in parts {
        let Some((k, v)) = part.split_once('=') else {
            return err(&origin, format!("{part:?} is not KEY=VALUE"));
        };
        match k.trim() {
            "dev" => dev = Some(v.trim().to_string()),
            "gw" => gw = Some(parse_ipv4(v.trim(), &origin, "gw")?),
            "weight" => weight = parse_weight(v.trim(), &origin)?,
            "src" => src = Some(parse_ipv4(v.trim(), &origin, "src")?),
            "tier" => tier = parse_tier(v, &format!("{origin}: tier"))?,
            "check" => checks
                .get_or_insert_with(Vec::new)
                .push(parse_target(v, &origin)?),
            other => {
                return err(
                    &origin,
                    format!("unknown key {other:?} (expected dev, gw, weight, tier, check or src)"),
                );
            }
        }
    }
    let Some(dev) = dev.filter(|d| !d.is_empty()) else {
        return err(&origin, "dev=IFACE is missing");
    };
    let Some(gw) = gw else {
        return err(&origin, "gw=IPV4 is missing");
    };
    Ok(UplinkSpec {
        name: name.to_string(),
        dev,
        gw,
        weight,
        tier,
        src,
        checks,
        origin,
    })
}

/// `CIDR=UPLINK`, or `CIDR=UPLINK!` for a strict pin.
pub fn parse_pin_flag(spec: &str) -> Result<PinSpec, ConfigError> {
    let origin = format!("--pin {spec:?}");
    let Some((cidr, uplink)) = spec.split_once('=') else {
        return err(
            &origin,
            "expected CIDR=UPLINK or CIDR=UPLINK! (strict), e.g. 174.143.119.91/32=isp2",
        );
    };
    let uplink = uplink.trim();
    let (uplink, strict) = match uplink.strip_suffix('!') {
        Some(u) => (u.trim(), true),
        None => (uplink, false),
    };
    Ok(PinSpec {
        prefix: parse_prefix(cidr.trim(), &origin)?,
        uplink: uplink.to_string(),
        strict,
        origin,
    })
}

fn check_name(name: &str, origin: &str, what: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return err(
            origin,
            format!("{what} {name:?} must be 1 to 15 letters, digits, '-', '_' or '.'"),
        );
    }
    Ok(())
}

fn toml_whole_number(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

impl Config {
    /// Reads the file (if any), applies the flags, and checks everything that can be checked
    /// without looking at the system.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let mut c = Config {
            lan: Vec::new(),
            lan_nets: Vec::new(),
            uplinks: Vec::new(),
            pins: Vec::new(),
            affinity_timeout: DEFAULT_AFFINITY,
            busy_poll: Duration::ZERO,
            tun: DEFAULT_TUN.into(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            nat_ports: DEFAULT_NAT_PORTS,
            nat_ports_auto: true,
            max_ports_per_host: None,
            fast_path: FastPathMode::Auto,
            health: HealthSettings::default(),
            health_targets: Vec::new(),
            on_uplink_down: OnUplinkDown::Reset,
            on_change: None,
            listen: Some(DEFAULT_LISTEN.parse().expect("a socket address")),
            listen_token: None,
            timeouts: Timeouts::default(),
        };
        if let Some(path) = &flags.config {
            let text = std::fs::read_to_string(path).or_else(|e| {
                err(
                    format!("--config {}", path.display()),
                    format!("cannot read it: {e}"),
                )
            })?;
            c.apply_file(path, &text)?;
        }
        c.apply_flags(flags)?;
        c.validate()?;
        Ok(c)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(text).or_else(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let origin = match line {
                Some(l) => format!("{} line {l}", path.display()),
                None => path.display().to_string(),
            };
            err(origin, e.message())
        })?;
        let at = At { file: path, text };
        self.apply_file_health(&file, &at)?;
        if let Some(t) = &file.timeouts {
            self.apply_file_timeouts(t, &at)?;
        }
        for l in file.lan.unwrap_or_default() {
            check_name(l.get_ref(), &at.key(&l, "lan"), "interface")?;
            self.lan.push(l.into_inner());
        }
        for n in file.lan_net.unwrap_or_default() {
            let net = parse_prefix(n.get_ref(), &at.key(&n, "lan_net"))?;
            self.lan_nets.push(net);
        }
        if let Some(t) = file.tun {
            check_name(t.get_ref(), &at.key(&t, "tun"), "TUN name")?;
            self.tun = t.into_inner();
        }
        if let Some(w) = file.workers {
            let origin = at.key(&w, "workers");
            self.workers = toml_whole_number(w.get_ref())
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| ConfigError {
                    origin,
                    message: "workers must be a whole number from 1 to 64".into(),
                })?;
        }
        if let Some(a) = file.affinity_timeout {
            self.affinity_timeout = parse_affinity(a.get_ref(), &at.key(&a, "affinity_timeout"))?;
        }
        if let Some(b) = file.busy_poll {
            self.busy_poll = parse_busy_poll(b.get_ref(), &at.key(&b, "busy_poll"))?;
        }
        if let Some(o) = file.offload {
            self.fast_path = parse_fast_path_mode(o.get_ref(), &at.key(&o, "offload"))?;
        }
        if let Some(p) = file.nat_ports {
            self.set_nat_ports(p.get_ref(), &at.key(&p, "nat_ports"))?;
        }
        if let Some(m) = &file.max_ports_per_host {
            let origin = at.key(m, "max_ports_per_host");
            let n = toml_whole_number(m.get_ref()).unwrap_or_default();
            self.max_ports_per_host = Some(parse_count(&n, &origin, 1, 65535)?);
        }
        for (i, u) in file.uplink.iter().enumerate() {
            let origin = at.key(&u.name, &format!("[[uplink]] #{}", i + 1));
            let weight = match &u.weight {
                None => 1,
                Some(w) => {
                    let origin = at.key(w, &format!("uplink {:?} weight", u.name.get_ref()));
                    match toml_whole_number(w.get_ref()) {
                        Some(s) => parse_weight(&s, &origin)?,
                        None => {
                            return err(
                                origin,
                                format!("weight must be a whole number from 1 to {MAX_WEIGHT}"),
                            );
                        }
                    }
                }
            };
            let src = match &u.src {
                Some(s) => Some(parse_ipv4(s.get_ref(), &at.key(s, "src"), "src")?),
                None => None,
            };
            let tier = match &u.tier {
                None => 1,
                Some(t) => {
                    let origin = at.key(t, &format!("uplink {:?} tier", u.name.get_ref()));
                    parse_tier(&toml_whole_number(t.get_ref()).unwrap_or_default(), &origin)?
                }
            };
            let checks = match &u.check {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|c| parse_target(c.get_ref(), &at.key(c, "check")))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            self.uplinks.push(UplinkSpec {
                name: u.name.get_ref().clone(),
                dev: u.dev.get_ref().clone(),
                gw: parse_ipv4(u.gw.get_ref(), &at.key(&u.gw, "gw"), "gw")?,
                weight,
                tier,
                src,
                checks,
                origin,
            });
        }
        for p in &file.pin {
            let origin = at.key(&p.dst, "[[pin]]");
            self.pins.push(PinSpec {
                prefix: parse_prefix(p.dst.get_ref(), &at.key(&p.dst, "dst"))?,
                uplink: p.uplink.get_ref().clone(),
                strict: p.strict.as_ref().is_some_and(|s| *s.get_ref()),
                origin,
            });
        }
        // Names must be unique within the file itself; flags may then override by name.
        let mut seen = HashSet::new();
        for u in &self.uplinks {
            if !seen.insert(u.name.clone()) {
                return err(&u.origin, format!("uplink name {:?} is used twice", u.name));
            }
        }
        Ok(())
    }

    fn apply_file_health(&mut self, file: &FileConfig, at: &At<'_>) -> Result<(), ConfigError> {
        if let Some(list) = &file.health_target {
            self.health_targets = list
                .iter()
                .map(|t| parse_target(t.get_ref(), &at.key(t, "health_target")))
                .collect::<Result<_, _>>()?;
        }
        let h = &mut self.health;
        if let Some(v) = &file.health_interval {
            h.interval = parse_interval(v.get_ref(), &at.key(v, "health_interval"))?;
        }
        if let Some(v) = &file.health_timeout {
            h.timeout = parse_timeout(v.get_ref(), &at.key(v, "health_timeout"))?;
        }
        let number = |v: &Spanned<toml::Value>| toml_whole_number(v.get_ref()).unwrap_or_default();
        if let Some(v) = &file.down_after {
            h.down_after = parse_count(&number(v), &at.key(v, "down_after"), 1, 100)?;
        }
        if let Some(v) = &file.up_after {
            h.up_after = parse_count(&number(v), &at.key(v, "up_after"), 1, 100)?;
        }
        if let Some(v) = &file.max_loss {
            h.max_loss_pct = Some(parse_loss(&number(v), &at.key(v, "max_loss"))?);
        }
        if let Some(v) = &file.max_rtt {
            h.max_rtt = Some(parse_max_rtt(v.get_ref(), &at.key(v, "max_rtt"))?);
        }
        if let Some(v) = &file.on_uplink_down {
            self.on_uplink_down = parse_on_uplink_down(v.get_ref(), &at.key(v, "on_uplink_down"))?;
        }
        if let Some(v) = &file.on_change {
            self.on_change = Some(parse_command(v.get_ref(), &at.key(v, "on_change"))?);
        }
        if let Some(v) = &file.listen {
            self.listen = parse_listen(v.get_ref(), &at.key(v, "listen"))?;
        }
        if let Some(v) = &file.listen_token {
            self.listen_token = Some(parse_command(v.get_ref(), &at.key(v, "listen_token"))?);
        }
        Ok(())
    }

    fn apply_health_flags(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        if !flags.health_targets.is_empty() {
            self.health_targets = flags
                .health_targets
                .iter()
                .map(|t| parse_target(t, &format!("--health-target {t:?}")))
                .collect::<Result<_, _>>()?;
        }
        let h = &mut self.health;
        if let Some(v) = &flags.health_interval {
            h.interval = parse_interval(v, &format!("--health-interval {v:?}"))?;
        }
        if let Some(v) = &flags.health_timeout {
            h.timeout = parse_timeout(v, &format!("--health-timeout {v:?}"))?;
        }
        if let Some(v) = &flags.down_after {
            h.down_after = parse_count(v, &format!("--down-after {v:?}"), 1, 100)?;
        }
        if let Some(v) = &flags.up_after {
            h.up_after = parse_count(v, &format!("--up-after {v:?}"), 1, 100)?;
        }
        if let Some(v) = &flags.max_loss {
            h.max_loss_pct = Some(parse_loss(v, &format!("--max-loss {v:?}"))?);
        }
        if let Some(v) = &flags.max_rtt {
            h.max_rtt = Some(parse_max_rtt(v, &format!("--max-rtt {v:?}"))?);
        }
        if let Some(v) = &flags.on_uplink_down {
            self.on_uplink_down = parse_on_uplink_down(v, &format!("--on-uplink-down {v:?}"))?;
        }
        if let Some(v) = &flags.on_change {
            self.on_change = Some(parse_command(v, &format!("--on-change {v:?}"))?);
        }
        if let Some(v) = &flags.listen {
            self.listen = parse_listen(v, &format!("--listen {v:?}"))?;
        }
        if let Some(v) = &flags.listen_token {
            self.listen_token = Some(parse_command(v, "--listen-token")?);
        }
        Ok(())
    }

    fn apply_flags(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        self.apply_health_flags(flags)?;
        self.apply_timeout_flags(&flags.timeouts)?;
        for l in &flags.lan {
            check_name(l, &format!("--lan {l:?}"), "interface")?;
            if !self.lan.contains(l) {
                self.lan.push(l.clone());
            }
        }
        for n in &flags.lan_nets {
            let net = parse_prefix(n, &format!("--lan-net {n:?}"))?;
            if !self.lan_nets.contains(&net) {
                self.lan_nets.push(net);
            }
        }
        let mut from_flags = HashSet::new();
        for spec in &flags.uplinks {
            let u = parse_uplink_flag(spec)?;
            if !from_flags.insert(u.name.clone()) {
                return err(
                    &u.origin,
                    format!("uplink name {:?} is given twice", u.name),
                );
            }
            match self.uplinks.iter_mut().find(|x| x.name == u.name) {
                Some(existing) => *existing = u,
                None => self.uplinks.push(u),
            }
        }
        for spec in &flags.pins {
            let p = parse_pin_flag(spec)?;
            self.pins.retain(|x| x.prefix != p.prefix);
            self.pins.push(p);
        }
        if let Some(a) = &flags.affinity_timeout {
            self.affinity_timeout = parse_affinity(a, &format!("--affinity-timeout {a:?}"))?;
        }
        if let Some(b) = &flags.busy_poll {
            self.busy_poll = parse_busy_poll(b, &format!("--busy-poll {b:?}"))?;
        }
        if let Some(o) = &flags.offload {
            self.fast_path = parse_fast_path_mode(o, &format!("--offload {o:?}"))?;
        }
        if let Some(t) = &flags.tun {
            check_name(t, &format!("--tun {t:?}"), "TUN name")?;
            self.tun = t.clone();
        }
        if let Some(w) = flags.workers {
            if !(1..=64).contains(&w) {
                return err(format!("--workers {w}"), "must be from 1 to 64");
            }
            self.workers = w;
        }
        if let Some(p) = &flags.nat_ports {
            self.set_nat_ports(p, &format!("--nat-ports {p:?}"))?;
        }
        if let Some(m) = &flags.max_ports_per_host {
            let n = parse_count(m, &format!("--max-ports-per-host {m:?}"), 1, 65535)?;
            self.max_ports_per_host = Some(n);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.lan.is_empty() {
            return err(
                "--lan",
                "at least one LAN interface is needed (--lan IFACE or lan = [...] in the file)",
            );
        }
        if self.uplinks.is_empty() {
            return err(
                "--uplink",
                "at least one uplink is needed (--uplink NAME,dev=IFACE,gw=IPV4 or [[uplink]] in the file)",
            );
        }
        if self.uplinks.len() > MAX_UPLINKS {
            return err(
                "--uplink",
                format!("at most {MAX_UPLINKS} uplinks are supported"),
            );
        }
        let mut devs = HashSet::new();
        for u in &self.uplinks {
            check_name(&u.name, &u.origin, "uplink name")?;
            check_name(&u.dev, &u.origin, "dev")?;
            if !devs.insert(&u.dev) {
                return err(
                    &u.origin,
                    format!("dev {:?} is already used by another uplink", u.dev),
                );
            }
            if self.lan.contains(&u.dev) {
                return err(
                    &u.origin,
                    format!("dev {:?} is also a LAN interface", u.dev),
                );
            }
            if self.tun == u.dev {
                return err(
                    &u.origin,
                    format!("dev {:?} is the TUN device's name", u.dev),
                );
            }
        }
        for u in &self.uplinks {
            let targets = self.targets_of(u);
            if targets.len() > MAX_TARGETS {
                return err(
                    &u.origin,
                    format!("at most {MAX_TARGETS} health targets per uplink"),
                );
            }
            if let Some(t) = targets
                .iter()
                .find(|t| targets.iter().filter(|x| x == t).count() > 1)
            {
                let origin = if u.checks.is_some() {
                    u.origin.as_str()
                } else {
                    "--health-target"
                };
                return err(origin, format!("health target {t} is listed twice"));
            }
        }
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && self.listen_token.is_none()
        {
            return err(
                "--listen",
                format!(
                    "{addr} is reachable from other hosts, and the status tells them about your lines and their traffic: give --listen-token TOKEN (clients then send Authorization: Bearer TOKEN), or listen on 127.0.0.1"
                ),
            );
        }
        if let Some(rtt) = self.health.max_rtt
            && rtt >= self.health.timeout
        {
            return err(
                "--max-rtt",
                format!(
                    "{rtt:?} can never be reached: answers later than --health-timeout ({:?}) count as lost",
                    self.health.timeout
                ),
            );
        }
        for p in &self.pins {
            if !self.uplinks.iter().any(|u| u.name == p.uplink) {
                let names: Vec<_> = self.uplinks.iter().map(|u| u.name.as_str()).collect();
                return err(
                    &p.origin,
                    format!(
                        "unknown uplink {:?} (uplinks: {})",
                        p.uplink,
                        names.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    /// Checks the settings against the system: interfaces exist, uplink addresses and
    /// gateways are on their interface's subnet, and the NAT port range leaves the kernel's
    /// ephemeral ports and the gateway's own services alone. Returns each uplink's interface
    /// and source address, in order.
    pub fn resolve(&self, system: &SystemFacts) -> Result<Vec<ResolvedUplink>, ConfigError> {
        for l in &self.lan {
            if !system.interfaces.iter().any(|i| &i.name == l) {
                return err(format!("--lan {l:?}"), "no such interface");
            }
        }
        let (lo, hi) = self.nat_pool(system);
        let (klo, khi) = system.ephemeral_ports;
        if lo <= khi && klo <= hi {
            return err(
                "nat_ports",
                format!(
                    "{lo}-{hi} overlaps the kernel's ephemeral ports {klo}-{khi} (net.ipv4.ip_local_port_range); choose a range outside it"
                ),
            );
        }
        let mut out = Vec::new();
        for u in &self.uplinks {
            let Some(iface) = system.interfaces.iter().find(|i| i.name == u.dev) else {
                return err(&u.origin, format!("dev {:?}: no such interface", u.dev));
            };
            let addr = match u.src {
                Some(src) => iface
                    .ipv4
                    .iter()
                    .find(|(a, _)| *a == src)
                    .copied()
                    .ok_or_else(|| ConfigError {
                        origin: u.origin.clone(),
                        message: format!("src {src} is not an address of {}", u.dev),
                    })?,
                None => *iface.ipv4.first().ok_or_else(|| ConfigError {
                    origin: u.origin.clone(),
                    message: format!("{} has no IPv4 address", u.dev),
                })?,
            };
            let subnet = Prefix::new(u32::from(addr.0), addr.1)
                .expect("kernel prefix lengths are at most 32");
            if !subnet.contains(u32::from(u.gw)) || u.gw == addr.0 {
                return err(
                    &u.origin,
                    format!(
                        "gw {} is not on {}'s subnet {}/{}",
                        u.gw,
                        u.dev,
                        Ipv4Addr::from(subnet.addr()),
                        addr.1
                    ),
                );
            }
            if let Some((proto, port)) = system.services.iter().find(|(_, p)| (lo..=hi).contains(p))
            {
                return err(
                    "nat_ports",
                    format!(
                        "{lo}-{hi} contains port {proto}/{port}, which a service on this host uses; choose a range without it"
                    ),
                );
            }
            out.push(ResolvedUplink {
                iface: iface.clone(),
                addr: addr.0,
            });
        }
        Ok(out)
    }
}

impl Config {
    /// `auto`, or a range like 61000-65535.
    fn set_nat_ports(&mut self, s: &str, origin: &str) -> Result<(), ConfigError> {
        if s.trim() == "auto" {
            self.nat_ports_auto = true;
        } else {
            self.nat_ports = parse_ports(s, origin)?;
            self.nat_ports_auto = false;
        }
        Ok(())
    }

    /// The NAT port pool on this system: as configured, or (`auto`, the default) the largest
    /// range of ports from 1024 up that is clear of the kernel's ephemeral ports and of this
    /// host's services.
    pub fn nat_pool(&self, system: &SystemFacts) -> (u16, u16) {
        if !self.nat_ports_auto {
            return self.nat_ports;
        }
        let services = system.services.iter().map(|(_, p)| *p);
        largest_free_range(system.ephemeral_ports, services)
    }

    /// Ports one LAN host may hold per uplink and protocol, for a pool of `pool`.
    pub fn ports_per_host(&self, pool: (u16, u16)) -> u32 {
        let size = u32::from(pool.1 - pool.0) + 1;
        self.max_ports_per_host.unwrap_or((size / 4).max(1))
    }
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
    best.map_or(DEFAULT_NAT_PORTS, |(lo, hi)| {
        (
            u16::try_from(lo).unwrap_or(u16::MAX),
            u16::try_from(hi).unwrap_or(u16::MAX),
        )
    })
}

/// What `resolve` needs to know about the system.
#[derive(Clone, Debug, Default)]
pub struct SystemFacts {
    pub interfaces: Vec<Interface>,
    pub ephemeral_ports: (u16, u16),
    pub services: Vec<(String, u16)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUplink {
    pub iface: Interface,
    pub addr: Ipv4Addr,
}

/// An idle timeout: its key in `[timeouts]`, its flag, and the least it may be. The RFC
/// minimums are requirements (MUST NOT be less), so wanlb refuses a value under them rather
/// than let a quiet connection or call lose its mapping early.
struct IdleTimeout {
    key: &'static str,
    flag: &'static str,
    min: Duration,
    why: &'static str,
}

const IDLE_TIMEOUTS: [IdleTimeout; 5] = [
    IdleTimeout {
        key: "tcp_established",
        flag: "--tcp-established-timeout",
        min: Duration::from_secs(124 * 60),
        why: "RFC 5382 REQ-5",
    },
    IdleTimeout {
        key: "tcp_transitory",
        flag: "--tcp-transitory-timeout",
        min: Duration::from_secs(4 * 60),
        why: "RFC 5382 REQ-5",
    },
    IdleTimeout {
        key: "tcp_reset",
        flag: "--tcp-reset-timeout",
        min: Duration::from_secs(1),
        why: "RFC 7857 2.2 recommends 4m",
    },
    IdleTimeout {
        key: "udp",
        flag: "--udp-timeout",
        min: Duration::from_secs(2 * 60),
        why: "RFC 4787 REQ-5",
    },
    IdleTimeout {
        key: "icmp",
        flag: "--icmp-timeout",
        min: Duration::from_secs(60),
        why: "RFC 5508 REQ-1",
    },
];

/// Table entries keep 32-bit millisecond stamps: an idle timeout stays far below their 24 days.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 86400);

/// The idle timeouts as flags give them (`--tcp-established-timeout` ...).
#[derive(Clone, Debug, Default)]
pub struct TimeoutFlags {
    pub tcp_established: Option<String>,
    pub tcp_transitory: Option<String>,
    pub tcp_reset: Option<String>,
    pub udp: Option<String>,
    pub icmp: Option<String>,
}

/// `[timeouts]` in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    tcp_established: Option<Spanned<String>>,
    tcp_transitory: Option<Spanned<String>>,
    tcp_reset: Option<Spanned<String>>,
    udp: Option<Spanned<String>>,
    icmp: Option<Spanned<String>>,
}

impl TimeoutFlags {
    /// In the order of [`IDLE_TIMEOUTS`].
    fn values(&self) -> [&Option<String>; 5] {
        [
            &self.tcp_established,
            &self.tcp_transitory,
            &self.tcp_reset,
            &self.udp,
            &self.icmp,
        ]
    }
}

impl FileTimeouts {
    /// In the order of [`IDLE_TIMEOUTS`].
    fn values(&self) -> [&Option<Spanned<String>>; 5] {
        [
            &self.tcp_established,
            &self.tcp_transitory,
            &self.tcp_reset,
            &self.udp,
            &self.icmp,
        ]
    }
}

/// The fields of `t`, in the order of [`IDLE_TIMEOUTS`].
fn timeout_fields(t: &mut Timeouts) -> [&mut u64; 5] {
    [
        &mut t.tcp_established,
        &mut t.tcp_transitory,
        &mut t.tcp_reset,
        &mut t.udp,
        &mut t.icmp,
    ]
}

/// `2h4m`, `4m`, `90s`, `1d2h`: a duration as the configuration writes it.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            out += &format!("{}{unit}", ms / len);
            ms %= len;
        }
    }
    out
}

impl Config {
    /// Sets idle timeout `i` (of [`IDLE_TIMEOUTS`]) from `s`: a duration from its minimum to
    /// [`MAX_IDLE_TIMEOUT`].
    fn set_idle_timeout(&mut self, i: usize, s: &str, origin: &str) -> Result<(), ConfigError> {
        let t = &IDLE_TIMEOUTS[i];
        let d = parse_duration(s, origin)?;
        if d < t.min {
            return err(
                origin,
                format!(
                    "must be at least {} ({}), got {s:?}",
                    format_duration(t.min),
                    t.why
                ),
            );
        }
        if d > MAX_IDLE_TIMEOUT {
            return err(
                origin,
                format!(
                    "can be at most {}, got {s:?}",
                    format_duration(MAX_IDLE_TIMEOUT)
                ),
            );
        }
        *timeout_fields(&mut self.timeouts)[i] =
            u64::try_from(d.as_millis()).expect("at most a week");
        Ok(())
    }

    fn apply_file_timeouts(&mut self, file: &FileTimeouts, at: &At<'_>) -> Result<(), ConfigError> {
        for (i, value) in file.values().into_iter().enumerate() {
            if let Some(v) = value {
                let origin = at.key(v, &format!("timeouts.{}", IDLE_TIMEOUTS[i].key));
                self.set_idle_timeout(i, v.get_ref(), &origin)?;
            }
        }
        Ok(())
    }

    fn apply_timeout_flags(&mut self, flags: &TimeoutFlags) -> Result<(), ConfigError> {
        for (i, value) in flags.values().into_iter().enumerate() {
            if let Some(v) = value {
                self.set_idle_timeout(i, v, &format!("{} {v:?}", IDLE_TIMEOUTS[i].flag))?;
            }
        }
        Ok(())
    }
}

mod reload;

pub use reload::Reload;

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
