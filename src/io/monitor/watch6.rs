//! The monitor's part of one uplink's IPv6: its socket, its health (a second
//! [`UplinkHealth`], neighbour discovery playing ARP's part), its IPv6 targets. Rounds are
//! sent, answers read and verdicts put into effect here, on the record's IPv6 facts
//! (`Uplink::update_ipv6`), the one place they change.

use std::net::Ipv6Addr;

use crate::engine::select::Prefix;
use crate::engine::{Engine, SEQUENCE_PROBE6, Uplink6};
use crate::health::{HealthSettings, State, Transition, UplinkHealth};
use crate::probe::ProbeKey;
use crate::uplink::{LinkChange, LinkKind, NextHop, Uplink, UplinkId, format_mac};

use super::super::filters::SocketFilters;
use super::super::metering::Metering;
use super::super::packet_socket::PacketSocket;
use super::ipv6::{self, ECHO6_FRAME, Hop6};

/// Unanswered unicast solicitations before asking the multicast group again.
const UNICAST_ND_TRIES: u32 = 2;

pub(super) struct Watch6 {
    pub socket: PacketSocket,
    pub health: UplinkHealth,
    pub targets: Vec<Ipv6Addr>,
    nd_misses: u32,
    /// The source of the solicitation to the router still unanswered: only an advertisement
    /// answering it is believed.
    asked_from: Option<Ipv6Addr>,
    /// Where its socket is in the poller.
    pub at: usize,
    /// What the engine and the socket filters were last told of the line's IPv6.
    told: Option<Uplink6>,
    /// Where the kernel fast path was last told to send the line's IPv6.
    told_hop: Option<Option<NextHop>>,
}

impl Watch6 {
    /// The IPv6 watch of `uplink` with `targets`, its socket open on the uplink's interface.
    pub fn open(
        uplink: &Uplink,
        settings: HealthSettings,
        targets: Vec<Ipv6Addr>,
    ) -> std::io::Result<Watch6> {
        let health = UplinkHealth::new(settings, targets.len());
        Ok(Watch6 {
            socket: PacketSocket::open_icmp6(uplink.ifindex(), uplink.link)?,
            health: match uplink.link {
                LinkKind::Ethernet => health,
                LinkKind::PointToPoint => health.without_arp(),
            },
            targets,
            nd_misses: 0,
            asked_from: None,
            at: 0,
            told: None,
            told_hop: None,
        })
    }

    /// Its interface came back as a new one: the socket opened there.
    pub fn reopen(&mut self, uplink: &Uplink) -> std::io::Result<()> {
        self.socket = PacketSocket::open_icmp6(uplink.ifindex(), uplink.link)?;
        self.nd_misses = 0;
        Ok(())
    }

    /// One round through `uplink`, number `id`: an echo request to every IPv6 target (once
    /// the router's MAC is known) and a neighbour solicitation to the router.
    /// What the line carries of them is metered, as IPv4's probes are.
    pub fn send_round(
        &mut self,
        key: &ProbeKey,
        uplink: &Uplink,
        id: UplinkId,
        now: u64,
        metering: &Metering,
    ) {
        let link_header = uplink.link.header_len();
        let Some(facts) = uplink.ipv6() else { return };
        let hop = match (uplink.link, facts.router_mac) {
            (LinkKind::PointToPoint, _) => Some(Hop6::Peer),
            (LinkKind::Ethernet, Some(router)) => Some(Hop6::Router {
                ours: uplink.mac(),
                router,
            }),
            (LinkKind::Ethernet, None) => None,
        };
        match (hop, facts.addr) {
            (Some(hop), Some(src)) if !self.targets.is_empty() => {
                let round = self.health.start_round(now);
                for &t in &self.targets {
                    let (seq, payload) = key.probe(id, t, round);
                    let mut frame = [0u8; ECHO6_FRAME];
                    let frame =
                        ipv6::echo_request(&mut frame, hop, (src, t), (key.id(), seq), &payload);
                    match self.socket.send(frame) {
                        Ok(_) => metering.probe_bytes(usize::from(id), frame.len() - link_header),
                        Err(e) => {
                            tracing::debug!(uplink = %uplink.name, error = %e, "IPv6 probe not sent")
                        }
                    }
                }
            }
            _ if !self.targets.is_empty() => self.health.unsent_round(now),
            // without targets, the solicitation is the round's probe
            _ => {
                self.health.start_round(now);
            }
        }
        // from the line's address, else from the interface's link-local one (RFC 4861 7.2.2
        // allows any of its addresses): a line with a delegated prefix and no global address
        // on its side still finds its router
        let src = facts
            .addr
            .or_else(|| super::super::system::link_local6(uplink.ifindex()));
        let (LinkKind::Ethernet, Some(router), Some(src)) = (uplink.link, facts.router, src) else {
            return;
        };
        let known = facts
            .router_mac
            .filter(|_| self.nd_misses < UNICAST_ND_TRIES);
        self.nd_misses += 1;
        let ns = ipv6::neighbour_solicitation(uplink.mac(), src, router, known);
        match self.socket.send(&ns) {
            Ok(_) => {
                self.asked_from = Some(src);
                metering.probe_bytes(usize::from(id), ns.len() - link_header);
            }
            Err(e) => {
                tracing::debug!(uplink = %uplink.name, error = %e, "neighbour solicitation not sent")
            }
        }
    }

    /// Reads what arrived on the socket for `uplink`, number `id`: echo replies answer their
    /// round, the router's advertisement its MAC. Those are metered; the rest (echo replies
    /// of the LAN's own flows, which the workers count) is not.
    pub fn receive(
        &mut self,
        key: &ProbeKey,
        uplink: &Uplink,
        id: UplinkId,
        now: u64,
        metering: &Metering,
    ) {
        let mut buf = [0u8; 2048];
        let link_header = uplink.link.header_len();
        let router = uplink.ipv6().and_then(|f| f.router);
        while let Ok(n) = self.socket.recv(&mut buf) {
            let frame = &buf[..n];
            if let Some(router) = router
                && let Some(asked_from) = self.asked_from
                && uplink.link == LinkKind::Ethernet
                && let Some(mac) = ipv6::advertised_mac(frame, router, asked_from)
            {
                self.asked_from = None;
                metering.probe_bytes(usize::from(id), n.saturating_sub(link_header));
                self.health.arp_answer(now);
                self.nd_misses = 0;
                router_resolved(uplink, mac);
                continue;
            }
            let Some(reply) = frame.get(link_header..).and_then(ipv6::echo_reply) else {
                continue;
            };
            let Some(t) = self.targets.iter().position(|&a| a == reply.from) else {
                continue;
            };
            let round = key.round_of(id, reply.from, reply.id, reply.seq, reply.payload);
            if let Some(round) = round {
                metering.probe_bytes(usize::from(id), n.saturating_sub(link_header));
                self.health.answer(round, t, now);
            }
        }
    }

    /// The figures shown for its IPv6 as they are now.
    pub fn figures(&self, uplink: &Uplink) {
        let stats = self.health.stats();
        let own_targets = !self.targets.is_empty();
        uplink.update_ipv6(|f| {
            f.stats = stats;
            f.own_targets = own_targets;
        });
    }

    /// Puts a verdict on its IPv6 into effect: the record says it, and the log.
    pub fn verdict(&self, uplink: &Uplink, change: Transition) {
        let stats = self.health.stats();
        let reason = change.reason.to_string();
        let targets: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        let router_mac = uplink
            .ipv6()
            .and_then(|f| f.router_mac)
            .map_or("unknown".into(), format_mac);
        let state = change.state;
        tracing::info!(uplink = %uplink.name, reason = %reason, targets = %targets.join(","),
            router_mac = %router_mac, rtt_ms = %stats.rtt_ms_text(), loss_pct = stats.loss_pct(),
            "{}", if state == State::Up { "uplink IPv6 up" } else { "uplink IPv6 down" });
        uplink.update_ipv6(|f| {
            f.state = state;
            f.reason = reason;
            f.since = std::time::SystemTime::now();
            f.stats = stats;
        });
    }
}

impl Watch6 {
    /// Takes in one change of `uplink`'s interface (`stranded`: a new interface of its name
    /// could not be used); returns the verdicts it causes on its IPv6.
    pub fn link_change(
        &mut self,
        uplink: &Uplink,
        change: &LinkChange,
        stranded: bool,
    ) -> Vec<Transition> {
        let name = &uplink.name;
        match *change {
            LinkChange::Carrier(up) => vec![self.health.carrier(up && !stranded)],
            LinkChange::Gone => {
                uplink.update_ipv6(|f| f.router_mac = None);
                vec![self.health.carrier(false)]
            }
            LinkChange::Reappeared { carrier, .. } => {
                uplink.update_ipv6(|f| f.router_mac = None);
                // the fast path let go of the old interface: it is told anew
                self.told_hop = None;
                if !stranded && let Err(e) = self.reopen(uplink) {
                    tracing::warn!(uplink = %name, error = %e,
                        "cannot open the IPv6 socket on the new interface: its IPv6 stays down");
                    return self.health.carrier(false).into_iter().collect();
                }
                vec![self.health.carrier(carrier && !stranded)]
            }
            LinkChange::Address6(addr) => {
                uplink.update_ipv6(|f| f.addr = addr);
                vec![self.health.address(addr.is_some())]
            }
            LinkChange::Router6(router) => {
                match router {
                    Some(r) => tracing::info!(uplink = %name, router = %r, "IPv6 router (the interface's default route)"),
                    None => tracing::info!(uplink = %name, "no IPv6 default route through the interface: its IPv6 waits for one"),
                }
                uplink.update_ipv6(|f| {
                    f.router = router;
                    f.router_mac = None;
                });
                self.nd_misses = 0;
                Vec::new()
            }
            LinkChange::Prefix6(prefix) => {
                uplink.update_ipv6(|f| f.prefix = prefix);
                Vec::new()
            }
            LinkChange::Address(_) | LinkChange::Gateway(_) => Vec::new(),
        }
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Watch6 {
    /// Tells the engine, and the socket filters `filters`, the line's IPv6 as the record has
    /// it now, if that changed since they were last told: the address NAT66 uses, the prefix
    /// NPTv6 maps into, and whether new IPv6 flows may use the line. Returns the engine's
    /// packets for LAN hosts (TCP connections of the line ended).
    pub fn tell(
        &mut self,
        engine: &Engine,
        uplink: &Uplink,
        filters: &mut SocketFilters,
    ) -> Vec<[u8; SEQUENCE_PROBE6]> {
        let Some(facts) = uplink.ipv6() else {
            return Vec::new();
        };
        let now = Uplink6 {
            addr: facts.addr.map(u128::from),
            prefix: facts
                .prefix
                .and_then(|(p, len)| Prefix::masked(u128::from(p), len)),
            up: facts.is_up(uplink.is_up()),
        };
        if self.told == Some(now) {
            return Vec::new();
        }
        let moved = self
            .told
            .is_none_or(|t| (t.addr, t.prefix) != (now.addr, now.prefix));
        if moved && let Err(e) = filters.set_ipv6(facts.addr, facts.prefix) {
            tracing::warn!(uplink = %uplink.name, error = %e,
                "cannot give the socket filters the line's IPv6; its IPv6 replies are not seen");
        }
        if self.told.is_some_and(|t| t.up != now.up) || (self.told.is_none() && now.up) {
            tracing::info!(uplink = %uplink.name, takes_ipv6_flows = now.up, "IPv6 flows through this line");
        }
        self.told = Some(now);
        engine.set_uplink6(uplink.id, now)
    }
}

impl Watch6 {
    /// Where the kernel fast path is to send the line's IPv6 now, if that changed since it
    /// was last told: its router (or peer) while its IPv6 takes flows, else nowhere.
    pub fn fast_path_hop(&mut self, uplink: &Uplink) -> Option<Option<NextHop>> {
        let up = uplink.ipv6().is_some_and(|f| f.is_up(uplink.is_up()));
        let hop = if up { uplink.next_hop6() } else { None };
        if self.told_hop == Some(hop) {
            return None;
        }
        self.told_hop = Some(hop);
        Some(hop)
    }
}

/// Says in the log that `uplink`'s IPv6 address or delegated prefix changed, once the change
/// is in effect everywhere.
pub(super) fn log_renumbering(uplink: &Uplink, change: &LinkChange) {
    let name = &uplink.name;
    match *change {
        LinkChange::Address6(Some(a)) => {
            tracing::info!(uplink = %name, address = %a, "IPv6 address")
        }
        LinkChange::Address6(None) => {
            tracing::info!(uplink = %name, "the interface has no IPv6 address for the line")
        }
        LinkChange::Prefix6(Some((p, len))) => {
            tracing::info!(uplink = %name, prefix = %format!("{p}/{len}"), "delegated IPv6 prefix")
        }
        LinkChange::Prefix6(None) => tracing::info!(uplink = %name,
            "the delegated IPv6 prefix is gone: IPv6 flows through this line stop until one is delegated again"),
        _ => {}
    }
}

/// The router of `uplink` advertised `mac`: if that is new, IPv6 goes to it from now on.
fn router_resolved(uplink: &Uplink, mac: [u8; 6]) {
    let changed = uplink.update_ipv6(|f| {
        let changed = f.router_mac != Some(mac);
        f.router_mac = Some(mac);
        changed
    });
    if changed == Some(true) {
        tracing::info!(uplink = %uplink.name, mac = %format_mac(mac), "IPv6 router resolved");
    }
}
