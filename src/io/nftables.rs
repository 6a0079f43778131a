//! wanlb's nftables table (family `inet`): made once at start through the undo journal
//! ([`super::journal::Plumbing::nft_table`]), replaced whole when an uplink's address changes,
//! and its drop counters read for the reports. Written as `nft -j` JSON; nft's output is never
//! parsed but for that JSON.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use super::system::{SystemError, io_err, run, words};

/// The comments of the counted drop rules in the forward chain of wanlb's table.
const FROM_UPLINK: &str = "from an uplink";
const IPV6_FROM_LAN: &str = "IPv6 from the LAN past the TUN device";
const IPV6_FROM_UPLINK: &str = "IPv6 from an uplink";
const FROM_TUN: &str = "from the TUN device to an uplink";

/// What the forward chain of wanlb's table dropped so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardDrops {
    /// IPv4 an uplink sent to be forwarded, which answered nothing the LAN opened.
    pub from_uplink: u64,
    /// IPv6 forwarded from an uplink to anywhere, or from the LAN to anywhere but the TUN
    /// device and the LAN (wanlb translates the LAN's IPv6 itself).
    pub ipv6: u64,
    /// What wanlb wrote to its TUN device that the kernel would have forwarded to an uplink,
    /// untranslated.
    pub from_tun: u64,
    /// The gateway's own ICMP errors that would have left through an uplink quoting a packet
    /// to a LAN address (output chain).
    pub errors_quoting_lan: u64,
}

/// The drop counters of the forward and output chains of wanlb's table `table`, read from
/// `nft -j` (JSON, not the text meant for people).
pub fn forward_drops(table: &str) -> Result<ForwardDrops, SystemError> {
    let command = format!("nft -j list table inet {table}");
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", table])
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
    let counted = |comment: &str| {
        parsed["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["rule"]["comment"] == comment)
            .flat_map(|item| item["rule"]["expr"].as_array().cloned().unwrap_or_default())
            .filter_map(|expr| expr["counter"]["packets"].as_u64())
            .collect::<Vec<u64>>()
    };
    let packets = |comment: &str| {
        counted(comment)
            .first()
            .copied()
            .ok_or(SystemError::Command {
                command: command.clone(),
                stderr: format!("no counter on the rule {comment:?}"),
            })
    };
    Ok(ForwardDrops {
        from_uplink: packets(FROM_UPLINK)?,
        ipv6: packets(IPV6_FROM_LAN)? + packets(IPV6_FROM_UPLINK)?,
        from_tun: packets(FROM_TUN)?,
        // one rule per LAN network, none without
        errors_quoting_lan: counted(output::ERROR_QUOTING_LAN).iter().sum(),
    })
}

/// Replaces wanlb's table `name`, made with [`super::journal::Plumbing::nft_table`] (whose undo still
/// removes it), by `batch_json`, in one transaction: no packet sees it half made. Its
/// counters start again from 0.
pub fn replace_table(name: &str, batch_json: &str) -> Result<(), SystemError> {
    let mut batch: serde_json::Value = serde_json::from_str(batch_json)
        .map_err(|e| io_err("wanlb's own nftables batch".to_string())(std::io::Error::other(e)))?;
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
/// - forward, IPv6: everything an uplink sends to be forwarded, whatever the interface it
///   would leave by (another uplink's segment, an interface not named `--lan`), and what the
///   LAN sends anywhere but to the TUN device and the LAN, dropped and counted. wanlb
///   translates the LAN's IPv6 itself, and the kernel, with IPv6 forwarding on for every
///   interface, would otherwise route between the lines' segments and into other networks of
///   the host, unfiltered, as IPv4's "from an uplink" rule forbids. The gateway's own IPv6
///   (neighbour discovery, router advertisements, its own connections) is not forwarded and
///   passes; so does IPv6 between LAN interfaces;
/// - forward, from the TUN device to an uplink: dropped and counted, either family. What wanlb
///   writes to the TUN device goes to the LAN or to the gateway itself; what it gives back to
///   the gateway untouched (an echo, an ICMP error, a fragment to an uplink's address) would
///   otherwise leave by the main table's default route with its LAN source, untranslated, if
///   that address stopped being local before the engine heard of it.
///
/// The table is of the `inet` family, for that last chain; every other rule is for IPv4 only
/// (explicitly, or by its IPv4 address match). It is kernel state: after a crash it stays, and
/// IPv6 stays closed, until the next start or `wanlb cleanup` removes it.
pub fn table_json(
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
    let lan_or_tun: Vec<&str> = lan_names.iter().copied().chain([tun]).collect();
    items.push(counted_drop(
        vec![family("ipv6"), iifname(&lan_names),
            json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": {"set": lan_or_tun}}})],
        IPV6_FROM_LAN,
    ));
    items.push(counted_drop(
        vec![family("ipv6"), iifname(&devs)],
        IPV6_FROM_UPLINK,
    ));
    items.push(counted_drop(
        vec![iifname(&[tun]), oifname(&devs)],
        FROM_TUN,
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

mod ipv6;
mod output;
pub use ipv6::{Table6Forward, Table6Lan, Table6Uplink, ipv6_rules};
pub use output::output_rules;

#[cfg(test)]
mod tests;
