//! What wanlb adds to the system, and in what order: the TUN device's settings, routes,
//! rules, sysctls and wanlb's nftables table, each journaled as its undo before it is made
//! (io/journal.rs), so that a stop, or the next start after a crash, removes it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::config::Config;
use crate::engine::nptv6::Nptv6;
use crate::engine::select::Prefix;
use crate::io::journal::Plumbing;
use crate::io::monitor::TableUplink;
use crate::io::netlink;
use crate::io::nftables::{self, TUN_MARK, Table6Forward, Table6Lan, Table6Uplink, TableForward};
use crate::io::system::{self, words};
use crate::preflight::Plan;

use super::{GatewayError, io_err, settings::uplink_id};

/// Routing table and rule priorities wanlb uses for LAN traffic.
pub const ROUTE_TABLE: u32 = 7100;
const RULE_PRIORITY: u32 = 7100;
/// The metric of the `unreachable` default route in [`ROUTE_TABLE`], behind the TUN device's
/// (metric 0): it takes over when the device goes, with the process, however it ends.
const FAIL_CLOSED_METRIC: u32 = u32::MAX;
/// The rules that must see marked packets before the kernel's local table claims the uplinks'
/// addresses (hairpinning), and where the local table's rule moves to, below them: no rule
/// can come before the kernel's own, at priority 0.
const BEFORE_LOCAL_PRIORITY: u32 = 1;
const LOCAL_PRIORITY: u32 = 2;
/// Packets each TUN queue holds for its worker. The default (500) overflows when a LAN host
/// sends a burst while the worker is waking up; this absorbs a few milliseconds of bursts.
const TUN_QUEUE_LEN: u32 = 8192;

/// Routes, rules, sysctls and the nftables table for `config`, all journaled, in an order
/// that never lets the LAN's traffic out untranslated, even for a moment, and that the undo
/// (newest first) reverses just as safely:
/// 1. the `unreachable` default route in wanlb's table, behind the TUN device's: when wanlb
///    dies, the device and its route go, and this one refuses what the LAN sends to the
///    internet (ICMP host unreachable to the host) instead of the main table's default
///    route carrying it untranslated; it stays until a clean stop, the next start or
///    `wanlb cleanup`;
/// 2. the TUN device's route, then the rules that send the LAN's traffic to the table;
/// 3. the nftables table, IPv6 between the LAN and the uplinks dropped with it (its
///    `notrack` rule only ever exists while the rules send the LAN's traffic to wanlb);
/// 4. forwarding on, last: at a stop it is restored first, before the rules go, so that the
///    main table does not forward the LAN's traffic in between (unless it did before wanlb).
pub(super) fn plumb(
    p: &mut Plumbing,
    config: &Config,
    plan: &Plan,
    table: &NftTable,
    mtu: u32,
) -> Result<(), GatewayError> {
    let tun = &config.tun;
    // The device, its route and its sysctls vanish with the last queue, crash or not: they
    // need no undo.
    // The gateway's own IPv6 stack would talk on the device (duplicate address detection,
    // router solicitations, multicast listener reports, from a link-local address), and wanlb
    // would read that as LAN traffic from outside the LAN: without lines that carry IPv6 the
    // device has no IPv6 at all; with, it makes no link-local address, which is what the
    // stack would talk from, and no multicast (its listener reports would go out without
    // one).
    let v6 = match config.has_ipv6() {
        false => ("disable_ipv6", "1", ""),
        true => ("addr_gen_mode", "1", " multicast off"),
    };
    system::write_sysctl(&format!("net/ipv6/conf/{tun}/{}", v6.0), v6.1)?;
    system::run(
        "ip",
        &words(&format!(
            "link set dev {tun} mtu {mtu} txqueuelen {TUN_QUEUE_LEN}{} up",
            v6.2
        )),
        None,
    )?;
    // Replies written to TUN come from internet addresses the main table routes elsewhere,
    // and ICMP errors from the uplink's own router come from a directly connected subnet. The
    // table marks what arrives from TUN, the mark counts in the reverse-path check
    // (src_valid_mark), and a rule per LAN below sends marked reverse lookups to the TUN
    // device: the check passes whatever rp_filter says, for these packets only.
    system::write_sysctl(&system::interface_sysctl(tun, "rp_filter"), "2")?;
    system::write_sysctl(&system::interface_sysctl(tun, "src_valid_mark"), "1")?;
    let fail_closed =
        format!("unreachable default metric {FAIL_CLOSED_METRIC} table {ROUTE_TABLE}");
    p.ip(
        &format!("route add {fail_closed}"),
        &format!("route del {fail_closed}"),
    )?;
    system::run(
        "ip",
        &words(&format!("route add default dev {tun} table {ROUTE_TABLE}")),
        None,
    )?;
    for (i, lan) in config.lan.iter().enumerate() {
        // the reverse-path check of a packet from TUN to this LAN looks up its source as if
        // it came in by this LAN (iif): marked, it goes to the TUN device's table, even from an
        // uplink's address (hairpinned); and what the table marks of this LAN's packets to an
        // uplink's address (hairpinning) goes to the TUN device
        let rpf = format!(
            "fwmark {TUN_MARK:#x} iif {lan} lookup {ROUTE_TABLE} priority {BEFORE_LOCAL_PRIORITY}"
        );
        p.ip(&format!("rule add {rpf}"), &format!("rule del {rpf}"))?;
        let prio = RULE_PRIORITY + 2 * i as u32;
        // LAN-to-LAN and directly connected destinations keep using the main table; only
        // what would have taken a default route goes to wanlb.
        let local = format!("iif {lan} lookup main suppress_prefixlength 0 priority {prio}");
        p.ip(&format!("rule add {local}"), &format!("rule del {local}"))?;
        let to_tun = format!("iif {lan} lookup {ROUTE_TABLE} priority {}", prio + 1);
        p.ip(&format!("rule add {to_tun}"), &format!("rule del {to_tun}"))?;
    }
    move_local_rule(p)?;
    if config.has_ipv6() {
        route_ipv6(p, config)?;
    }
    p.nft_table(&table.name, &table.json(&NftTable::at_start(plan)))?;
    if config.has_ipv6() {
        forward_ipv6(p, config)?;
    }
    p.sysctl("net.ipv4.ip_forward", "1")?;
    Ok(())
}

/// The LAN's IPv6 to the TUN device, as its IPv4 (steps 1 and 2 of [`plumb`]): the
/// `unreachable` default route first (ICMPv6 unreachable to the host once wanlb is gone,
/// which makes a dual-stack host fall back to IPv4 at once), then the device's route, then
/// the rules.
fn route_ipv6(p: &mut Plumbing, config: &Config) -> Result<(), GatewayError> {
    let tun = &config.tun;
    let fail_closed =
        format!("unreachable default metric {FAIL_CLOSED_METRIC} table {ROUTE_TABLE}");
    p.ip(
        &format!("-6 route add {fail_closed}"),
        &format!("-6 route del {fail_closed}"),
    )?;
    system::run(
        "ip",
        &words(&format!(
            "-6 route add default dev {tun} table {ROUTE_TABLE}"
        )),
        None,
    )?;
    for (i, lan) in config.lan.iter().enumerate() {
        let prio = RULE_PRIORITY + 2 * i as u32;
        let local = format!("iif {lan} lookup main suppress_prefixlength 0 priority {prio}");
        p.ip(
            &format!("-6 rule add {local}"),
            &format!("-6 rule del {local}"),
        )?;
        let to_tun = format!("iif {lan} lookup {ROUTE_TABLE} priority {}", prio + 1);
        p.ip(
            &format!("-6 rule add {to_tun}"),
            &format!("-6 rule del {to_tun}"),
        )?;
    }
    Ok(())
}

/// IPv6 forwarding on (step 4 of [`plumb`]). With it on, the kernel ignores router
/// advertisements on every interface whose `accept_ra` is not 2: the uplinks would lose their
/// SLAAC addresses and default routes (and `gw6=auto` its router) as they expire. So each
/// uplink with IPv6 takes `accept_ra=2` first; both are journaled and undone at a stop.
/// Writing `all/forwarding` writes every interface's value and the default's, and so does
/// writing it back: those the admin had set otherwise are journaled as they are, to be
/// written back after it (the undo runs newest first).
fn forward_ipv6(p: &mut Plumbing, config: &Config) -> Result<(), GatewayError> {
    for u in config.uplinks.iter().filter(|u| u.gw6.is_some()) {
        p.sysctl(&format!("net/ipv6/conf/{}/accept_ra", u.dev), "2")?;
    }
    let all = "net/ipv6/conf/all/forwarding";
    let was = system::read_sysctl(all)?;
    if was != "1" {
        for name in system::ipv6_conf_names()? {
            let key = format!("net/ipv6/conf/{name}/forwarding");
            if name != "all" && system::read_sysctl(&key)? != was {
                p.keep_sysctl(&key)?;
            }
        }
    }
    p.sysctl(all, "1")?;
    Ok(())
}

/// Moves the kernel's local-table rule from priority 0 to just below wanlb's rules that must
/// come first (hairpinning), journaled: it is back at 0 once wanlb stops, or after a crash at
/// the next start. Where another tool has moved it already, it is left alone. Also lets what
/// wanlb gives back to the gateway's own stack from the TUN device pass the reverse-path check
/// (the lookup of a locally delivered packet's source has no input interface: `iif lo`).
fn move_local_rule(p: &mut Plumbing) -> Result<(), GatewayError> {
    let at =
        netlink::local_rule_priorities().map_err(io_err("reading the routing rules (netlink)"))?;
    if at.contains(&0) {
        let moved = format!("priority {LOCAL_PRIORITY} lookup local");
        if !at.contains(&LOCAL_PRIORITY) {
            p.ip(&format!("rule add {moved}"), &format!("rule del {moved}"))?;
        }
        p.ip(
            "rule del priority 0 lookup local",
            "rule add priority 0 lookup local",
        )?;
    } else if at.iter().any(|&a| a <= BEFORE_LOCAL_PRIORITY) {
        tracing::warn!(priorities = ?at, "the local table's rule is at priority {BEFORE_LOCAL_PRIORITY} or below, and not at 0: left alone, so LAN hosts cannot reach each other through the uplinks' addresses (hairpinning)");
    }
    let given_back = format!(
        "fwmark {TUN_MARK:#x} iif lo lookup {ROUTE_TABLE} priority {}",
        LOCAL_PRIORITY + 1
    );
    p.ip(
        &format!("rule add {given_back}"),
        &format!("rule del {given_back}"),
    )?;
    Ok(())
}

/// The name of wanlb's nftables table (family `inet`) for TUN device `tun`: one name per TUN
/// name (nft takes every character a TUN name may have: letters, digits, `.`, `-`, `_`).
pub fn nft_table_name(tun: &str) -> String {
    format!("wanlb_{tun}")
}

/// wanlb's nftables table as the settings and the system at start make it; the uplinks'
/// addresses, and their interfaces' subnets, are given each time it is made (at start, and
/// when an uplink's address changes).
pub(super) struct NftTable {
    pub name: String,
    tun: String,
    lans: Vec<String>,
    /// Each uplink's interface, in the uplinks' order.
    devs: Vec<String>,
    pool: (u16, u16),
    forwards: Vec<TableForward>,
    /// The forwards to IPv6 hosts: uplink (index), `tcp` or `udp`, port, LAN host.
    forwards6: Vec<(usize, &'static str, u16, SocketAddrV6)>,
    /// The subnets of this host's interfaces that carry no uplink, as read at start.
    other_subnets: Vec<(Ipv4Addr, u8)>,
    /// The LAN's networks, whose addresses no error the gateway sends to an uplink may quote
    /// (IPv6's, the first of them, are also what NPTv6 maps into a line's prefix).
    lan4: Vec<(Ipv4Addr, u8)>,
    lan6: Vec<(Ipv6Addr, u8)>,
}

/// `addr`/`len` as the subnet it names, its host bits cleared.
fn subnet(&(addr, len): &(Ipv4Addr, u8)) -> Option<(Ipv4Addr, u8)> {
    Prefix::new(u32::from(addr), len).map(|p| (Ipv4Addr::from(p.addr()), p.prefix_len()))
}

impl NftTable {
    pub fn new(config: &Config, plan: &Plan) -> NftTable {
        let devs: Vec<String> = config.uplinks.iter().map(|u| u.dev.clone()).collect();
        NftTable {
            name: nft_table_name(&config.tun),
            tun: config.tun.clone(),
            lans: config.lan.clone(),
            pool: plan.nat_pool,
            forwards: config
                .forwards4()
                .filter_map(|f| {
                    Some(TableForward {
                        uplink: usize::from(uplink_id(config, &f.uplink)),
                        proto: f.proto.name(),
                        port: f.port,
                        to: f.to4()?,
                    })
                })
                .collect(),
            forwards6: (config.forwards.iter())
                .filter_map(|f| {
                    let SocketAddr::V6(to) = f.to else {
                        return None;
                    };
                    let uplink = usize::from(uplink_id(config, &f.uplink));
                    Some((uplink, f.proto.name(), f.port, to))
                })
                .collect(),
            other_subnets: plan
                .interfaces
                .iter()
                .filter(|i| !devs.contains(&i.name))
                .flat_map(|i| i.ipv4.iter().filter_map(subnet))
                .collect(),
            lan4: plan
                .lan_sources
                .iter()
                .map(|p| (Ipv4Addr::from(p.addr()), p.prefix_len()))
                .collect(),
            lan6: plan
                .lan_sources6
                .iter()
                .map(|n| (n.addr(), n.prefix_len()))
                .collect(),
            devs,
        }
    }

    /// `to`'s address as a line's delegated `prefix` translates it (as the engine does: from
    /// the LAN's first IPv6 prefix), if the forward answers there: its port is the host's.
    fn translated(
        &self,
        prefix: Option<(Ipv6Addr, u8)>,
        to: SocketAddrV6,
        port: u16,
    ) -> Option<Ipv6Addr> {
        let (addr, len) = prefix.filter(|_| to.port() == port)?;
        let &(lan, lan_len) = self.lan6.first()?;
        let npt = Nptv6::for_lan(
            Prefix::masked(u128::from(lan), lan_len)?,
            Prefix::masked(u128::from(addr), len)?,
        )?;
        (npt.internal().contains(u128::from(*to.ip())))
            .then(|| npt.outbound(u128::from(*to.ip())))
            .flatten()
            .map(Ipv6Addr::from)
    }

    /// The uplinks as the plan found them at start.
    pub fn at_start(plan: &Plan) -> Vec<TableUplink<'_>> {
        plan.uplinks
            .iter()
            .map(|r| TableUplink {
                addr: r.addr,
                subnets: &r.iface.ipv4,
                v6: r.v6.as_ref().map(|v6| (v6.current(), v6.prefix())),
            })
            .collect()
    }

    /// The table for `uplinks` (in the uplinks' order), as nftables JSON.
    pub fn json(&self, uplinks: &[TableUplink<'_>]) -> String {
        let guarded: Vec<(String, Ipv4Addr)> = self
            .devs
            .iter()
            .zip(uplinks)
            .map(|(dev, u)| (dev.clone(), u.addr))
            .collect();
        // what the kernel routes itself from the LAN: the subnets of this host's interfaces
        let mut kernel_routed = self.other_subnets.clone();
        kernel_routed.extend(
            uplinks
                .iter()
                .flat_map(|u| u.subnets.iter().filter_map(subnet)),
        );
        kernel_routed.sort_unstable();
        kernel_routed.dedup();
        let v4 = nftables::table_json(
            &self.name,
            &self.tun,
            &self.lans,
            &kernel_routed,
            &guarded,
            self.pool,
            &self.forwards,
        );
        let v6: Vec<Table6Uplink> = self
            .devs
            .iter()
            .zip(uplinks)
            .enumerate()
            .filter_map(|(i, (dev, u))| {
                let (addr, prefix) = u.v6?;
                Some(Table6Uplink {
                    dev: dev.clone(),
                    addr,
                    prefix,
                    forwards: (self.forwards6.iter())
                        .filter(|f| f.0 == i)
                        .map(|&(_, proto, port, to)| Table6Forward {
                            proto,
                            port,
                            to,
                            translated: self.translated(prefix, to, port),
                        })
                        .collect(),
                })
            })
            .collect();
        let mut batch: serde_json::Value =
            serde_json::from_str(&v4).expect("table_json writes JSON");
        if let Some(items) = batch["nftables"].as_array_mut() {
            if !v6.is_empty() {
                let lan = Table6Lan {
                    interfaces: &self.lans,
                    prefixes: &self.lan6,
                };
                items.extend(nftables::ipv6_rules(
                    &self.name, &self.tun, lan, &v6, self.pool,
                ));
            }
            let devs: Vec<&str> = self.devs.iter().map(String::as_str).collect();
            items.extend(nftables::output_rules(
                &self.name, &devs, &self.lan4, &self.lan6,
            ));
        }
        batch.to_string()
    }
}
