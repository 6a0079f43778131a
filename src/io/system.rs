//! Routes, rules, sysctls and the nftables table wanlb adds (each journaled first: see
//! [`super::journal`]). Changes go through `ip` and `nft -j` with fixed arguments; their
//! output is never parsed.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{program}`: {source} (is it installed?)")]
    Spawn { program: String, source: io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(
        "another wanlb is running in this network namespace (it holds {0}); stop it first (one wanlb runs per network namespace)"
    )]
    Busy(PathBuf),
    #[error(
        "{count} change(s) could not be undone (see the log above); kept in {journal}, one command a line: `wanlb cleanup` tries them again"
    )]
    UndoKept { count: usize, journal: PathBuf },
    #[error(
        "the state directory {dir} is not safe for undo journals, which hold commands wanlb runs as root: {why}; use a directory only the user running wanlb can write (--state-dir; the default /run/wanlb)"
    )]
    StateDir { dir: PathBuf, why: String },
}

impl SystemError {
    /// Whether an undo failed only because what it removes is not there any more: it went
    /// with the TUN device, or someone removed it. `ip` and `nft` then print the kernel's
    /// ENOENT, ESRCH or ENODEV (or, with extended errors, that the table "does not exist");
    /// a sysctl file of an interface that is gone is not found.
    pub fn is_already_gone(&self) -> bool {
        match self {
            SystemError::Command { stderr, .. } => [
                "No such file or directory",
                "No such process",
                "No such device",
                "Cannot find device",
                "does not exist",
            ]
            .iter()
            .any(|gone| stderr.contains(gone)),
            SystemError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SystemError {
    let what = what.into();
    move |source| SystemError::Io { what, source }
}

/// Runs `program args...`, feeding `stdin` if given.
pub fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<(), SystemError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SystemError::Spawn {
            program: program.into(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(io_err(format!("writing to `{command}`")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("waiting for `{command}`")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SystemError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The words of a command line with fixed arguments, none with a space in it.
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The file of sysctl `key`, written as sysctl(8) takes it: with dots between the parts
/// (`net.ipv4.ip_forward`), or, when a part holds a dot (an interface named `wan.0`), with
/// slashes (`net/ipv4/conf/wan.0/rp_filter`, see [`interface_sysctl`]).
pub fn sysctl_path(key: &str) -> PathBuf {
    if key.contains('/') {
        Path::new("/proc/sys").join(key)
    } else {
        Path::new("/proc/sys").join(key.replace('.', "/"))
    }
}

/// The key of sysctl `name` of interface `dev` for IPv4 (`net.ipv4.conf.DEV.NAME`), with
/// slashes, which an interface name with a dot needs.
pub fn interface_sysctl(dev: &str, name: &str) -> String {
    format!("net/ipv4/conf/{dev}/{name}")
}

/// The comments of the counted drop rules in the forward chain of wanlb's table.
const FROM_UPLINK: &str = "from an uplink";
const IPV6_FROM_LAN: &str = "IPv6 from the LAN to an uplink";
const IPV6_TO_LAN: &str = "IPv6 from an uplink to the LAN";

/// What the forward chain of wanlb's table dropped so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardDrops {
    /// IPv4 an uplink sent to be forwarded, which answered nothing the LAN opened.
    pub from_uplink: u64,
    /// IPv6 between the LAN and an uplink, either way (wanlb translates IPv4 only).
    pub ipv6: u64,
}

/// The drop counters of the forward chain of wanlb's table `table`, read from `nft -j`
/// (JSON, not the text meant for people).
pub fn forward_drops(table: &str) -> Result<ForwardDrops, SystemError> {
    let command = format!("nft -j list chain inet {table} forward");
    let out = Command::new("nft")
        .args(["-j", "list", "chain", "inet", table, "forward"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SystemError::Spawn {
            program: "nft".into(),
            source,
        })?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| SystemError::Command {
            command: command.clone(),
            stderr: format!("{e}: {}", String::from_utf8_lossy(&out.stderr)),
        })?;
    let packets = |comment: &str| {
        parsed["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["rule"]["comment"] == comment)
            .flat_map(|item| item["rule"]["expr"].as_array().cloned().unwrap_or_default())
            .find_map(|expr| expr["counter"]["packets"].as_u64())
            .ok_or(SystemError::Command {
                command: command.clone(),
                stderr: format!("no counter on the rule {comment:?}"),
            })
    };
    Ok(ForwardDrops {
        from_uplink: packets(FROM_UPLINK)?,
        ipv6: packets(IPV6_FROM_LAN)? + packets(IPV6_TO_LAN)?,
    })
}

pub fn read_sysctl(key: &str) -> Result<String, SystemError> {
    fs::read_to_string(sysctl_path(key))
        .map(|s| s.trim().to_string())
        .map_err(io_err(format!("reading sysctl {key}")))
}

/// The machine's memory in bytes (MemTotal in /proc/meminfo), which sizes the flow table
/// unless it is given.
pub fn total_memory() -> Result<u64, SystemError> {
    let meminfo = fs::read_to_string("/proc/meminfo").map_err(io_err("reading /proc/meminfo"))?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| {
            io_err("reading /proc/meminfo")(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no MemTotal line in kB",
            ))
        })
}

pub fn write_sysctl(key: &str, value: &str) -> Result<(), SystemError> {
    fs::write(sysctl_path(key), value).map_err(io_err(format!("setting sysctl {key}={value}")))
}

/// Replaces wanlb's table `name`, made with [`Plumbing::nft_table`] (whose undo still
/// removes it), by `batch_json`, in one transaction: no packet sees it half made. Its
/// counters start again from 0.
pub fn replace_nft_table(name: &str, batch_json: &str) -> Result<(), SystemError> {
    let mut batch: serde_json::Value = serde_json::from_str(batch_json)
        .map_err(|e| io_err("wanlb's own nftables batch".to_string())(io::Error::other(e)))?;
    if let Some(items) = batch["nftables"].as_array_mut() {
        items.insert(
            0,
            serde_json::json!({"delete": {"table": {"family": "inet", "name": name}}}),
        );
    }
    run("nft", &words("-j -f -"), Some(&batch.to_string()))
}

/// The mark wanlb's nftables table puts on what wanlb writes to its TUN device, so that the
/// reverse-path check of those packets takes the route back through the TUN device (an ip
/// rule for the mark; `src_valid_mark` on the device).
pub const TUN_MARK: u32 = 0x7100;

/// A port forward as wanlb's table sees it: `proto` (`tcp` or `udp`) `port` of the address of
/// uplink `uplink` (an index into the uplinks), whose connections go to `to` in the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableForward {
    pub uplink: usize,
    pub proto: &'static str,
    pub port: u16,
    pub to: SocketAddrV4,
}

/// nftables JSON for wanlb's table:
/// - prerouting, before conntrack: what arrives on an uplink for a forwarded port, or for
///   wanlb's NAT ports, is dropped (wanlb reads those frames from its packet sockets, and the
///   kernel must not answer them with a reset or a port unreachable), for NAT ports unless a
///   socket of this host has the port (its own resolver's answers, a service started later);
///   what arrives from the TUN device is marked (see [`TUN_MARK`]); wanlb's own traffic, from
///   the LAN to anywhere the kernel does not route itself (`kernel_routed`: the subnets of
///   this host's interfaces) and from the TUN device, stays out of conntrack, which wanlb does
///   the work of;
/// - hairpinning (RFC 4787 REQ-9), with `forwards` only: a LAN host's connection to a
///   forwarded port of an uplink's address, which the kernel would deliver to itself, is sent
///   on to the forward's LAN host (DNAT) from that uplink's address (SNAT), so the server
///   sees the address the internet sees and its answers come back through the gateway to be
///   translated back. The kernel routes and tracks these: they are LAN to LAN, and the uplink
///   addresses are among `kernel_routed`;
/// - forward: what an uplink sends to be forwarded is dropped, and counted, unless it answers
///   a connection the LAN opened through the kernel on an uplink (to the modem's own subnet):
///   the front door. Replies to wanlb's flows, and connections to forwarded ports, reach the
///   LAN through the TUN device or the fast path, never forwarded from an uplink;
/// - forward, IPv6: between the LAN and the uplinks, either way, dropped and counted. wanlb
///   translates IPv4 only, and a gateway with IPv6 forwarding on would otherwise pass the
///   LAN's IPv6 natively, unfiltered. The gateway's own IPv6 (neighbour discovery, router
///   advertisements, its own connections) is not forwarded and passes; so does IPv6 between
///   LAN interfaces.
///
/// The table is of the `inet` family, for that last chain; every other rule is for IPv4 only
/// (explicitly, or by its IPv4 address match). It is kernel state: after a crash it stays, and
/// IPv6 stays closed, until the next start or `wanlb cleanup` removes it.
pub fn guard_table_json(
    table: &str,
    tun: &str,
    lans: &[String],
    kernel_routed: &[(Ipv4Addr, u8)],
    uplinks: &[(String, Ipv4Addr)],
    ports: (u16, u16),
    forwards: &[TableForward],
) -> String {
    use serde_json::{Value, json};
    let devs: Vec<&str> = uplinks.iter().map(|(d, _)| d.as_str()).collect();
    let lan_names: Vec<&str> = lans.iter().map(String::as_str).collect();
    let iifname = |names: &[&str]| json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": {"set": names}}});
    let rule = |chain: &str, expr: Value| json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}});
    let typed_chain = |kind: &str, name: &str, hook: &str, prio: i32| {
        json!({"add": {"chain": {"family": "inet", "table": table, "name": name, "type": kind,
            "hook": hook, "prio": prio, "policy": "accept"}}})
    };
    let chain = |name: &str, hook: &str, prio: i32| typed_chain("filter", name, hook, prio);
    let daddr = |addr: &Ipv4Addr| {
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": addr.to_string()}})
    };
    let l4proto = |proto: Value| json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto}});
    let family = |name: &str| json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": name}});
    let oifname = |names: &[&str]| json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": names}}});
    let counted_drop = |expr: Vec<Value>, comment: &str| {
        let mut expr = expr;
        expr.extend([
            json!({"counter": {"packets": 0, "bytes": 0}}),
            json!({"drop": null}),
        ]);
        let mut rule = rule("forward", Value::Array(expr));
        rule["add"]["rule"]["comment"] = json!(comment);
        rule
    };
    let dport = |port: Value| {
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
            "right": port}})
    };
    let routed: Vec<Value> = kernel_routed
        .iter()
        .map(|(addr, len)| json!({"prefix": {"addr": addr.to_string(), "len": len}}))
        .collect();
    let mut items = vec![
        json!({"add": {"table": {"family": "inet", "name": table}}}),
        json!({"add": {"set": {"family": "inet", "table": table, "name": "kernel_routed",
            "type": "ipv4_addr", "flags": ["interval"], "elem": routed}}}),
        chain("prerouting", "prerouting", -300),
    ];
    for (i, (dev, addr)) in uplinks.iter().enumerate() {
        // a forwarded port is the LAN host's, whatever socket the gateway has on it
        for proto in ["tcp", "udp"] {
            let forwarded: Vec<u16> = forwards
                .iter()
                .filter(|f| f.uplink == i && f.proto == proto)
                .map(|f| f.port)
                .collect();
            if !forwarded.is_empty() {
                items.push(rule(
                    "prerouting",
                    json!([iifname(&[dev.as_str()]), daddr(addr), l4proto(json!(proto)),
                        dport(json!({"set": forwarded})), {"drop": null}]),
                ));
            }
        }
        let nat_port = vec![
            iifname(&[dev.as_str()]),
            daddr(addr),
            l4proto(json!({"set": ["tcp", "udp"]})),
            dport(json!({"range": [ports.0, ports.1]})),
        ];
        let mut host_socket = nat_port.clone();
        host_socket.push(
            json!({"match": {"op": "==", "left": {"socket": {"key": "transparent"}}, "right": 0}}),
        );
        host_socket.push(json!({"accept": null}));
        items.push(rule("prerouting", Value::Array(host_socket)));
        let mut drop = nat_port;
        drop.push(json!({"drop": null}));
        items.push(rule("prerouting", Value::Array(drop)));
    }
    items.extend(hairpin_rules(table, lans, uplinks, ports, forwards));
    items.push(rule(
        "prerouting",
        json!([iifname(&[tun]), family("ipv4"),
            {"mangle": {"key": {"meta": {"key": "mark"}}, "value": TUN_MARK}},
            {"notrack": null}]),
    ));
    items.push(rule(
        "prerouting",
        json!([iifname(&lan_names),
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                "right": "@kernel_routed"}},
            {"notrack": null}]),
    ));
    if !forwards.is_empty() {
        items.push(typed_chain("nat", "hairpin", "prerouting", -100));
        for f in forwards {
            let (_, addr) = &uplinks[f.uplink];
            items.push(rule(
                "hairpin",
                json!([iifname(&lan_names), daddr(addr), l4proto(json!(f.proto)),
                    dport(json!(f.port)),
                    {"dnat": {"family": "ip", "addr": f.to.ip().to_string(), "port": f.to.port()}}]),
            ));
        }
        items.push(typed_chain("nat", "hairpin_source", "postrouting", 100));
        let mut hairpinned: Vec<usize> = forwards.iter().map(|f| f.uplink).collect();
        hairpinned.sort_unstable();
        hairpinned.dedup();
        for i in hairpinned {
            let (_, addr) = &uplinks[i];
            items.push(rule(
                "hairpin_source",
                json!([family("ipv4"), iifname(&lan_names),
                    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": lan_names}}},
                    {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}},
                        "right": addr.to_string()}},
                    {"snat": {"family": "ip", "addr": addr.to_string()}}]),
            ));
        }
    }
    items.push(chain("forward", "forward", 0));
    items.push(counted_drop(
        vec![family("ipv6"), iifname(&lan_names), oifname(&devs)],
        IPV6_FROM_LAN,
    ));
    items.push(counted_drop(
        vec![family("ipv6"), iifname(&devs), oifname(&lan_names)],
        IPV6_TO_LAN,
    ));
    items.push(rule(
        "forward",
        json!([family("ipv4"), iifname(&lan_names), oifname(&devs),
            {"mangle": {"key": {"ct": {"key": "mark"}}, "value": TUN_MARK}}]),
    ));
    items.push(rule(
        "forward",
        json!([family("ipv4"), iifname(&devs),
            {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": TUN_MARK}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
            {"accept": null}]),
    ));
    items.push(counted_drop(
        vec![family("ipv4"), iifname(&devs)],
        FROM_UPLINK,
    ));
    json!({"nftables": items}).to_string()
}

/// The prerouting rules that take a LAN host's packets to an uplink's address to wanlb
/// instead of the gateway's own stack, when they are wanlb's to answer (hairpinning, RFC 4787
/// REQ-9): TCP and UDP to a NAT port (not a forwarded one, which the kernel hairpins, nor one a
/// socket of this host has, as on the uplinks), and ICMP echo and errors (wanlb gives the
/// kernel back what is not hairpinned). They are marked [`TUN_MARK`], which a routing rule
/// sends to the TUN device before the local table claims the address, and kept out of
/// conntrack.
fn hairpin_rules(
    table: &str,
    lans: &[String],
    uplinks: &[(String, Ipv4Addr)],
    ports: (u16, u16),
    forwards: &[TableForward],
) -> Vec<serde_json::Value> {
    use serde_json::{Value, json};
    let lan_names: Vec<&str> = lans.iter().map(String::as_str).collect();
    // IPv4 only, in the inet table
    let ipv4 =
        json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}});
    let rule = |expr: Vec<Value>| {
        let expr: Vec<Value> = std::iter::once(ipv4.clone()).chain(expr).collect();
        json!({"add": {"rule": {"family": "inet", "table": table, "chain": "prerouting", "expr": expr}}})
    };
    let is =
        |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
    let from_lan = is(
        json!({"meta": {"key": "iifname"}}),
        json!({"set": lan_names}),
    );
    let daddr = |addr: Value| {
        is(
            json!({"payload": {"protocol": "ip", "field": "daddr"}}),
            addr,
        )
    };
    let dport = json!({"payload": {"protocol": "th", "field": "dport"}});
    let to_wanlb = [
        json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": TUN_MARK}}),
        json!({"notrack": null}),
    ];
    let mut rules = Vec::new();
    for (i, (_, addr)) in uplinks.iter().enumerate() {
        for proto in ["tcp", "udp"] {
            let mut nat_port = vec![
                from_lan.clone(),
                daddr(json!(addr.to_string())),
                is(json!({"meta": {"key": "l4proto"}}), json!(proto)),
                is(dport.clone(), json!({"range": [ports.0, ports.1]})),
            ];
            let forwarded: Vec<u16> = forwards
                .iter()
                .filter(|f| f.uplink == i && f.proto == proto)
                .map(|f| f.port)
                .collect();
            if !forwarded.is_empty() {
                nat_port.push(
                    json!({"match": {"op": "!=", "left": dport, "right": {"set": forwarded}}}),
                );
            }
            let mut host_socket = nat_port.clone();
            host_socket.push(is(json!({"socket": {"key": "transparent"}}), json!(0)));
            host_socket.push(json!({"accept": null}));
            rules.push(rule(host_socket));
            nat_port.extend(to_wanlb.iter().cloned());
            rules.push(rule(nat_port));
        }
    }
    let addrs: Vec<String> = uplinks.iter().map(|(_, a)| a.to_string()).collect();
    let mut icmp = vec![
        from_lan,
        daddr(json!({"set": addrs})),
        is(json!({"meta": {"key": "l4proto"}}), json!("icmp")),
        is(
            json!({"payload": {"protocol": "icmp", "field": "type"}}),
            json!({"set": ["echo-reply", "destination-unreachable", "echo-request",
                "time-exceeded", "parameter-problem"]}),
        ),
    ];
    icmp.extend(to_wanlb);
    rules.push(rule(icmp));
    rules
}

/// A TCP listener or bound UDP socket of this host, on one of the addresses asked about or on
/// every address (`addr` unspecified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalService {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    pub addr: Ipv4Addr,
}

/// TCP listeners and bound UDP sockets on `addrs` or the wildcard address, from
/// /proc/net/{tcp,udp}: the gateway's own services, which NAT must never take (CVE-2021-3773)
/// and a forward must not cut off.
pub fn local_services(addrs: &[Ipv4Addr]) -> Result<Vec<LocalService>, SystemError> {
    let mut out = Vec::new();
    for (file, proto) in [
        ("/proc/net/tcp", "tcp"),
        ("/proc/net/udp", "udp"),
        ("/proc/net/tcp6", "tcp"),
        ("/proc/net/udp6", "udp"),
    ] {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            // a kernel without IPv6 has no tcp6/udp6
            Err(e) if e.kind() == io::ErrorKind::NotFound && file.ends_with('6') => continue,
            Err(e) => return Err(io_err(format!("reading {file}"))(e)),
        };
        out.extend(services(&text, proto, addrs));
    }
    Ok(out)
}

/// The listeners (TCP) or bound sockets (UDP) in one /proc/net/{tcp,udp}[6] listing on
/// `addrs`, on the wildcard address, or (IPv6) on `::` or an IPv4-mapped `addrs`.
fn services(text: &str, proto: &str, addrs: &[Ipv4Addr]) -> Vec<LocalService> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (f.get(1), f.get(3)) else {
            continue;
        };
        // TCP: only listeners (0A); UDP: every bound socket (07 = unconnected)
        if proto == "tcp" && *state != "0A" {
            continue;
        }
        let Some((a, p)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(p, 16) else {
            continue;
        };
        // the kernel prints each network-order 32-bit word as a native-endian integer;
        // IPv6: all zero is `::`, and ::ffff:a.b.c.d has 0000ffff as its third word
        let word = |hex: &str| u32::from_str_radix(hex, 16).map(u32::to_ne_bytes);
        let v4 = match a.len() {
            8 => word(a).ok(),
            32 if a.bytes().all(|b| b == b'0') => Some([0; 4]),
            32 if a[..16].bytes().all(|b| b == b'0')
                && word(&a[16..24]).is_ok_and(|w| w == [0, 0, 0xff, 0xff]) =>
            {
                word(&a[24..]).ok()
            }
            _ => None,
        };
        if let Some(v4) = v4.map(Ipv4Addr::from)
            && (v4.is_unspecified() || addrs.contains(&v4))
        {
            out.push(LocalService {
                proto: proto.to_string(),
                port,
                addr: v4,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_on_the_uplinks_the_wildcard_and_ipv6_wildcard_are_found() {
        let me = Ipv4Addr::new(198, 18, 1, 1);
        // 198.18.1.1 (C6 12 01 01) read as a little-endian word and printed: 010112C6
        let tcp = "  sl  local_address rem_address   st\n\
            0: 010112C6:0050 00000000:0000 0A\n\
            1: 00000000:1F90 00000000:0000 0A\n\
            2: 010112C6:C350 0A000002:01BB 01\n\
            3: 0100007F:0035 00000000:0000 0A\n";
        let found: Vec<(Ipv4Addr, u16)> = services(tcp, "tcp", &[me])
            .iter()
            .map(|s| (s.addr, s.port))
            .collect();
        assert_eq!(
            found,
            [(me, 80), (Ipv4Addr::UNSPECIFIED, 8080)],
            "not the connection, not loopback"
        );
        // IPv6: `::` and ::ffff:198.18.1.1, not ::1
        let tcp6 = "  sl  local_address                         remote_address st\n\
            0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A\n\
            1: 0000000000000000FFFF0000010112C6:0BB9 00000000000000000000000000000000:0000 0A\n\
            2: 00000000000000000000000001000000:0BBA 00000000000000000000000000000000:0000 0A\n";
        let found: Vec<(Ipv4Addr, u16)> = services(tcp6, "tcp", &[me])
            .iter()
            .map(|s| (s.addr, s.port))
            .collect();
        assert_eq!(found, [(Ipv4Addr::UNSPECIFIED, 3000), (me, 3001)]);
    }

    #[test]
    fn guard_table_is_one_batch_with_a_rule_per_uplink() {
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (61000, 65535),
            &[],
        );
        assert!(
            json.starts_with(
                r#"{"nftables":[{"add":{"table":{"family":"inet","name":"wanlb_t"}}}"#
            )
        );
        // a NAT-port rule per uplink, the forward rule for both, IPv6 both ways
        assert_eq!(json.matches(r#""drop":null"#).count(), 5);
        assert!(json.contains(r#""elem":[{"prefix":{"addr":"198.18.3.0","len":24}}]"#));
        assert!(json.contains(r#""right":{"set":["eth1","eth2"]}"#));
        assert!(json.contains(r#""value":28928"#));
        assert!(json.contains(r#""right":"198.18.2.1""#));
        assert!(json.contains(r#""range":[61000,65535]"#));
        assert!(
            !json.contains(r#""type":"nat""#),
            "no NAT chains without forwards"
        );
    }

    #[test]
    fn lan_packets_to_the_uplinks_nat_ports_go_to_wanlb_unless_forwarded_or_the_hosts() {
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into(), "eth3".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (1024, 32767),
            &[TableForward {
                uplink: 1,
                proto: "tcp",
                port: 8080,
                to: "198.18.3.10:80".parse().unwrap(),
            }],
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rules: Vec<String> = parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["rule"].as_object())
            .filter(|r| r["chain"] == "prerouting")
            .map(|r| r["expr"].to_string())
            .collect();
        let from_lans = r#""right":{"set":["eth0","eth3"]}"#;
        let marked = r#"{"mangle":{"key":{"meta":{"key":"mark"}},"value":28928}},{"notrack":null}"#;
        let to_wanlb: Vec<&String> = rules
            .iter()
            .filter(|r| r.contains(from_lans) && r.contains(marked))
            .collect();
        // TCP and UDP to each uplink's NAT ports, and ICMP to either address
        assert_eq!(to_wanlb.len(), 5, "{to_wanlb:#?}");
        for (i, addr) in ["198.18.1.1", "198.18.2.1"].iter().enumerate() {
            for proto in ["tcp", "udp"] {
                let r = to_wanlb[2 * i + usize::from(proto == "udp")];
                assert!(r.contains(&format!(r#""right":"{addr}""#)), "{r}");
                assert!(r.contains(&format!(r#""right":"{proto}""#)), "{r}");
                assert!(r.contains(r#""range":[1024,32767]"#), "{r}");
                // isp2's forwarded port stays the kernel's to hairpin (DNAT)
                let forwarded = r#"{"match":{"left":{"payload":{"field":"dport","protocol":"th"}},"op":"!=","right":{"set":[8080]}}}"#;
                assert_eq!(r.contains(forwarded), i == 1 && proto == "tcp", "{r}");
            }
        }
        let icmp = to_wanlb[4];
        assert!(icmp.contains(r#""right":{"set":["198.18.1.1","198.18.2.1"]}"#));
        for t in [
            "echo-request",
            "echo-reply",
            "destination-unreachable",
            "time-exceeded",
        ] {
            assert!(icmp.contains(t), "{icmp}");
        }
        // a port a socket of this host has is its own, from the LAN as from the uplinks: the
        // rule that says so comes first
        let at = |parts: &[&str]| {
            rules
                .iter()
                .position(|r| parts.iter().all(|p| r.contains(p)))
        };
        let own = at(&[from_lans, "198.18.1.1", r#""right":"udp""#, "socket"]).unwrap();
        let wanlbs = at(&[from_lans, "198.18.1.1", r#""right":"udp""#, marked]).unwrap();
        assert!(own < wanlbs, "{rules:#?}");
        // all before what the LAN sends elsewhere is kept out of conntrack
        let elsewhere = at(&[from_lans, "@kernel_routed"]).unwrap();
        assert!(rules.iter().position(|r| r == icmp).unwrap() < elsewhere);
    }

    /// The rules of `json` as "CHAIN EXPR COMMENT", in order.
    fn rules_of(json: &str) -> Vec<String> {
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["rule"].as_object())
            .map(|r| {
                let comment = r.get("comment").cloned().unwrap_or_default();
                format!("{} {} {comment}", r["chain"].as_str().unwrap(), r["expr"])
            })
            .collect()
    }

    #[test]
    fn ipv6_between_the_lan_and_the_uplinks_is_dropped_and_every_other_rule_is_ipv4() {
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into(), "eth3".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (61000, 65535),
            &[TableForward {
                uplink: 0,
                proto: "tcp",
                port: 443,
                to: "198.18.3.10:443".parse().unwrap(),
            }],
        );
        let rules = rules_of(&json);
        let ipv6 = r#"{"match":{"left":{"meta":{"key":"nfproto"}},"op":"==","right":"ipv6"}}"#;
        let ipv6_rules: Vec<&String> = rules.iter().filter(|r| r.contains(ipv6)).collect();
        let lans = r#""right":{"set":["eth0","eth3"]}"#;
        let uplinks = r#""right":{"set":["eth1","eth2"]}"#;
        assert_eq!(ipv6_rules.len(), 2, "{rules:#?}");
        for (rule, from, to, comment) in [
            (ipv6_rules[0], lans, uplinks, IPV6_FROM_LAN),
            (ipv6_rules[1], uplinks, lans, IPV6_TO_LAN),
        ] {
            assert!(rule.starts_with("forward "), "{rule}");
            let (iif, oif) = (rule.find("iifname").unwrap(), rule.find("oifname").unwrap());
            assert!(
                rule[iif..oif].contains(from) && rule[oif..].contains(to),
                "{rule}"
            );
            let counted = r#"{"counter":{"bytes":0,"packets":0}},{"drop":null}]"#;
            assert!(
                rule.ends_with(&format!("{counted} \"{comment}\"")),
                "{rule}"
            );
        }
        // the rest is IPv4's: by an explicit match or an IPv4 address (nft then adds it)
        let ipv4 = r#""right":"ipv4""#;
        for rule in rules.iter().filter(|r| !r.contains(ipv6)) {
            assert!(
                rule.contains(ipv4) || rule.contains(r#""protocol":"ip""#),
                "{rule}"
            );
        }
        assert!(json.contains(r#"{"dnat":{"addr":"198.18.3.10","family":"ip","port":443}}"#));
    }

    #[test]
    fn forwarded_ports_are_kept_from_the_kernel_and_hairpinned() {
        let forward = |uplink, proto, port, to: &str| TableForward {
            uplink,
            proto,
            port,
            to: to.parse().unwrap(),
        };
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (61000, 65535),
            &[
                forward(1, "tcp", 8080, "198.18.3.10:80"),
                forward(0, "udp", 5060, "198.18.3.20:5060"),
                forward(1, "tcp", 8443, "198.18.3.10:443"),
            ],
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rules: Vec<String> = parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["rule"].as_object())
            .map(|r| format!("{} {}", r["chain"].as_str().unwrap(), r["expr"]))
            .collect();
        let has = |chain: &str, parts: &[&str]| {
            rules
                .iter()
                .any(|r| r.starts_with(chain) && parts.iter().all(|p| r.contains(p)))
        };
        // dropped on their uplink, before the NAT ports' rules let a host socket have them
        let isp2_tcp = [
            r#""right":{"set":["eth2"]}"#,
            r#""right":"198.18.2.1""#,
            r#""right":"tcp""#,
            r#""right":{"set":[8080,8443]}"#,
            r#"{"drop":null}"#,
        ];
        assert!(has("prerouting", &isp2_tcp), "{rules:#?}");
        let at = |parts: &[&str]| {
            rules
                .iter()
                .position(|r| parts.iter().all(|p| r.contains(p)))
        };
        assert!(
            at(&["eth2", "8080"]) < at(&["eth2", "socket"]),
            "{rules:#?}"
        );
        assert!(has(
            "prerouting",
            &[
                r#""right":{"set":["eth1"]}"#,
                r#""right":"udp""#,
                r#""right":{"set":[5060]}"#
            ]
        ));
        // from the LAN to a forwarded port of an uplink's address: to the LAN host...
        assert!(has(
            "hairpin ",
            &[
                r#""right":{"set":["eth0"]}"#,
                r#""right":"198.18.2.1""#,
                r#""right":8443"#,
                r#"{"dnat":{"addr":"198.18.3.10","family":"ip","port":443}}"#
            ]
        ));
        // ...from that uplink's address, one rule per uplink
        assert!(has(
            "hairpin_source",
            &[
                r#""dir":"original""#,
                r#"{"snat":{"addr":"198.18.2.1","family":"ip"}}"#
            ]
        ));
        assert_eq!(
            rules
                .iter()
                .filter(|r| r.starts_with("hairpin_source"))
                .count(),
            2
        );
        // in NAT chains at the usual priorities (dstnat, srcnat)
        let chains: Vec<String> = parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["chain"].as_object())
            .map(|c| format!("{} {} {} {}", c["name"], c["type"], c["hook"], c["prio"]))
            .collect();
        assert!(chains.contains(&r#""hairpin" "nat" "prerouting" -100"#.to_string()));
        assert!(chains.contains(&r#""hairpin_source" "nat" "postrouting" 100"#.to_string()));
    }
}
