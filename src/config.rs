//! Settings from a TOML file and command-line flags, validated before anything on the system
//! is touched. Every error names the flag or the file, line and key it comes from.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use tracing::level_filters::LevelFilter;

use crate::engine::UdpAffinity;
use crate::engine::flow::Timeouts;
use crate::engine::limits::{self, Limits};
use crate::engine::select::Prefix;
use crate::health::HealthSettings;
use crate::io::iface::Interface;
use crate::io::system::LocalService;
use crate::uplink::LinkKind;

pub const DEFAULT_TUN: &str = "wanlb0";
pub const DEFAULT_AFFINITY: Duration = Duration::from_secs(600);
pub const DEFAULT_NAT_PORTS: (u16, u16) = (61000, 65535);
pub const MAX_WEIGHT: u32 = 1000;
/// Sets of uplinks are 32-bit masks in the engine.
pub const MAX_UPLINKS: usize = crate::engine::MAX_UPLINKS;
/// Bounds of `max_flows` and `max_flows_per_host`.
pub const MAX_FLOWS_RANGE: (u32, u32) = (1_024, 67_108_864);
pub const DEFAULT_MAX_EMBRYONIC: u32 = 4_096;
/// Bounds of `max_embryonic_per_forward`: at least one per part of the table (64).
pub const MAX_EMBRYONIC_RANGE: (u32, u32) = (64, 1_048_576);
/// Table entries keep 32-bit millisecond stamps, good for ages up to 24 days.
pub const MAX_AFFINITY: Duration = Duration::from_secs(86400);
pub const MAX_TIER: u8 = 9;
/// Health targets per uplink (each round sends one probe to each).
pub const MAX_TARGETS: usize = 16;
const UPLINK_SPEC: &str =
    "NAME,dev=IFACE[,gw=IPV4|auto][,weight=N][,tier=N][,check=IPV4]...[,src=IPV4]";

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

/// What loading has found wrong so far. It goes on past each error, so that one run reports
/// them all, and remembers enough to keep the checks between settings from reporting what only
/// follows from an error already reported.
#[derive(Default)]
struct Loading {
    errors: Vec<ConfigError>,
    /// The file's line of each origin in the file, to list the errors in line order.
    lines: HashMap<String, usize>,
    /// Where each setting was given last, for the checks between settings.
    places: HashMap<&'static str, String>,
    /// Settings whose value was refused: their defaults stand in, and are not checked against
    /// other settings.
    refused: HashSet<&'static str>,
    /// Uplinks given but refused, in order: pins may name them, and "no uplink" would be
    /// wrong.
    refused_uplinks: Vec<String>,
}

impl Loading {
    /// The value of `result`, or None once its error is noted.
    fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        keep(&mut self.errors, result)
    }

    /// The value of setting `name`, given at `origin`, or None once its error is noted.
    fn setting<T>(
        &mut self,
        name: &'static str,
        origin: String,
        result: Result<T, ConfigError>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.refused.remove(name);
                self.places.insert(name, origin);
                Some(value)
            }
            Err(e) => {
                self.refused.insert(name);
                self.errors.push(e);
                None
            }
        }
    }

    /// Where setting `name` was given, or `default` for its default.
    fn place(&self, name: &str, default: &str) -> String {
        self.places
            .get(name)
            .map_or_else(|| default.to_string(), String::clone)
    }

    fn finish(mut self, config: Config) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(config);
        }
        // stable: the flags' errors, on no line, stay in their order after the file's
        let lines = &self.lines;
        self.errors
            .sort_by_key(|e| lines.get(&e.origin).copied().unwrap_or(usize::MAX));
        Err(ConfigErrors(self.errors))
    }
}

/// The value of `result`, or None once its error is added to `errors`.
fn keep<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// Setting `name` from `flag`, if given: `parse(value, origin)`, or None once its error is
/// noted.
fn flag<T>(
    loading: &mut Loading,
    value: &Option<String>,
    flag: &str,
    name: &'static str,
    parse: impl FnOnce(&str, &str) -> Result<T, ConfigError>,
) -> Option<T> {
    let value = value.as_ref()?;
    let origin = format!("{flag} {value:?}");
    let result = parse(value, &origin);
    loading.setting(name, origin, result)
}

/// An uplink's gateway as the settings give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewaySpec {
    Address(Ipv4Addr),
    /// Whatever the interface's default route in the main table says (as a DHCP client
    /// installs it), followed when it changes.
    Auto,
}

impl fmt::Display for GatewaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewaySpec::Address(a) => a.fmt(f),
            GatewaySpec::Auto => f.write_str("auto"),
        }
    }
}

fn parse_gateway(s: &str, origin: &str) -> Result<GatewaySpec, ConfigError> {
    if s == "auto" {
        return Ok(GatewaySpec::Auto);
    }
    parse_ipv4(s, origin, "gw").map(GatewaySpec::Address)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkSpec {
    pub name: String,
    pub dev: String,
    /// The gateway: required on an Ethernet link; on a point-to-point link (PPP, a raw-IP
    /// modem, a tunnel) only the peer's address for the reports, and may be left out.
    pub gw: Option<GatewaySpec>,
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

/// What the gateway's own traffic (the main routing table's default route) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostTraffic {
    /// wanlb leaves the main table alone: the host's own traffic takes whatever default
    /// route the system has, dead line or not.
    #[default]
    Off,
    /// The host's default route follows the best healthy line; the original comes back when
    /// wanlb stops.
    Follow,
}

fn parse_udp_affinity(s: &str, origin: &str) -> Result<UdpAffinity, ConfigError> {
    match s.trim() {
        "endpoint" => Ok(UdpAffinity::Endpoint),
        "destination" => Ok(UdpAffinity::Destination),
        _ => err(origin, "must be endpoint (the default) or destination"),
    }
}

fn parse_host_traffic(s: &str, origin: &str) -> Result<HostTraffic, ConfigError> {
    match s.trim() {
        "off" => Ok(HostTraffic::Off),
        "follow" => Ok(HostTraffic::Follow),
        _ => err(origin, "must be off (the default) or follow"),
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
    /// Flows in the table; default: from the machine's memory ([`Config::limits`]).
    pub max_flows: Option<u32>,
    /// Flows one LAN host may have; default: a sixteenth of `max_flows`.
    pub max_flows_per_host: Option<u32>,
    /// Connections through one port forward that have not completed their handshake.
    pub max_embryonic_per_forward: u32,
    pub fast_path: FastPathMode,
    pub health: HealthSettings,
    /// Probed through every uplink that names none of its own (`check`).
    pub health_targets: Vec<Ipv4Addr>,
    pub on_uplink_down: OnUplinkDown,
    /// Whether the host's own default route follows the best healthy line.
    pub host_traffic: HostTraffic,
    /// Where a UDP socket's new destinations go: its uplink (endpoint), or by destination.
    pub udp_affinity: UdpAffinity,
    /// Run through `sh -c` on every uplink state change.
    pub on_change: Option<String>,
    /// Where the metrics and the status are served; `None`: nowhere.
    pub listen: Option<std::net::SocketAddr>,
    /// Required of every HTTP request when given (and given it must be, off loopback).
    pub listen_token: Option<String>,
    /// Names (or addresses) the control port answers to besides localhost and the address a
    /// request arrived at; lowercased, without a trailing dot or brackets.
    pub listen_hosts: Vec<String>,
    /// Idle timeouts of flows, by protocol and TCP phase (`[timeouts]`).
    pub timeouts: Timeouts,
    /// Ports of the uplinks' addresses whose inbound connections go to LAN hosts.
    pub forwards: Vec<ForwardSpec>,
    /// The least severe of wanlb's own events logged; RUST_LOG, when set, decides instead.
    pub log_level: LevelFilter,
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
    pub forwards: Vec<String>,
    pub affinity_timeout: Option<String>,
    pub busy_poll: Option<String>,
    pub tun: Option<String>,
    pub workers: Option<usize>,
    pub nat_ports: Option<String>,
    pub max_ports_per_host: Option<String>,
    pub max_flows: Option<String>,
    pub max_flows_per_host: Option<String>,
    pub max_embryonic_per_forward: Option<String>,
    pub offload: Option<String>,
    pub health_targets: Vec<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub down_after: Option<String>,
    pub up_after: Option<String>,
    pub max_loss: Option<String>,
    pub max_rtt: Option<String>,
    pub on_uplink_down: Option<String>,
    pub host_traffic: Option<String>,
    pub udp_affinity: Option<String>,
    pub on_change: Option<String>,
    pub listen: Option<String>,
    pub listen_token: Option<String>,
    pub listen_hosts: Vec<String>,
    pub timeouts: TimeoutFlags,
    pub log_level: Option<String>,
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
    max_flows: Option<Spanned<toml::Value>>,
    max_flows_per_host: Option<Spanned<toml::Value>>,
    max_embryonic_per_forward: Option<Spanned<toml::Value>>,
    offload: Option<Spanned<String>>,
    health_target: Option<Vec<Spanned<String>>>,
    health_interval: Option<Spanned<String>>,
    health_timeout: Option<Spanned<String>>,
    down_after: Option<Spanned<toml::Value>>,
    up_after: Option<Spanned<toml::Value>>,
    max_loss: Option<Spanned<toml::Value>>,
    max_rtt: Option<Spanned<String>>,
    on_uplink_down: Option<Spanned<String>>,
    host_traffic: Option<Spanned<String>>,
    udp_affinity: Option<Spanned<String>>,
    on_change: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    listen_token: Option<Spanned<String>>,
    listen_hosts: Option<Vec<Spanned<String>>>,
    log_level: Option<Spanned<String>>,
    timeouts: Option<FileTimeouts>,
    #[serde(default)]
    uplink: Vec<FileUplink>,
    #[serde(default)]
    pin: Vec<FilePin>,
    #[serde(default)]
    forward: Vec<forward::FileForward>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUplink {
    name: Spanned<String>,
    dev: Spanned<String>,
    gw: Option<Spanned<String>>,
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

/// The file being read, to name the line and key of each value in it.
struct At<'a> {
    file: &'a Path,
    text: &'a str,
}

/// The line `offset` is on, counting from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl At<'_> {
    /// "FILE line N, KEY" for `v`; `loading` keeps its line, to list errors in line order.
    fn origin<T>(&self, loading: &mut Loading, v: &Spanned<T>, key: &str) -> String {
        let line = line_of(self.text, v.span().start);
        let origin = format!("{} line {line}, {key}", self.file.display());
        loading.lines.insert(origin.clone(), line);
        origin
    }

    /// `parse(value, origin)` for `v`, or None once its error is noted.
    fn parse<T, R>(
        &self,
        loading: &mut Loading,
        v: &Spanned<T>,
        key: &str,
        parse: impl FnOnce(&T, &str) -> Result<R, ConfigError>,
    ) -> Option<R> {
        let origin = self.origin(loading, v, key);
        let result = parse(v.get_ref(), &origin);
        loading.take(result)
    }

    /// Setting `key`, a string, if the file gives it: `parse(value, origin)`, or None once
    /// its error is noted.
    fn text<R>(
        &self,
        loading: &mut Loading,
        v: &Option<Spanned<String>>,
        key: &'static str,
        parse: impl FnOnce(&str, &str) -> Result<R, ConfigError>,
    ) -> Option<R> {
        let v = v.as_ref()?;
        let origin = self.origin(loading, v, key);
        let result = parse(v.get_ref(), &origin);
        loading.setting(key, origin, result)
    }

    /// Setting `key`, a number (`3` or `"3"`), if the file gives it: as [`At::text`].
    fn number<R>(
        &self,
        loading: &mut Loading,
        v: &Option<Spanned<toml::Value>>,
        key: &'static str,
        parse: impl FnOnce(&str, &str) -> Result<R, ConfigError>,
    ) -> Option<R> {
        let v = v.as_ref()?;
        let origin = self.origin(loading, v, key);
        let result = parse(&number_text(v.get_ref()), &origin);
        loading.setting(key, origin, result)
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

fn parse_token(s: &str, origin: &str) -> Result<String, ConfigError> {
    if s.trim().is_empty() {
        return err(origin, "the token is empty");
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

/// `auto` (None) or a range like 61000-65535.
fn parse_nat_ports(s: &str, origin: &str) -> Result<Option<(u16, u16)>, ConfigError> {
    if s.trim() == "auto" {
        return Ok(None);
    }
    parse_ports(s, origin).map(Some)
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

/// `NAME,dev=IFACE[,gw=IPV4][,weight=N][,tier=N][,check=IPV4]...[,src=IPV4]`, with every
/// error in it. Whether `gw` may be left out depends on the interface: see `resolve`.
pub fn parse_uplink_flag(spec: &str) -> Result<UplinkSpec, ConfigErrors> {
    let origin = format!("--uplink {spec:?}");
    let Some(name) = uplink_flag_name(spec) else {
        return Err(ConfigError {
            origin,
            message: format!("must start with the uplink's name: {UPLINK_SPEC}"),
        }
        .into());
    };
    let parts = spec.split(',').skip(1);
    let mut errors = Vec::new();
    let e = &mut errors;
    let (mut dev, mut gw, mut weight, mut src) = (None, None, Some(1), None);
    let (mut tier, mut checks) = (Some(1), None::<Vec<&str>>);
    for part in parts {
        let Some((k, v)) = part.split_once('=') else {
            keep(e, err::<()>(&origin, format!("{part:?} is not KEY=VALUE")));
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "dev" => dev = Some(v),
            // given but bad is not missing: Some(None)
            "gw" => gw = Some(keep(e, parse_gateway(v, &origin))),
            "weight" => weight = keep(e, parse_weight(v, &origin)),
            "src" => src = Some(keep(e, parse_ipv4(v, &origin, "src"))),
            "tier" => tier = keep(e, parse_tier(v, &format!("{origin}: tier"))),
            "check" => checks.get_or_insert_with(Vec::new).push(v),
            other => {
                let expected = "expected dev, gw, weight, tier, check or src";
                keep(
                    e,
                    err::<()>(&origin, format!("unknown key {other:?} ({expected})")),
                );
            }
        }
    }
    let dev = dev.filter(|d| !d.is_empty());
    if dev.is_none() {
        keep(e, err::<()>(&origin, "dev=IFACE is missing"));
    }
    let checks = checks.map(|c| {
        let given: Vec<_> = c.into_iter().map(|t| (t, origin.clone())).collect();
        parse_targets(&given, e)
    });
    match (dev, gw, weight, tier, src) {
        (Some(dev), gw, Some(weight), Some(tier), src) if errors.is_empty() => Ok(UplinkSpec {
            name: name.to_string(),
            dev: dev.to_string(),
            gw: gw.flatten(),
            weight,
            tier,
            src: src.flatten(),
            checks,
            origin,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The name an uplink flag starts with, if it starts with one.
fn uplink_flag_name(spec: &str) -> Option<&str> {
    let name = spec.split(',').next().unwrap_or("").trim();
    (!name.is_empty() && !name.contains('=')).then_some(name)
}

/// Health targets, each with where it was given: the good ones, in order. A bad one, one
/// listed twice and one beyond [`MAX_TARGETS`] are added to `errors`.
fn parse_targets(given: &[(&str, String)], errors: &mut Vec<ConfigError>) -> Vec<Ipv4Addr> {
    let mut targets = Vec::new();
    for (text, origin) in given {
        match parse_target(text, origin) {
            Err(e) => errors.push(e),
            Ok(t) if targets.contains(&t) => errors.push(ConfigError {
                origin: origin.clone(),
                message: format!("health target {t} is listed twice"),
            }),
            Ok(_) if targets.len() == MAX_TARGETS => {
                errors.push(ConfigError {
                    origin: origin.clone(),
                    message: format!("at most {MAX_TARGETS} health targets per uplink"),
                });
                break;
            }
            Ok(t) => targets.push(t),
        }
    }
    targets
}

/// `error`, `warn`, `info`, `debug` or `trace`.
pub fn parse_log_level(s: &str, origin: &str) -> Result<LevelFilter, ConfigError> {
    match s.trim() {
        "error" => Ok(LevelFilter::ERROR),
        "warn" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => err(
            origin,
            format!(
                "must be error, warn, info, debug or trace, got {s:?} (RUST_LOG takes finer filters)"
            ),
        ),
    }
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
        || name == "."
        || name == ".."
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return err(
            origin,
            format!(
                "{what} {name:?} must be 1 to 15 letters, digits, '-', '_' or '.' (and not . or ..)"
            ),
        );
    }
    Ok(())
}

/// A number in the file as the parsers take it: `3` and `"3"` alike; anything else as TOML
/// writes it, for the error to quote.
fn number_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Config {
    /// Reads the file (if any), applies the flags, and checks everything that can be checked
    /// without looking at the system. Returns every error found, not just the first.
    pub fn load(flags: &Flags) -> Result<Config, ConfigErrors> {
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
            max_flows: None,
            max_flows_per_host: None,
            max_embryonic_per_forward: DEFAULT_MAX_EMBRYONIC,
            fast_path: FastPathMode::Auto,
            health: HealthSettings::default(),
            health_targets: Vec::new(),
            on_uplink_down: OnUplinkDown::Reset,
            host_traffic: HostTraffic::Off,
            udp_affinity: UdpAffinity::Endpoint,
            on_change: None,
            listen: Some(DEFAULT_LISTEN.parse().expect("a socket address")),
            listen_token: None,
            listen_hosts: Vec::new(),
            timeouts: Timeouts::default(),
            log_level: LevelFilter::INFO,
            forwards: Vec::new(),
        };
        let mut loading = Loading::default();
        let mut file_read = true;
        if let Some(path) = &flags.config {
            file_read = match std::fs::read_to_string(path) {
                Ok(text) => c.apply_file(path, &text, &mut loading),
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
    fn apply_file(&mut self, path: &Path, text: &str, l: &mut Loading) -> bool {
        let file: FileConfig = match toml::from_str(text) {
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
        let at = At { file: path, text };
        self.apply_file_health(&file, &at, l);
        if let Some(t) = &file.timeouts {
            self.apply_file_timeouts(t, &at, l);
        }
        for name in file.lan.iter().flatten() {
            match at.parse(l, name, "lan", |n, o| check_name(n, o, "interface")) {
                Some(()) => self.lan.push(name.get_ref().clone()),
                None => {
                    l.refused.insert("lan");
                }
            }
        }
        for net in file.lan_net.iter().flatten() {
            if let Some(net) = at.parse(l, net, "lan_net", |s, o| parse_prefix(s, o)) {
                self.lan_nets.push(net);
            }
        }
        let tun = |t: &str, o: &str| check_name(t, o, "TUN name").map(|()| t.to_string());
        if let Some(t) = at.text(l, &file.tun, "tun", tun) {
            self.tun = t;
        }
        let workers = |s: &str, o: &str| parse_count(s, o, 1, 64);
        if let Some(n) = at.number(l, &file.workers, "workers", workers) {
            self.workers = n as usize;
        }
        let affinity = at.text(
            l,
            &file.affinity_timeout,
            "affinity_timeout",
            parse_affinity,
        );
        if let Some(d) = affinity {
            self.affinity_timeout = d;
        }
        if let Some(d) = at.text(l, &file.busy_poll, "busy_poll", parse_busy_poll) {
            self.busy_poll = d;
        }
        if let Some(m) = at.text(l, &file.offload, "offload", parse_fast_path_mode) {
            self.fast_path = m;
        }
        if let Some(p) = at.text(l, &file.nat_ports, "nat_ports", parse_nat_ports) {
            self.set_nat_ports(p);
        }
        let per_host = |s: &str, o: &str| parse_count(s, o, 1, 65535);
        if let Some(n) = at.number(l, &file.max_ports_per_host, "max_ports_per_host", per_host) {
            self.max_ports_per_host = Some(n);
        }
        let flows = |s: &str, o: &str| parse_count(s, o, MAX_FLOWS_RANGE.0, MAX_FLOWS_RANGE.1);
        if let Some(n) = at.number(l, &file.max_flows, "max_flows", flows) {
            self.max_flows = Some(n);
        }
        let host_flows = |s: &str, o: &str| parse_count(s, o, 1, MAX_FLOWS_RANGE.1);
        let key = "max_flows_per_host";
        if let Some(n) = at.number(l, &file.max_flows_per_host, key, host_flows) {
            self.max_flows_per_host = Some(n);
        }
        let embryonic =
            |s: &str, o: &str| parse_count(s, o, MAX_EMBRYONIC_RANGE.0, MAX_EMBRYONIC_RANGE.1);
        let key = "max_embryonic_per_forward";
        if let Some(n) = at.number(l, &file.max_embryonic_per_forward, key, embryonic) {
            self.max_embryonic_per_forward = n;
        }
        if let Some(level) = at.text(l, &file.log_level, "log_level", parse_log_level) {
            self.log_level = level;
        }
        self.apply_file_uplinks(&file.uplink, &at, l);
        for p in &file.pin {
            let prefix = at.parse(l, &p.dst, "[[pin]] dst", |s, o| parse_prefix(s, o));
            let origin = at.origin(l, &p.uplink, "[[pin]] uplink");
            if let Some(prefix) = prefix {
                self.pins.push(PinSpec {
                    prefix,
                    uplink: p.uplink.get_ref().clone(),
                    strict: p.strict.as_ref().is_some_and(|s| *s.get_ref()),
                    origin,
                });
            }
        }
        self.apply_file_forwards(&file.forward, &at, l);
        true
    }

    fn apply_file_uplinks(&mut self, uplinks: &[FileUplink], at: &At<'_>, l: &mut Loading) {
        let mut names = HashSet::new();
        for (i, u) in uplinks.iter().enumerate() {
            let name = u.name.get_ref();
            let origin = at.origin(l, &u.name, &format!("[[uplink]] #{}", i + 1));
            // unique within the file; flags may then override one by name
            if !names.insert(name) {
                l.take(err::<()>(
                    &origin,
                    format!("uplink name {name:?} is used twice"),
                ));
                continue;
            }
            let key = |k: &str| format!("uplink {name:?} {k}");
            let gw = match &u.gw {
                None => Some(None),
                Some(g) => at
                    .parse(l, g, &key("gw"), |s, o| parse_gateway(s, o))
                    .map(Some),
            };
            let weight = match &u.weight {
                None => Some(1),
                Some(w) => at.parse(l, w, &key("weight"), |v, o| {
                    parse_weight(&number_text(v), o)
                }),
            };
            let tier = match &u.tier {
                None => Some(1),
                Some(t) => at.parse(l, t, &key("tier"), |v, o| parse_tier(&number_text(v), o)),
            };
            let src = match &u.src {
                None => Some(None),
                Some(s) => at
                    .parse(l, s, &key("src"), |s, o| parse_ipv4(s, o, "src"))
                    .map(Some),
            };
            let errors_before = l.errors.len();
            let checks = u.check.as_ref().map(|list| {
                let given: Vec<_> = list
                    .iter()
                    .map(|c| (c.get_ref().as_str(), at.origin(l, c, &key("check"))))
                    .collect();
                parse_targets(&given, &mut l.errors)
            });
            match (gw, weight, tier, src) {
                (Some(gw), Some(weight), Some(tier), Some(src))
                    if l.errors.len() == errors_before =>
                {
                    self.uplinks.push(UplinkSpec {
                        name: name.clone(),
                        dev: u.dev.get_ref().clone(),
                        gw,
                        weight,
                        tier,
                        src,
                        checks,
                        origin,
                    });
                }
                _ => l.refused_uplinks.push(name.clone()),
            }
        }
    }

    fn apply_file_health(&mut self, file: &FileConfig, at: &At<'_>, l: &mut Loading) {
        if let Some(list) = &file.health_target {
            let given: Vec<_> = list
                .iter()
                .map(|t| (t.get_ref().as_str(), at.origin(l, t, "health_target")))
                .collect();
            self.health_targets = parse_targets(&given, &mut l.errors);
        }
        let h = &mut self.health;
        if let Some(d) = at.text(l, &file.health_interval, "health_interval", parse_interval) {
            h.interval = d;
        }
        if let Some(d) = at.text(l, &file.health_timeout, "health_timeout", parse_timeout) {
            h.timeout = d;
        }
        let rounds = |s: &str, o: &str| parse_count(s, o, 1, 100);
        if let Some(n) = at.number(l, &file.down_after, "down_after", rounds) {
            h.down_after = n;
        }
        if let Some(n) = at.number(l, &file.up_after, "up_after", rounds) {
            h.up_after = n;
        }
        if let Some(n) = at.number(l, &file.max_loss, "max_loss", parse_loss) {
            h.max_loss_pct = Some(n);
        }
        if let Some(d) = at.text(l, &file.max_rtt, "max_rtt", parse_max_rtt) {
            h.max_rtt = Some(d);
        }
        let on_down = at.text(
            l,
            &file.on_uplink_down,
            "on_uplink_down",
            parse_on_uplink_down,
        );
        if let Some(o) = on_down {
            self.on_uplink_down = o;
        }
        let host = at.text(l, &file.host_traffic, "host_traffic", parse_host_traffic);
        if let Some(h) = host {
            self.host_traffic = h;
        }
        if let Some(a) = at.text(l, &file.udp_affinity, "udp_affinity", parse_udp_affinity) {
            self.udp_affinity = a;
        }
        if let Some(c) = at.text(l, &file.on_change, "on_change", parse_command) {
            self.on_change = Some(c);
        }
        if let Some(a) = at.text(l, &file.listen, "listen", parse_listen) {
            self.listen = a;
        }
        if let Some(t) = at.text(l, &file.listen_token, "listen_token", parse_token) {
            self.listen_token = Some(t);
        }
        for host in file.listen_hosts.iter().flatten() {
            let parse = |s: &String, o: &str| listen::parse_listen_host(s, o);
            if let Some(h) = at.parse(l, host, "listen_hosts", parse)
                && !self.listen_hosts.contains(&h)
            {
                self.listen_hosts.push(h);
            }
        }
    }

    fn apply_health_flags(&mut self, flags: &Flags, l: &mut Loading) {
        if !flags.health_targets.is_empty() {
            let given: Vec<_> = flags
                .health_targets
                .iter()
                .map(|t| (t.as_str(), format!("--health-target {t:?}")))
                .collect();
            self.health_targets = parse_targets(&given, &mut l.errors);
        }
        let h = &mut self.health;
        let interval = flag(
            l,
            &flags.health_interval,
            "--health-interval",
            "health_interval",
            parse_interval,
        );
        if let Some(d) = interval {
            h.interval = d;
        }
        let timeout = flag(
            l,
            &flags.health_timeout,
            "--health-timeout",
            "health_timeout",
            parse_timeout,
        );
        if let Some(d) = timeout {
            h.timeout = d;
        }
        let rounds = |s: &str, o: &str| parse_count(s, o, 1, 100);
        if let Some(n) = flag(l, &flags.down_after, "--down-after", "down_after", rounds) {
            h.down_after = n;
        }
        if let Some(n) = flag(l, &flags.up_after, "--up-after", "up_after", rounds) {
            h.up_after = n;
        }
        if let Some(n) = flag(l, &flags.max_loss, "--max-loss", "max_loss", parse_loss) {
            h.max_loss_pct = Some(n);
        }
        if let Some(d) = flag(l, &flags.max_rtt, "--max-rtt", "max_rtt", parse_max_rtt) {
            h.max_rtt = Some(d);
        }
        let on_down = flag(
            l,
            &flags.on_uplink_down,
            "--on-uplink-down",
            "on_uplink_down",
            parse_on_uplink_down,
        );
        if let Some(o) = on_down {
            self.on_uplink_down = o;
        }
        let host = flag(
            l,
            &flags.host_traffic,
            "--host-traffic",
            "host_traffic",
            parse_host_traffic,
        );
        if let Some(h) = host {
            self.host_traffic = h;
        }
        if let Some(a) = flag(
            l,
            &flags.udp_affinity,
            "--udp-affinity",
            "udp_affinity",
            parse_udp_affinity,
        ) {
            self.udp_affinity = a;
        }
        if let Some(c) = flag(
            l,
            &flags.on_change,
            "--on-change",
            "on_change",
            parse_command,
        ) {
            self.on_change = Some(c);
        }
        if let Some(a) = flag(l, &flags.listen, "--listen", "listen", parse_listen) {
            self.listen = a;
        }
        // the token stays out of the messages
        if let Some(token) = &flags.listen_token {
            let result = parse_token(token, "--listen-token");
            if let Some(t) = l.setting("listen_token", "--listen-token".into(), result) {
                self.listen_token = Some(t);
            }
        }
        for host in &flags.listen_hosts {
            let origin = format!("--listen-host {host:?}");
            if let Some(h) = l.take(listen::parse_listen_host(host, &origin))
                && !self.listen_hosts.contains(&h)
            {
                self.listen_hosts.push(h);
            }
        }
    }

    fn apply_flags(&mut self, flags: &Flags, l: &mut Loading) {
        self.apply_health_flags(flags, l);
        self.apply_timeout_flags(&flags.timeouts, l);
        for name in &flags.lan {
            match l.take(check_name(name, &format!("--lan {name:?}"), "interface")) {
                Some(()) if !self.lan.contains(name) => self.lan.push(name.clone()),
                Some(()) => {}
                None => {
                    l.refused.insert("lan");
                }
            }
        }
        for n in &flags.lan_nets {
            if let Some(net) = l.take(parse_prefix(n, &format!("--lan-net {n:?}")))
                && !self.lan_nets.contains(&net)
            {
                self.lan_nets.push(net);
            }
        }
        let mut from_flags = HashSet::new();
        for spec in &flags.uplinks {
            match parse_uplink_flag(spec) {
                Ok(u) if !from_flags.insert(u.name.clone()) => {
                    let message = format!("uplink name {:?} is given twice", u.name);
                    l.take(err::<()>(&u.origin, message));
                }
                Ok(u) => match self.uplinks.iter_mut().find(|x| x.name == u.name) {
                    Some(existing) => *existing = u,
                    None => self.uplinks.push(u),
                },
                Err(errors) => {
                    l.errors.extend(errors.0);
                    let name = uplink_flag_name(spec).unwrap_or_default();
                    l.refused_uplinks.push(name.to_string());
                }
            }
        }
        for spec in &flags.pins {
            if let Some(p) = l.take(parse_pin_flag(spec)) {
                self.pins.retain(|x| x.prefix != p.prefix);
                self.pins.push(p);
            }
        }
        self.apply_forward_flags(&flags.forwards, l);
        let affinity = flag(
            l,
            &flags.affinity_timeout,
            "--affinity-timeout",
            "affinity_timeout",
            parse_affinity,
        );
        if let Some(d) = affinity {
            self.affinity_timeout = d;
        }
        if let Some(d) = flag(
            l,
            &flags.busy_poll,
            "--busy-poll",
            "busy_poll",
            parse_busy_poll,
        ) {
            self.busy_poll = d;
        }
        let offload = flag(
            l,
            &flags.offload,
            "--offload",
            "offload",
            parse_fast_path_mode,
        );
        if let Some(m) = offload {
            self.fast_path = m;
        }
        let tun = |t: &str, o: &str| check_name(t, o, "TUN name").map(|()| t.to_string());
        if let Some(t) = flag(l, &flags.tun, "--tun", "tun", tun) {
            self.tun = t;
        }
        if let Some(w) = flags.workers {
            let origin = format!("--workers {w}");
            let result = parse_count(&w.to_string(), &origin, 1, 64);
            if let Some(n) = l.setting("workers", origin, result) {
                self.workers = n as usize;
            }
        }
        if let Some(p) = flag(
            l,
            &flags.nat_ports,
            "--nat-ports",
            "nat_ports",
            parse_nat_ports,
        ) {
            self.set_nat_ports(p);
        }
        let per_host = |s: &str, o: &str| parse_count(s, o, 1, 65535);
        let max_ports = flag(
            l,
            &flags.max_ports_per_host,
            "--max-ports-per-host",
            "max_ports_per_host",
            per_host,
        );
        if let Some(n) = max_ports {
            self.max_ports_per_host = Some(n);
        }
        let flows = |s: &str, o: &str| parse_count(s, o, MAX_FLOWS_RANGE.0, MAX_FLOWS_RANGE.1);
        if let Some(n) = flag(l, &flags.max_flows, "--max-flows", "max_flows", flows) {
            self.max_flows = Some(n);
        }
        let host_flows = |s: &str, o: &str| parse_count(s, o, 1, MAX_FLOWS_RANGE.1);
        let max_host_flows = flag(
            l,
            &flags.max_flows_per_host,
            "--max-flows-per-host",
            "max_flows_per_host",
            host_flows,
        );
        if let Some(n) = max_host_flows {
            self.max_flows_per_host = Some(n);
        }
        let embryonic =
            |s: &str, o: &str| parse_count(s, o, MAX_EMBRYONIC_RANGE.0, MAX_EMBRYONIC_RANGE.1);
        let max_embryonic = flag(
            l,
            &flags.max_embryonic_per_forward,
            "--max-embryonic-per-forward",
            "max_embryonic_per_forward",
            embryonic,
        );
        if let Some(n) = max_embryonic {
            self.max_embryonic_per_forward = n;
        }
        let level = flag(
            l,
            &flags.log_level,
            "--log-level",
            "log_level",
            parse_log_level,
        );
        if let Some(level) = level {
            self.log_level = level;
        }
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
            l.take(check_name(&u.name, &u.origin, "uplink name"));
            if l.take(check_name(&u.dev, &u.origin, "dev")).is_none() {
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
        if let Some(rtt) = self.health.max_rtt
            && rtt >= self.health.timeout
            && !l.refused.contains("health_timeout")
        {
            l.take(err::<()>(
                l.place("max_rtt", "--max-rtt"),
                format!(
                    "{rtt:?} can never be reached: answers later than the health timeout ({:?}) count as lost",
                    self.health.timeout
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

    /// Checks the settings against the system: interfaces exist and are links wanlb can send
    /// on, uplink addresses and gateways are on their interface's subnet (a point-to-point
    /// link needs no gateway), the LAN has sources to translate, the NAT port range leaves the
    /// kernel's ephemeral ports and the gateway's own services alone, and each forward goes to
    /// a LAN host from a port no service of the gateway holds. Returns each uplink's
    /// interface, kind of link and source address, in order, or every problem found.
    pub fn resolve(&self, system: &SystemFacts) -> Result<Vec<ResolvedUplink>, ConfigErrors> {
        let mut errors = Vec::new();
        let exists = |name: &str| system.interfaces.iter().any(|i| i.name == name);
        let missing_lan: Vec<_> = self.lan.iter().filter(|l| !exists(l)).collect();
        for l in &missing_lan {
            keep(
                &mut errors,
                err::<()>(format!("--lan {l:?}"), "no such interface"),
            );
        }
        // a missing LAN interface has no addresses either: that would only say it again
        let lan_sources = if missing_lan.is_empty() {
            keep(&mut errors, self.lan_sources(&system.interfaces))
        } else {
            None
        };
        let (lo, hi) = self.nat_pool(system);
        let (klo, khi) = system.ephemeral_ports;
        if lo <= khi && klo <= hi {
            keep(
                &mut errors,
                err::<()>(
                    "nat_ports",
                    format!(
                        "{lo}-{hi} overlaps the kernel's ephemeral ports {klo}-{khi} (net.ipv4.ip_local_port_range); choose a range outside it"
                    ),
                ),
            );
        }
        if let Some(s) = system.services.iter().find(|s| (lo..=hi).contains(&s.port)) {
            keep(
                &mut errors,
                err::<()>(
                    "nat_ports",
                    format!(
                        "{lo}-{hi} contains port {}/{}, which a service on this host uses; choose a range without it",
                        s.proto, s.port
                    ),
                ),
            );
        }
        if let Some(port) = self.listen_port_on_uplinks(system)
            && (lo..=hi).contains(&port)
        {
            keep(
                &mut errors,
                err::<()>(
                    "nat_ports",
                    format!(
                        "{lo}-{hi} contains port {port}, where wanlb serves its status (listen {}) on an address the uplinks reach; choose a range without it",
                        self.listen.map_or(String::new(), |l| l.to_string())
                    ),
                ),
            );
        }
        let mut resolved = Vec::new();
        let mut uplink_addrs = Vec::new();
        for u in &self.uplinks {
            if let Some(r) = keep(&mut errors, resolve_uplink(u, system)) {
                uplink_addrs.push((u.name.as_str(), r.addr));
                resolved.push(r);
            }
        }
        // a forward's host is judged against the LAN only when the LAN could be told
        if let Some(lan_sources) = lan_sources {
            self.resolve_forwards(
                &lan_sources,
                &system.interfaces,
                &system.services,
                &uplink_addrs,
                &mut errors,
            );
        }
        if errors.is_empty() {
            Ok(resolved)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The sources wanlb translates: the LAN interfaces' subnets and `lan_nets`.
    pub fn lan_sources(&self, interfaces: &[Interface]) -> Result<Vec<Prefix>, ConfigError> {
        let mut nets: Vec<Prefix> = interfaces
            .iter()
            .filter(|i| self.lan.contains(&i.name))
            .flat_map(|i| i.ipv4.iter())
            .filter_map(|&(addr, len)| Prefix::new(u32::from(addr), len))
            .collect();
        nets.extend(self.lan_nets.iter().copied());
        if nets.is_empty() {
            return err(
                "--lan",
                format!(
                    "{} has no IPv4 address, so no LAN source would be translated: give the LAN's networks with --lan-net CIDR",
                    self.lan.join(", ")
                ),
            );
        }
        Ok(nets)
    }
}

/// Uplink `u`'s interface, its kind of link and source address on the system.
fn resolve_uplink(u: &UplinkSpec, system: &SystemFacts) -> Result<ResolvedUplink, ConfigError> {
    let Some(iface) = system.interfaces.iter().find(|i| i.name == u.dev) else {
        return err(&u.origin, format!("dev {:?}: no such interface", u.dev));
    };
    let Some(link) = LinkKind::of(iface.hardware_type, iface.point_to_point) else {
        return err(
            &u.origin,
            format!(
                "dev {:?}: wanlb sends on Ethernet links and on point-to-point links without a link-layer header (PPP, raw-IP modems, TUN, WireGuard, GRE or IPIP with a remote), not on this one (hardware type {})",
                u.dev, iface.hardware_type
            ),
        );
    };
    let addr = match u.src {
        Some(src) => iface.ipv4.iter().find(|(a, _)| *a == src).copied(),
        None => iface.ipv4.first().copied(),
    };
    let Some((addr, len)) = addr else {
        return match u.src {
            Some(src) => err(
                &u.origin,
                format!("src {src} is not an address of {}", u.dev),
            ),
            None => err(&u.origin, format!("{} has no IPv4 address", u.dev)),
        };
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
                    return err(
                        &u.origin,
                        format!(
                            "gw=auto: the main table has no default route through {} (is its DHCP client done? wanlb follows the route once it has one)",
                            u.dev
                        ),
                    );
                }
            }
        }
    };
    match (link, gateway) {
        (LinkKind::Ethernet, None) => {
            return err(
                &u.origin,
                format!(
                    "gw=IPV4 is missing: {} is an Ethernet link, where the gateway must be named (only a point-to-point link, like PPP, a raw-IP modem or a tunnel, may leave it out)",
                    u.dev
                ),
            );
        }
        (LinkKind::Ethernet, Some(gw)) => {
            let subnet =
                Prefix::new(u32::from(addr), len).expect("kernel prefix lengths are at most 32");
            if !subnet.contains(u32::from(gw)) || gw == addr {
                return err(
                    &u.origin,
                    format!(
                        "gw {gw} is not on {}'s subnet {}/{len}",
                        u.dev,
                        Ipv4Addr::from(subnet.addr()),
                    ),
                );
            }
        }
        (LinkKind::PointToPoint, Some(gw)) if gw == addr => {
            return err(
                &u.origin,
                format!("gw {gw} is {}'s own address, not its peer's", u.dev),
            );
        }
        // the peer of a point-to-point link is reached without its address
        (LinkKind::PointToPoint, _) => {}
    }
    Ok(ResolvedUplink {
        iface: iface.clone(),
        link,
        addr,
        gateway,
    })
}

impl Config {
    /// `None` (auto) or a range, as [`parse_nat_ports`] gives it.
    fn set_nat_ports(&mut self, ports: Option<(u16, u16)>) {
        self.nat_ports_auto = ports.is_none();
        if let Some(range) = ports {
            self.nat_ports = range;
        }
    }

    /// The NAT port pool on this system: as configured, or (`auto`, the default) the largest
    /// range of ports from 1024 up that is clear of the kernel's ephemeral ports and of this
    /// host's services.
    pub fn nat_pool(&self, system: &SystemFacts) -> (u16, u16) {
        if !self.nat_ports_auto {
            return self.nat_ports;
        }
        let services = system.services.iter().map(|s| s.port);
        largest_free_range(
            system.ephemeral_ports,
            services.chain(self.listen_port_on_uplinks(system)),
        )
    }

    /// The port of `listen` if what arrives on an uplink for that port could reach wanlb's
    /// status server (it listens on every address, or on an uplink's): a service of this host
    /// the NAT pool must not hold, which is not listening yet when the pool is chosen. On
    /// loopback (the default) or a LAN address it shares nothing with the NAT ports.
    fn listen_port_on_uplinks(&self, system: &SystemFacts) -> Option<u16> {
        let listen = self.listen?;
        // `[::]` takes IPv4 too (unless v6only); another IPv6 address sees no IPv4 packet
        let ip = match listen.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        let on_uplink = ip.is_some_and(|ip| {
            system
                .interfaces
                .iter()
                .filter(|i| self.uplinks.iter().any(|u| u.dev == i.name))
                .any(|i| i.ipv4.iter().any(|(a, _)| *a == ip))
        });
        (listen.ip().is_unspecified() || on_uplink).then_some(listen.port())
    }

    /// Ports one LAN host may hold per uplink and protocol, for a pool of `pool`.
    pub fn ports_per_host(&self, pool: (u16, u16)) -> u32 {
        let size = u32::from(pool.1 - pool.0) + 1;
        self.max_ports_per_host.unwrap_or((size / 4).max(1))
    }

    /// The engine's limits on a machine with `total_memory` bytes, for the NAT pool of these
    /// settings: as given, else flows by the memory ([`limits::default_max_flows`]), a
    /// sixteenth of them per host, a quarter of the pool per host.
    pub fn limits(&self, total_memory: u64) -> Limits {
        let max_flows = self
            .max_flows
            .unwrap_or_else(|| limits::default_max_flows(total_memory));
        Limits {
            max_flows,
            max_flows_per_host: self
                .max_flows_per_host
                .unwrap_or_else(|| limits::default_max_flows_per_host(max_flows))
                .min(max_flows),
            max_ports_per_host: self.ports_per_host(self.nat_ports),
            max_embryonic_per_forward: self.max_embryonic_per_forward,
        }
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
    pub services: Vec<LocalService>,
    /// The IPv4 default routes of the main table: interface index and gateway.
    pub default_routes: Vec<(u32, Ipv4Addr)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUplink {
    pub iface: Interface,
    pub link: LinkKind,
    pub addr: Ipv4Addr,
    /// The gateway ARP asks for: as given, or with `gw=auto` the interface's default route's.
    pub gateway: Option<Ipv4Addr>,
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

/// Idle timeout `i` (of [`IDLE_TIMEOUTS`]) in milliseconds: a duration from its minimum to
/// [`MAX_IDLE_TIMEOUT`].
fn parse_idle_timeout(i: usize, s: &str, origin: &str) -> Result<u64, ConfigError> {
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
    Ok(u64::try_from(d.as_millis()).expect("at most a week"))
}

impl Config {
    fn apply_file_timeouts(&mut self, file: &FileTimeouts, at: &At<'_>, l: &mut Loading) {
        for (i, value) in file.values().into_iter().enumerate() {
            if let Some(v) = value {
                let key = format!("timeouts.{}", IDLE_TIMEOUTS[i].key);
                if let Some(ms) = at.parse(l, v, &key, |s, o| parse_idle_timeout(i, s, o)) {
                    *timeout_fields(&mut self.timeouts)[i] = ms;
                }
            }
        }
    }

    fn apply_timeout_flags(&mut self, flags: &TimeoutFlags, l: &mut Loading) {
        for (i, value) in flags.values().into_iter().enumerate() {
            let t = &IDLE_TIMEOUTS[i];
            if let Some(ms) = flag(l, value, t.flag, t.key, |s, o| parse_idle_timeout(i, s, o)) {
                *timeout_fields(&mut self.timeouts)[i] = ms;
            }
        }
    }
}

mod forward;
mod listen;
mod reload;

pub use forward::{ForwardProto, ForwardSpec, parse_forward_flag};
pub use reload::Reload;

#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
