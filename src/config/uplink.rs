//! The uplinks: `[[uplink]]` in the file and `--uplink NAME,KEY=VALUE,...` on the command
//! line, each key declared once for both. A new key of an uplink is one declaration in
//! `spec_keys!` below and the code that uses it.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::engine::failback::FailbackMode;
use crate::metered::{CapReset, OnCap};

use super::declare::{Changes, ReloadContext, Row, Table, Tables};
use super::load::{At, Loading};
use super::metered::{
    ByteSize, parse_cap, parse_cap_reset, parse_cap_warn, parse_failback, parse_on_cap,
};
use super::parse::parse_bounded;
use super::parse::{parse_ipv4, parse_target, parse_tier, parse_weight, targets};
use super::spec::spec_keys;
use super::values::Value;
use super::{ConfigError, ConfigErrors, err};

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

impl Value for GatewaySpec {
    fn written(&self) -> Option<String> {
        Some(self.to_string())
    }
}

fn parse_gateway(s: &str, origin: &str) -> Result<GatewaySpec, ConfigError> {
    if s == "auto" {
        return Ok(GatewaySpec::Auto);
    }
    parse_ipv4(s, origin, "gw").map(GatewaySpec::Address)
}

spec_keys! {
    /// An uplink as the settings give it.
    pub struct UplinkSpec in "uplink" { file: FileUplink }

    /// the interface.
    required dev: String {
        value: "IFACE",
        parse: |s, _| Ok(s.to_string()),
        reload: Restart,
        doc: "its interface",
    }

    /// the gateway: required on an Ethernet link (auto: the gateway of dev's default route,
    /// as a DHCP client installs it, followed when it changes); a point-to-point link
    /// without a link-layer header (ppp0, an LTE modem's raw-IP wwan0, a tunnel) needs none.
    one gw: Option<GatewaySpec> {
        value: "IPV4|auto",
        file: text,
        default: (None, "(required on Ethernet)"),
        parse: |s, o| parse_gateway(s, o).map(Some),
        reload: Restart,
        doc: "its router's address, on `dev`'s subnet; `auto`: the gateway of `dev`'s default route in the main table, as a DHCP client installs it, followed when it changes; on a point-to-point link (PPP, raw-IP modem, tunnel) none is needed, and one given is only shown in the status",
    }

    /// its share of new destinations within its tier.
    one weight: u32 {
        value: "N",
        file: number,
        default: "1",
        parse: parse_weight,
        reload: Applied,
        doc: "share of new destinations within its tier (2 and 1: two thirds and one third)",
    }

    /// new flows use the healthy uplinks of the lowest tier that has one (1 is the best).
    one tier: u8 {
        value: "N",
        file: number,
        default: "1",
        parse: parse_tier,
        reload: Applied,
        doc: "a line carries traffic only while every line of a lower tier is down (a 3G/4G backup: 2)",
    }

    /// a health target for this uplink only, replacing --health-target (repeatable).
    list check: Option<Vec<Ipv4Addr>> {
        value: "IPV4",
        default: "health_target",
        parse: parse_target,
        merge: targets,
        reload: Applied,
        doc: "health targets for this line only",
    }

    /// the address used: one of dev's, whatever it becomes.
    one src: Option<Ipv4Addr> {
        value: "IPV4",
        file: text,
        default: (None, "first IPv4 address of dev"),
        parse: |s, o| parse_ipv4(s, o, "src").map(Some),
        reload: Restart,
        doc: "the address its traffic is translated to",
    }

    /// time between its probe rounds, replacing --health-interval (probe a metered line
    /// less often).
    one interval: Option<Duration> {
        value: "DURATION",
        file: text,
        default: (None, "health_interval"),
        parse: |s, o| parse_bounded(s, o, Duration::from_millis(10), Duration::from_secs(60)).map(Some),
        reload: Applied,
        doc: "time between this line's probe rounds (a metered line probed less often: see [Metered lines](#metered-lines))",
    }

    /// the data its plan allows per period (500MB, 30GB, 1TB; KiB, MiB, GiB, TiB).
    one cap: Option<ByteSize> {
        value: "SIZE",
        file: text,
        default: (None, "none"),
        parse: |s, o| parse_cap(s, o).map(Some),
        reload: Applied,
        doc: "the data its plan allows per period, IP bytes both ways (`500MB`, `30GB`, `1TB`; SI units, or `KiB` to `TiB`)",
    }

    /// the day of the month its count starts again, at local midnight (1-28), or never
    /// (prepaid: `wanlb cap reset` starts a new bucket).
    one cap_reset: CapReset {
        value: "DAY|never",
        file: number,
        default: "1",
        parse: parse_cap_reset,
        reload: Applied,
        doc: "the day of the month (1 to 28) its count starts again at local midnight; `never`: prepaid, started again by `wanlb cap reset`",
    }

    /// what happens once the cap is reached: backup (ranked below every line under its
    /// cap), off (out of service as if down) or warn (only tell).
    one on_cap: OnCap {
        value: "backup|off|warn",
        file: text,
        default: "backup",
        parse: parse_on_cap,
        reload: Applied,
        doc: "at the cap: `backup`: below every line under its cap, whatever the tiers, new flows only while none of those is up, what runs keeps running; `off`: out of service as if down; `warn`: only tell",
    }

    /// the percentage of the cap at which to warn (the hook, the log).
    one cap_warn: u8 {
        value: "PERCENT",
        file: number,
        default: "80",
        parse: parse_cap_warn,
        reload: Applied,
        doc: "percent of the cap at which the hook and the log warn",
    }

    /// what its TCP connections do once a better line is back: keep (finish here) or move
    /// (reset after failback_grace, so applications reconnect through the better line).
    one failback: Option<FailbackMode> {
        value: "keep|move",
        file: text,
        default: (None, "move with a cap, keep without"),
        parse: |s, o| parse_failback(s, o).map(Some),
        reload: Applied,
        doc: "once a better line is back: `keep`: its TCP connections finish here; `move`: they are reset after `failback_grace`, so applications reconnect through the better line (UDP, ping and destinations move back either way)",
    }

    /// how long a better line must have been up before failback=move resets its TCP.
    one failback_grace: Option<Duration> {
        value: "DURATION",
        file: text,
        default: (None, "failback_grace"),
        parse: |s, o| {
            let (min, max) = super::metered::FAILBACK_GRACE;
            parse_bounded(s, o, min, max).map(Some)
        },
        reload: Applied,
        doc: "how long the better line must have been up, without a break, before `failback=move` resets",
    }
}

/// The SPEC, as `--help` and errors show it.
fn grammar() -> String {
    format!("NAME{}", UplinkSpec::key_grammar())
}

/// `NAME,dev=IFACE[,gw=IPV4|auto]...`, with every error in it. Whether `gw` may be left out
/// depends on the interface: see `crate::preflight`.
pub fn parse_uplink_flag(spec: &str) -> Result<UplinkSpec, ConfigErrors> {
    from_flag("--uplink", spec)
}

fn from_flag(flag: &str, spec: &str) -> Result<UplinkSpec, ConfigErrors> {
    let origin = format!("{flag} {spec:?}");
    let Some(name) = flag_name(spec) else {
        return Err(ConfigError {
            origin,
            message: format!("must start with the uplink's name: {}", grammar()),
        }
        .into());
    };
    let mut errors = Vec::new();
    let mut pairs = Vec::new();
    for part in spec.split(',').skip(1) {
        let Some((k, v)) = part.split_once('=') else {
            errors.push(ConfigError {
                origin: origin.clone(),
                message: format!("{part:?} is not KEY=VALUE"),
            });
            continue;
        };
        let k = k.trim();
        if UplinkSpec::KEYS.contains(&k) {
            pairs.push((k, v.trim()));
        } else {
            let keys = UplinkSpec::KEYS;
            let (last, rest) = keys.split_last().expect("uplinks have keys");
            errors.push(ConfigError {
                origin: origin.clone(),
                message: format!("unknown key {k:?} (expected {} or {last})", rest.join(", ")),
            });
        }
    }
    let uplink = UplinkSpec::from_pairs(name, &pairs, origin, &mut errors);
    match uplink {
        Some(u) if errors.is_empty() => Ok(u),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The name an uplink flag starts with, if it starts with one.
fn flag_name(spec: &str) -> Option<&str> {
    let name = spec.split(',').next().unwrap_or("").trim();
    (!name.is_empty() && !name.contains('=')).then_some(name)
}

impl Table for UplinkSpec {
    type File = FileUplink;
    const VALUE_NAME: &'static str = "SPEC";

    fn help() -> String {
        let keys: Vec<String> = UplinkSpec::key_help()
            .into_iter()
            .map(|(key, help)| format!("\n  {key}: {help}"))
            .collect();
        format!(
            "An uplink: {} (repeatable; a name from the file is overridden){}",
            grammar(),
            keys.concat()
        )
    }

    fn apply_file(
        t: &Tables<Self>,
        list: &mut Vec<Self>,
        file: &[FileUplink],
        at: &At<'_>,
        l: &mut Loading,
    ) {
        let mut names = HashSet::new();
        for (i, u) in file.iter().enumerate() {
            let name = u.name.get_ref();
            let origin = at.origin(l, &u.name, &format!("[[{}]] #{}", t.key, i + 1));
            // unique within the file; flags may then override one by name
            if !names.insert(name) {
                l.take(err::<()>(
                    &origin,
                    format!("uplink name {name:?} is used twice"),
                ));
                continue;
            }
            let key = |k: &str| format!("{} {name:?} {k}", t.key);
            match UplinkSpec::from_table(u, origin, key, at, l) {
                Some(uplink) => list.push(uplink),
                None => l.refused_uplinks.push(name.clone()),
            }
        }
    }

    fn apply_flags(t: &Tables<Self>, list: &mut Vec<Self>, flags: &[String], l: &mut Loading) {
        let mut named = HashSet::new();
        for spec in flags {
            match from_flag(t.flag, spec) {
                Ok(u) if !named.insert(u.name.clone()) => {
                    let message = format!("uplink name {:?} is given twice", u.name);
                    l.take(err::<()>(&u.origin, message));
                }
                Ok(u) => match list.iter_mut().find(|x| x.name == u.name) {
                    Some(existing) => *existing = u,
                    None => list.push(u),
                },
                Err(errors) => {
                    l.errors.extend(errors.0);
                    let name = flag_name(spec).unwrap_or_default();
                    l.refused_uplinks.push(name.to_string());
                }
            }
        }
    }

    /// Each running uplink takes what a reload applies of its namesake; an uplink added or
    /// removed waits for a restart.
    fn reload(running: &mut Vec<Self>, new: &[Self], _: &ReloadContext, c: &mut Changes) {
        for u in running.iter_mut() {
            match new.iter().find(|n| n.name == u.name) {
                Some(n) => u.reload_keys(n, c),
                None => c.need_restart.push(format!(
                    "uplink {} is no longer in the settings: restart wanlb to remove it",
                    u.name
                )),
            }
        }
        for n in new {
            if !running.iter().any(|u| u.name == n.name) {
                c.need_restart
                    .push(format!("uplink {} is new: restart wanlb to add it", n.name));
            }
        }
    }

    fn rows(t: &Tables<Self>) -> Vec<Row> {
        let mut rows = vec![Row {
            key: format!("[[{}]] name", t.key),
            flag: format!("{} NAME,...", t.flag),
            repeatable: true,
            default: "(at least one)".into(),
            doc: "the line's name in logs, pins, status and metrics; adding or removing a line waits for a restart".into(),
            reload: None,
        }];
        rows.extend(UplinkSpec::key_rows());
        rows
    }
}
