//! The IPv6 rules of wanlb's table: what arrives on an uplink for wanlb's IPv6 (its NAT66
//! ports on the line's address, anything to the prefix the line delegated for NPTv6) is
//! dropped before conntrack, as for IPv4, so that the kernel, which also sees every reply,
//! never answers one (a reset, an unreachable, or a forward through its own routes): wanlb
//! reads those frames from its packet sockets and filters them itself, statefully (RFC 6092:
//! NPTv6 is stateless, the filter in front of the LAN is not). The gateway's own neighbour
//! discovery and router advertisements (RFC 4890) pass untouched; nothing else of the
//! gateway's own IPv6 is matched. The ports of a line's address forwarded to IPv6 LAN hosts are
//! wanlb's too, as the NAT66 ports are. What wanlb writes to its TUN device stays out of
//! conntrack, and so does what the LAN sends it (as IPv4's): the LAN's IPv6 to anything but
//! the gateway itself, its link-local and multicast neighbours, the LAN's own prefixes (what
//! the kernel routes itself) and the lines' delegated prefixes (hairpinned, below).
//!
//! Hairpinning, as IPv4's forwards are: a LAN host's connection to a forward (the line's
//! address and the forwarded port, or the host's translated address on a line with a prefix)
//! is sent on to the forward's LAN host by the kernel (DNAT), from the line's own address
//! (SNAT), so that the server's answer comes back through the gateway.

use std::net::{Ipv6Addr, SocketAddrV6};

use serde_json::{Value, json};

/// An uplink's IPv6 as the table names it: its interface, the address NAT66 uses, and the
/// prefix it delegated, as they are now; and its forwards to IPv6 LAN hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table6Uplink {
    pub dev: String,
    pub addr: Option<Ipv6Addr>,
    pub prefix: Option<(Ipv6Addr, u8)>,
    pub forwards: Vec<Table6Forward>,
}

/// A forward to an IPv6 LAN host: `proto` (`tcp` or `udp`) `port` of the line's address, and
/// of the host's address as the line's prefix translates it (`translated`, when the line
/// has a prefix that maps the host and the host's port is `port`), to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table6Forward {
    pub proto: &'static str,
    pub port: u16,
    pub to: SocketAddrV6,
    pub translated: Option<Ipv6Addr>,
}

/// The LAN as the IPv6 rules name it: its interfaces and its IPv6 prefixes.
#[derive(Clone, Copy, Debug)]
pub struct Table6Lan<'a> {
    pub interfaces: &'a [String],
    pub prefixes: &'a [(Ipv6Addr, u8)],
}

/// The IPv6 rules (for the prerouting chain, made before them) of `table`, NAT ports `ports`.
pub fn ipv6_rules(
    table: &str,
    tun: &str,
    lan: Table6Lan<'_>,
    uplinks: &[Table6Uplink],
    ports: (u16, u16),
) -> Vec<Value> {
    let rule = |expr: Vec<Value>| json!({"add": {"rule": {"family": "inet", "table": table, "chain": "prerouting", "expr": expr}}});
    let is =
        |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
    let iifname = |dev: &str| is(json!({"meta": {"key": "iifname"}}), json!(dev));
    let daddr = |right: Value| {
        is(
            json!({"payload": {"protocol": "ip6", "field": "daddr"}}),
            right,
        )
    };
    let ipv6 = is(json!({"meta": {"key": "nfproto"}}), json!("ipv6"));
    let mut rules = vec![rule(vec![
        iifname(tun),
        ipv6.clone(),
        json!({"notrack": null}),
    ])];
    let kernel_routed: Vec<Value> = [("fe80::", 10), ("ff00::", 8)]
        .iter()
        .map(|&(addr, len)| json!({"prefix": {"addr": addr, "len": len}}))
        .chain(
            (lan.prefixes.iter())
                .chain(uplinks.iter().filter_map(|u| u.prefix.as_ref()))
                .map(|(addr, len)| json!({"prefix": {"addr": addr.to_string(), "len": len}})),
        )
        .collect();
    rules.push(rule(vec![
        is(
            json!({"meta": {"key": "iifname"}}),
            json!({"set": lan.interfaces}),
        ),
        ipv6,
        json!({"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
            "right": {"set": kernel_routed}}}),
        json!({"match": {"op": "!=", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
            "right": "local"}}),
        json!({"notrack": null}),
    ]));
    for u in uplinks {
        if let Some(addr) = u.addr {
            // a forwarded port is the LAN host's, whatever socket the gateway has on it
            for proto in ["tcp", "udp"] {
                let ports: Vec<u16> = (u.forwards.iter())
                    .filter(|f| f.proto == proto)
                    .map(|f| f.port)
                    .collect();
                if !ports.is_empty() {
                    rules.push(rule(vec![
                        iifname(&u.dev),
                        daddr(json!(addr.to_string())),
                        is(json!({"meta": {"key": "l4proto"}}), json!(proto)),
                        is(
                            json!({"payload": {"protocol": "th", "field": "dport"}}),
                            json!({"set": ports}),
                        ),
                        json!({"drop": null}),
                    ]));
                }
            }
            let nat_port = vec![
                iifname(&u.dev),
                daddr(json!(addr.to_string())),
                is(
                    json!({"meta": {"key": "l4proto"}}),
                    json!({"set": ["tcp", "udp"]}),
                ),
                is(
                    json!({"payload": {"protocol": "th", "field": "dport"}}),
                    json!({"range": [ports.0, ports.1]}),
                ),
            ];
            // a socket of this host on the port (its resolver's answers) keeps it
            let mut host_socket = nat_port.clone();
            host_socket.push(is(json!({"socket": {"key": "transparent"}}), json!(0)));
            host_socket.push(json!({"accept": null}));
            rules.push(rule(host_socket));
            let mut drop = nat_port;
            drop.push(json!({"drop": null}));
            rules.push(rule(drop));
        }
        if let Some((prefix, len)) = u.prefix {
            let to_prefix = daddr(json!({"prefix": {"addr": prefix.to_string(), "len": len}}));
            // neighbour discovery stays the kernel's, should the prefix be on the link
            rules.push(rule(vec![
                iifname(&u.dev),
                to_prefix.clone(),
                is(json!({"meta": {"key": "l4proto"}}), json!("ipv6-icmp")),
                is(
                    json!({"payload": {"protocol": "icmpv6", "field": "type"}}),
                    json!({"set": ["nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-redirect"]}),
                ),
                json!({"accept": null}),
            ]));
            rules.push(rule(vec![
                iifname(&u.dev),
                to_prefix,
                json!({"drop": null}),
            ]));
        }
    }
    rules.extend(hairpin_rules(table, lan, uplinks));
    rules
}

/// The kernel's hairpinning of the LAN's connections to IPv6 forwards (see the module's
/// notes): a nat chain of its own in each hook, made here if there is a forward to hairpin.
fn hairpin_rules(table: &str, lan: Table6Lan<'_>, uplinks: &[Table6Uplink]) -> Vec<Value> {
    let chain = |name: &str, hook: &str, prio: i32| {
        json!({"add": {"chain": {"family": "inet", "table": table, "name": name, "type": "nat",
            "hook": hook, "prio": prio, "policy": "accept"}}})
    };
    let rule = |chain: &str, expr: Vec<Value>| json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}});
    let is =
        |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
    let from_lan = is(
        json!({"meta": {"key": "iifname"}}),
        json!({"set": lan.interfaces}),
    );
    let mut rules = Vec::new();
    let mut sources = Vec::new();
    for u in uplinks {
        // from the line's own address: a line without one has nothing to hairpin from
        let Some(addr) = u.addr else { continue };
        let mut daddrs = Vec::new();
        for f in &u.forwards {
            for daddr in std::iter::once(addr).chain(f.translated) {
                daddrs.push(daddr.to_string());
                rules.push(rule(
                    "hairpin6",
                    vec![
                        from_lan.clone(),
                        is(
                            json!({"payload": {"protocol": "ip6", "field": "daddr"}}),
                            json!(daddr.to_string()),
                        ),
                        is(json!({"meta": {"key": "l4proto"}}), json!(f.proto)),
                        is(
                            json!({"payload": {"protocol": "th", "field": "dport"}}),
                            json!(f.port),
                        ),
                        json!({"dnat": {"family": "ip6", "addr": f.to.ip().to_string(), "port": f.to.port()}}),
                    ],
                ));
            }
        }
        if !daddrs.is_empty() {
            daddrs.sort_unstable();
            daddrs.dedup();
            sources.push(rule(
                "hairpin6_source",
                vec![
                    is(json!({"meta": {"key": "nfproto"}}), json!("ipv6")),
                    from_lan.clone(),
                    is(
                        json!({"meta": {"key": "oifname"}}),
                        json!({"set": lan.interfaces}),
                    ),
                    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                    is(
                        json!({"ct": {"key": "ip6 daddr", "dir": "original"}}),
                        json!({"set": daddrs}),
                    ),
                    json!({"snat": {"family": "ip6", "addr": addr.to_string()}}),
                ],
            ));
        }
    }
    if rules.is_empty() {
        return rules;
    }
    let mut all = vec![chain("hairpin6", "prerouting", -100)];
    all.extend(rules);
    all.push(chain("hairpin6_source", "postrouting", 100));
    all.extend(sources);
    all
}

#[cfg(test)]
mod tests;
