//! Value parsers: text (a flag's value, or the file's) to a typed value, with an error naming
//! where the text came from (`origin`). None panics, whatever the text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use super::values::{FastPathMode, HostTraffic, OnUplinkDown, Steering};
use super::{ConfigError, err};
use crate::engine::UdpAffinity;
use crate::engine::select::Prefix;

pub const MAX_WEIGHT: u32 = 1000;
pub const MAX_TIER: u8 = 9;
/// Table entries keep 32-bit millisecond stamps, good for ages up to 24 days.
pub const MAX_AFFINITY: Duration = Duration::from_secs(86400);
/// Table entries keep 32-bit millisecond stamps: an idle timeout stays far below their 24 days.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 86400);
/// Health targets per uplink (each round sends one probe to each).
pub const MAX_TARGETS: usize = 16;

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

pub fn parse_tier(s: &str, origin: &str) -> Result<u8, ConfigError> {
    parse_count(s, origin, 1, u32::from(MAX_TIER)).map(|t| t as u8)
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

/// A duration between `min` and `max`.
pub fn parse_bounded(
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
pub fn parse_count(s: &str, origin: &str, lo: u32, hi: u32) -> Result<u32, ConfigError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => err(
            origin,
            format!("must be a whole number from {lo} to {hi}, got {s:?}"),
        ),
    }
}

/// `20` or `20%`: a loss percentage from 1 to 99.
pub fn parse_loss(s: &str, origin: &str) -> Result<u32, ConfigError> {
    parse_count(s.trim().trim_end_matches('%'), origin, 1, 99)
}

pub fn parse_affinity(s: &str, origin: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(s, origin)?;
    if d > MAX_AFFINITY {
        return err(origin, "the affinity timeout can be at most 1d");
    }
    Ok(d)
}

/// An idle timeout in `[timeouts]`: at least `min` (`why`: the RFC that requires it; wanlb
/// refuses less rather than let a quiet connection or call lose its mapping early), at most
/// [`MAX_IDLE_TIMEOUT`].
pub fn parse_idle_timeout(
    s: &str,
    origin: &str,
    min: Duration,
    why: &str,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(s, origin)?;
    if d < min {
        return err(
            origin,
            format!(
                "must be at least {} ({why}), got {s:?}",
                format_duration(min)
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
    Ok(d)
}

/// `ADDR:PORT`, or `off`.
pub fn parse_listen(s: &str, origin: &str) -> Result<Option<SocketAddr>, ConfigError> {
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

pub fn parse_command(s: &str, origin: &str) -> Result<String, ConfigError> {
    if s.trim().is_empty() {
        return err(origin, "the command is empty");
    }
    Ok(s.to_string())
}

pub fn parse_token(s: &str, origin: &str) -> Result<String, ConfigError> {
    if s.trim().is_empty() {
        return err(origin, "the token is empty");
    }
    Ok(s.to_string())
}

/// `0` (off) or a duration up to 1s.
pub fn parse_busy_poll(s: &str, origin: &str) -> Result<Duration, ConfigError> {
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
pub fn parse_nat_ports(s: &str, origin: &str) -> Result<Option<(u16, u16)>, ConfigError> {
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

pub fn parse_fast_path_mode(s: &str, origin: &str) -> Result<FastPathMode, ConfigError> {
    match s {
        "auto" => Ok(FastPathMode::Auto),
        "on" => Ok(FastPathMode::On),
        "off" => Ok(FastPathMode::Off),
        _ => err(origin, "offload must be auto, on or off"),
    }
}

pub fn parse_steering(s: &str, origin: &str) -> Result<Steering, ConfigError> {
    match s {
        "cpu" => Ok(Steering::Cpu),
        "flow" => Ok(Steering::Flow),
        _ => err(origin, "steer must be flow or cpu"),
    }
}

pub fn parse_on_uplink_down(s: &str, origin: &str) -> Result<OnUplinkDown, ConfigError> {
    match s {
        "reset" | "rst" => Ok(OnUplinkDown::Reset),
        "keep" => Ok(OnUplinkDown::Keep),
        _ => err(origin, "must be reset (the default) or keep"),
    }
}

pub fn parse_host_traffic(s: &str, origin: &str) -> Result<HostTraffic, ConfigError> {
    match s.trim() {
        "off" => Ok(HostTraffic::Off),
        "follow" => Ok(HostTraffic::Follow),
        _ => err(origin, "must be off (the default) or follow"),
    }
}

pub fn parse_udp_affinity(s: &str, origin: &str) -> Result<UdpAffinity, ConfigError> {
    match s.trim() {
        "endpoint" => Ok(UdpAffinity::Endpoint),
        "destination" => Ok(UdpAffinity::Destination),
        _ => err(origin, "must be endpoint (the default) or destination"),
    }
}

/// A name the kernel takes for an interface: 1 to 15 letters, digits, `-`, `_` or `.`, and
/// not `.` or `..` (`what` names it in the error).
pub fn check_name(name: &str, origin: &str, what: &str) -> Result<(), ConfigError> {
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

/// A LAN interface's name.
pub fn parse_interface(s: &str, origin: &str) -> Result<String, ConfigError> {
    check_name(s, origin, "interface").map(|()| s.to_string())
}

/// The TUN device's name.
pub fn parse_tun(s: &str, origin: &str) -> Result<String, ConfigError> {
    check_name(s, origin, "TUN name").map(|()| s.to_string())
}

/// A health target: an address that answers ping (ICMP echo, or ICMPv6 echo for an IPv6
/// one), beyond the uplink's gateway.
pub fn parse_target(s: &str, origin: &str) -> Result<IpAddr, ConfigError> {
    let s = s.trim();
    if s.contains(':') {
        let a = super::net::parse_ipv6(s, origin, "health target")?;
        if !super::net::is_routable_unicast6(a) {
            return err(
                origin,
                format!(
                    "health target {a} must be a global or unique-local unicast address beyond the gateway (not link-local, multicast, loopback or IPv4-mapped)"
                ),
            );
        }
        return Ok(IpAddr::V6(a));
    }
    let a = parse_ipv4(s, origin, "health target")?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return err(
            origin,
            format!("health target {a} must be a unicast address beyond the gateway"),
        );
    }
    Ok(IpAddr::V4(a))
}

/// Health targets from one place (the file, or the flags) replace those before; one listed
/// twice, and one beyond [`MAX_TARGETS`] of its family, is refused.
pub fn targets(
    list: &mut Vec<IpAddr>,
    given: Vec<(IpAddr, String)>,
    errors: &mut Vec<ConfigError>,
) {
    list.clear();
    for (target, origin) in given {
        let same_family = list.iter().filter(|t| t.is_ipv4() == target.is_ipv4());
        if list.contains(&target) {
            errors.push(ConfigError {
                origin,
                message: format!("health target {target} is listed twice"),
            });
        } else if same_family.count() == MAX_TARGETS {
            errors.push(ConfigError {
                origin,
                message: format!("at most {MAX_TARGETS} health targets of each family per uplink"),
            });
            break;
        } else {
            list.push(target);
        }
    }
}
