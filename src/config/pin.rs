//! Pins: `--pin CIDR=UPLINK[!]` and `[[pin]]` in the file.

use serde::Deserialize;
use toml::Spanned;

use super::declare::{Changes, ReloadClass, ReloadContext, Row, Table, Tables};
use super::load::{At, Loading};
use super::net::{Cidr, parse_cidr};
use super::{ConfigError, err};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSpec {
    pub prefix: Cidr,
    pub uplink: String,
    /// Refuse the traffic while the uplink is down instead of sending it elsewhere.
    pub strict: bool,
    pub origin: String,
}

/// As the flag writes it: `174.143.119.91/32=isp2!`.
impl std::fmt::Display for PinSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}{}",
            self.prefix,
            self.uplink,
            if self.strict { "!" } else { "" }
        )
    }
}

/// `CIDR=UPLINK`, or `CIDR=UPLINK!` for a strict pin.
pub fn parse_pin_flag(spec: &str) -> Result<PinSpec, ConfigError> {
    from_flag("--pin", spec)
}

fn from_flag(flag: &str, spec: &str) -> Result<PinSpec, ConfigError> {
    let origin = format!("{flag} {spec:?}");
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
        prefix: parse_cidr(cidr.trim(), &origin)?,
        uplink: uplink.to_string(),
        strict,
        origin,
    })
}

/// `[[pin]]` in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePin {
    dst: Spanned<String>,
    uplink: Spanned<String>,
    strict: Option<Spanned<bool>>,
}

impl Table for PinSpec {
    type File = FilePin;
    const VALUE_NAME: &'static str = "CIDR=UPLINK[!]";

    fn help() -> String {
        "Always send destinations in CIDR (IPv4 or IPv6) through UPLINK, e.g. \
         174.143.119.91/32=isp2 (repeatable; the longest prefix wins). While UPLINK is down they use the other lines; \
         with a trailing ! (CIDR=UPLINK!) they are refused with ICMP unreachable instead."
            .into()
    }

    fn apply_file(
        t: &Tables<Self>,
        list: &mut Vec<Self>,
        file: &[FilePin],
        at: &At<'_>,
        l: &mut Loading,
    ) {
        for p in file {
            let dst = format!("[[{}]] dst", t.key);
            let prefix = at.parse(l, &p.dst, &dst, |s, o| parse_cidr(s, o));
            let origin = at.origin(l, &p.uplink, &format!("[[{}]] uplink", t.key));
            if let Some(prefix) = prefix {
                list.push(PinSpec {
                    prefix,
                    uplink: p.uplink.get_ref().clone(),
                    strict: p.strict.as_ref().is_some_and(|s| *s.get_ref()),
                    origin,
                });
            }
        }
    }

    /// A flag replaces the file's pin of the same prefix.
    fn apply_flags(t: &Tables<Self>, list: &mut Vec<Self>, flags: &[String], l: &mut Loading) {
        for spec in flags {
            if let Some(p) = l.take(from_flag(t.flag, spec)) {
                list.retain(|x| x.prefix != p.prefix);
                list.push(p);
            }
        }
    }

    /// The new pins apply at once, but for those to an uplink not running: until the restart,
    /// their prefix keeps the pin it runs with, if any (a strict pin must not lapse into the
    /// weighted choice).
    fn reload(running: &mut Vec<Self>, new: &[Self], ctx: &ReloadContext, c: &mut Changes) {
        let (mut pins, unknown): (Vec<_>, Vec<_>) = new
            .iter()
            .cloned()
            .partition(|p| ctx.running_uplinks.contains(&p.uplink));
        for p in unknown {
            let kept = running.iter().find(|old| old.prefix == p.prefix).cloned();
            c.need_restart.push(format!(
                "{}: pin to {}, which is not running: restart wanlb to add the uplink{}",
                p.origin,
                p.uplink,
                kept.as_ref().map_or(String::new(), |k| format!(
                    " (until then it stays on {})",
                    k.uplink
                ))
            ));
            pins.extend(kept);
        }
        let shown =
            |pins: &[PinSpec]| -> Vec<String> { pins.iter().map(ToString::to_string).collect() };
        let (before, after) = (shown(running), shown(&pins));
        if before != after {
            c.applied.push(format!("pins: {before:?} -> {after:?}"));
        }
        *running = pins;
    }

    fn rows(t: &Tables<Self>) -> Vec<Row> {
        let key = t.key;
        vec![
            Row {
                key: format!("[[{key}]] dst, uplink"),
                flag: format!("{} CIDR=UPLINK", t.flag),
                repeatable: true,
                default: "none".into(),
                doc: "destinations always sent through that line (longest prefix wins)".into(),
                reload: Some(ReloadClass::Applied),
            },
            Row {
                key: format!("[[{key}]] strict"),
                flag: format!("{} CIDR=UPLINK!", t.flag),
                repeatable: true,
                default: "false".into(),
                doc: "while the line is down, refuse them (ICMP unreachable) instead of using another".into(),
                reload: Some(ReloadClass::Applied),
            },
        ]
    }
}
