//! Watching every line through that line: ICMP echo to the health targets, sent from the
//! uplink's address on its own packet socket to its gateway's MAC, or bare to the far end of a
//! point-to-point link (never through the routing table, which would answer "up" through
//! another line), ARP to the gateway of an Ethernet line every round, and carrier from
//! netlink. The answers feed one [`LineHealth`] per uplink; its verdicts are
//! applied here: to the engine (which moves or ends the line's flows), the fast path, the
//! uplink's shared state, the log and the `--on-change` command.

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;

use crate::engine::wire::icmp::{self, IcmpMessage};
use crate::engine::wire::{Ipv4Packet, PROTO_ICMP, ipv4};
use crate::health::{Change, HealthSettings, LineHealth, State};
use crate::probe::{self, ProbeKey};
use crate::uplink::{Addressing, LinkChange, LinkEvent, LinkKind, NextHop, Uplink, format_mac};

use super::arp;
use super::fd::Poller;
use super::filters::SocketFilters;
use super::hook::{Event, Events};
use super::netlink::LinkWatch;
use super::packet::{ETH_HEADER, ETH_P_IP, PacketSocket};
use super::vnet;
use super::worker::{PacketIo, Shared};

const ECHO_FRAME: usize = ETH_HEADER + 20 + 8 + probe::PAYLOAD_LEN;
/// How often the loop looks at round deadlines when nothing arrives.
const TICK_MS: i32 = 10;
/// Unanswered unicast ARP requests before asking by broadcast again (a modem swapped for
/// another with the same address has a new MAC), as the kernel's ucast_probes.
const UNICAST_ARP_TRIES: u32 = 2;

/// This run's secret for its health probes, and their identifier (outside the NAT ports
/// `pool`, where LAN hosts' pings are mapped), from the kernel's random source.
pub fn probe_key(pool: (u16, u16)) -> io::Result<ProbeKey> {
    let mut random = [0u8; probe::RANDOM_LEN];
    getrandom::fill(&mut random)
        .map_err(|e| io::Error::other(format!("reading random bytes: {e}")))?;
    Ok(ProbeKey::new(random, pool))
}

/// What the monitor does by the settings, which a reload may change.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorSettings {
    /// How each line's health is judged.
    pub health: HealthSettings,
    /// Each line's health targets, in the uplinks' order.
    pub targets: Vec<Vec<Ipv4Addr>>,
}

/// The sockets one uplink is watched through.
#[derive(Debug)]
pub struct LineSockets {
    /// Sends echo requests, receives their replies (and nothing else).
    pub probe: PacketSocket,
    /// On an Ethernet line, ARP to its gateway (the uplink's, as it is now).
    pub arp: Option<PacketSocket>,
}

impl LineSockets {
    pub fn open(uplink: &Uplink, filters: &SocketFilters) -> io::Result<LineSockets> {
        let arp = match (uplink.link, uplink.gateway()) {
            (LinkKind::Ethernet, Some(_)) => Some(PacketSocket::open_arp(uplink.ifindex)?),
            // a point-to-point link has no MAC to find
            _ => None,
        };
        Ok(LineSockets {
            probe: PacketSocket::open_probe(uplink.ifindex, uplink.link, filters)?,
            arp,
        })
    }
}

/// An echo request from the uplink's address to `target` with identifier `id`, sequence
/// number `seq` and `payload`, built in `frame` for `next_hop`: returns what to send, an
/// Ethernet frame to the gateway or the bare IP packet to the peer.
pub fn echo_request<'a>(
    frame: &'a mut [u8; ECHO_FRAME],
    uplink: &Uplink,
    next_hop: NextHop,
    target: Ipv4Addr,
    (id, seq): (u16, u16),
    payload: &[u8; probe::PAYLOAD_LEN],
) -> &'a [u8] {
    let start = match next_hop {
        NextHop::Gateway(mac) => {
            frame[0..6].copy_from_slice(&mac);
            frame[6..12].copy_from_slice(&uplink.mac);
            frame[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
            0
        }
        NextHop::Peer => ETH_HEADER,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
    ip.set_version_and_header_len(ipv4::HEADER_LEN);
    ip.set_total_len((ECHO_FRAME - ETH_HEADER) as u16);
    ip.set_ident(seq);
    ip.set_whole(true); // don't fragment
    ip.set_ttl(64);
    ip.set_protocol(PROTO_ICMP);
    ip.set_src_addr(uplink.addr().into());
    ip.set_dst_addr(target.into());
    ip.fill_checksum();
    let mut echo = IcmpMessage::new_unchecked(ip.payload_mut());
    echo.set_msg_type(icmp::ECHO_REQUEST);
    echo.set_code(0);
    echo.set_echo_ident(id);
    echo.set_echo_seq_no(seq);
    echo.data_mut().copy_from_slice(payload);
    echo.fill_checksum();
    &frame[start..]
}

/// An echo reply, as the health probes' socket reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct EchoReply<'a> {
    pub from: Ipv4Addr,
    pub id: u16,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// The echo reply in `ip`, an IP packet (link-layer padding beyond its total length is not
/// payload), if it is one.
pub fn echo_reply(ip: &[u8]) -> Option<EchoReply<'_>> {
    let ip = Ipv4Packet::new_checked(ip).ok()?;
    if ip.protocol() != PROTO_ICMP {
        return None;
    }
    let from = Ipv4Addr::from(ip.src_addr());
    let reply = IcmpMessage::new_checked(ip.into_payload()).ok()?;
    if reply.msg_type() != icmp::ECHO_REPLY {
        return None;
    }
    Some(EchoReply {
        from,
        id: reply.echo_ident(),
        seq: reply.echo_seq_no(),
        payload: reply.into_data(),
    })
}

pub struct Monitor<'a, T: PacketIo> {
    pub shared: &'a Shared,
    pub lines: Vec<LineSockets>,
    pub links: LinkWatch,
    /// Each line's socket filters, which follow its address.
    pub filters: Vec<SocketFilters>,
    /// What the kernel says about each line's interface, and so its address.
    pub addressing: Vec<Addressing>,
    /// Rebuilds wanlb's nftables table for the uplinks' addresses, in order.
    pub guard: &'a (dyn Fn(&[Ipv4Addr]) -> Result<(), String> + Sync),
    /// The settings in force, which a reload may change.
    pub settings: &'a ArcSwap<MonitorSettings>,
    /// Where the engine's packets for the LAN (sequence probes) are written.
    pub tun: T,
    pub events: Events,
    /// What the probes carry, and what their answers must.
    pub probe_key: ProbeKey,
}

impl<T: PacketIo> Monitor<'_, T> {
    /// Probes every line until `shared.stop` is set.
    pub fn run(mut self) -> io::Result<()> {
        let shared = self.shared;
        let mut applied: Arc<MonitorSettings> = self.settings.load_full();
        let mut targets: Vec<Vec<Ipv4Addr>> = applied.targets.clone();
        let mut health: Vec<LineHealth> = targets
            .iter()
            .zip(&self.lines)
            .map(|(t, line)| {
                let health = LineHealth::new(applied.health.clone(), t.len());
                match line.arp {
                    Some(_) => health,
                    None => health.without_arp(),
                }
            })
            .collect();
        let mut carrier = vec![true; health.len()];
        let mut arp_misses = vec![0u32; health.len()];
        // where each line's sockets are in `fds`, for the poller
        let mut fds = vec![self.links.raw_fd()];
        let mut probe_at = Vec::new();
        let mut arp_at = Vec::new();
        for l in &self.lines {
            probe_at.push(fds.len());
            fds.push(l.probe.raw_fd());
            arp_at.push(l.arp.as_ref().map(|a| {
                fds.push(a.raw_fd());
                fds.len() - 1
            }));
        }
        let mut poller = Poller::new(&fds);
        let mut buf = [0u8; 2048];
        let mut kernel_says = Vec::new();
        let mut guard_stale = false;
        let mut guard_retry = std::time::Instant::now();
        let mut lines = Lines {
            health: &mut health,
            targets: &targets,
            carrier: &mut carrier,
            guard_stale: &mut guard_stale,
        };
        // the links, addresses and routes as they are now; changes come on the socket
        self.resync(&mut lines)?;
        while !shared.stop.load(Ordering::Relaxed) {
            let current = self.settings.load();
            if !Arc::ptr_eq(&current, &applied) {
                let new_targets = current.targets.clone();
                for (i, h) in health.iter_mut().enumerate() {
                    let changed = new_targets[i] != targets[i];
                    h.reconfigure(
                        current.health.clone(),
                        changed.then(|| new_targets[i].len()),
                    );
                }
                (applied, targets) = (Arc::clone(&current), new_targets);
            }
            let now = shared.now_us();
            for (i, h) in health.iter_mut().enumerate() {
                if now >= h.next_round_at(now) {
                    self.send_round(i, h, &targets[i], now, &mut arp_misses[i]);
                    shared.uplinks[i].update(carrier[i], h.stats(), None);
                }
            }
            let next = health
                .iter()
                .map(|h| h.next_round_at(now))
                .min()
                .unwrap_or(now);
            let wait = next.saturating_sub(shared.now_us()).div_ceil(1000) as i32;
            poller.wait(wait.clamp(0, TICK_MS))?;
            let now = shared.now_us();
            if poller.is_ready(0) {
                let overflowed = self.links.read(|e| kernel_says.push(e))?;
                let mut lines = Lines {
                    health: &mut health,
                    targets: &targets,
                    carrier: &mut carrier,
                    guard_stale: &mut guard_stale,
                };
                self.link_events(kernel_says.drain(..), &mut lines);
                if overflowed {
                    self.resync(&mut lines)?;
                }
            }
            if guard_stale && guard_retry.elapsed() >= std::time::Duration::from_secs(1) {
                guard_retry = std::time::Instant::now();
                guard_stale = !self.update_guard();
            }
            for (i, line) in self.lines.iter().enumerate() {
                let uplink = &shared.uplinks[i];
                if poller.is_ready(probe_at[i]) {
                    let link_header = uplink.link.header_len();
                    while let Ok(n) = line.probe.recv(&mut buf) {
                        let Some(reply) = buf[..n].get(link_header..).and_then(echo_reply) else {
                            continue;
                        };
                        // an answer only if it carries what was sent to that target, through
                        // this line: anything else is a guess
                        let Some(t) = targets[i].iter().position(|&a| a == reply.from) else {
                            continue;
                        };
                        let sent = self.probe_key.round_of(
                            i as u8,
                            reply.from,
                            reply.id,
                            reply.seq,
                            reply.payload,
                        );
                        if let Some(round) = sent {
                            health[i].answer(round, t, now);
                        }
                    }
                }
                if let (Some(arp), Some(at), Some(gateway)) =
                    (&line.arp, arp_at[i], uplink.gateway())
                    && poller.is_ready(at)
                {
                    while let Ok(n) = arp.recv(&mut buf) {
                        let Some(mac) = arp::sender_mac(&buf[..n], u32::from(gateway)) else {
                            continue;
                        };
                        health[i].arp_answer(now);
                        arp_misses[i] = 0;
                        if uplink.set_gateway_mac(mac) {
                            tracing::info!(uplink = %uplink.name, mac = %format_mac(mac), "gateway resolved");
                            if uplink.is_up() {
                                self.set_fast_path(i, Some(NextHop::Gateway(mac)));
                            }
                        }
                    }
                }
            }
            for (i, h) in health.iter_mut().enumerate() {
                for c in h.tick(now) {
                    self.apply(i, c, h, &targets[i], carrier[i]);
                }
            }
        }
        Ok(())
    }

    /// Puts what the kernel said about links and addresses into effect, line by line.
    fn link_events(&mut self, events: impl Iterator<Item = LinkEvent>, lines: &mut Lines<'_>) {
        for event in events {
            for i in 0..self.shared.uplinks.len() {
                if let Some(change) = self.addressing[i].apply(&event) {
                    self.link_change(i, change, lines);
                }
            }
        }
    }

    /// Asks the kernel for every link, address and route, and takes the answer as the truth
    /// (at start, and after changes overflowed the socket).
    fn resync(&mut self, lines: &mut Lines<'_>) -> io::Result<()> {
        let mut dump = Vec::new();
        self.links.ask_all(&mut |e| dump.push(e))?;
        for i in 0..self.shared.uplinks.len() {
            for change in self.addressing[i].resync(&dump) {
                self.link_change(i, change, lines);
            }
        }
        Ok(())
    }

    /// Puts one change of uplink `i`'s interface into effect.
    fn link_change(&mut self, i: usize, change: LinkChange, lines: &mut Lines<'_>) {
        let shared = self.shared;
        let u = &shared.uplinks[i];
        let verdict = match change {
            LinkChange::Carrier(up) if lines.carrier[i] != up => {
                lines.carrier[i] = up;
                tracing::debug!(uplink = %u.name, carrier = up, "carrier");
                let verdict = lines.health[i].carrier(up);
                if verdict.is_none() {
                    u.update(up, lines.health[i].stats(), None);
                }
                verdict
            }
            LinkChange::Carrier(_) => None,
            LinkChange::Gone => {
                tracing::info!(uplink = %u.name, dev = %u.dev, "interface removed");
                lines.carrier[i] = false;
                lines.health[i].carrier(false)
            }
            LinkChange::Reappeared { ifindex } => {
                tracing::warn!(uplink = %u.name, dev = %u.dev, ifindex,
                    "the interface is back as a new one, but this line's sockets are bound to the old one: restart wanlb to use it");
                None
            }
            LinkChange::Address(None) => {
                tracing::info!(uplink = %u.name, dev = %u.dev, address = %u.addr(), "the interface lost the line's address");
                lines.health[i].address(false)
            }
            LinkChange::Address(Some(addr)) => {
                if !self.readdress(i, addr) {
                    *lines.guard_stale = true;
                }
                lines.health[i].address(true)
            }
            LinkChange::Gateway(gateway) => {
                tracing::info!(uplink = %u.name, dev = %u.dev, gateway = %gateway,
                    "gateway changed (the interface's default route)");
                // its MAC is asked for anew; until then the kernel leaves the line's
                // flows to userspace, which waits for it
                u.set_gateway(gateway);
                // a point-to-point line's peer needs no MAC: nothing else changes
                if self.lines[i].arp.is_some() {
                    self.set_fast_path(i, None);
                }
                None
            }
        };
        if let Some(c) = verdict {
            self.apply(i, c, &lines.health[i], &lines.targets[i], lines.carrier[i]);
        }
    }

    /// Uplink `i` has address `addr` from now on: new flows leave from it, flows on the old
    /// one are ended as on a dead line, and the socket filters and wanlb's nftables table
    /// follow.
    ///
    /// The nftables table and the socket filters take the new address before the first flow
    /// uses it, so the kernel never answers its replies itself. Returns false if the table
    /// could not be updated (the caller tries again).
    fn readdress(&mut self, i: usize, addr: Ipv4Addr) -> bool {
        let shared = self.shared;
        let uplink = &shared.uplinks[i];
        let old = uplink.addr();
        if old == addr {
            return true;
        }
        uplink.set_addr(addr);
        let guarded = self.update_guard();
        if let Err(e) = self.filters[i].set_addr(addr) {
            tracing::warn!(uplink = %uplink.name, error = %e, "cannot give the socket filters the new address; replies to it are not seen");
        }
        let carried = shared.carried().unwrap_or_default();
        let probes = (shared.engine).set_uplink_addr(i as u8, u32::from(addr), &carried);
        shared.carry_out();
        if !probes.is_empty() {
            tracing::info!(uplink = %uplink.name, connections = probes.len(), "resetting TCP connections of the old address");
        }
        self.send_to_lan(probes);
        // said once it is all in effect
        tracing::info!(uplink = %uplink.name, from = %old, to = %addr, "uplink address changed");
        guarded
    }

    /// Makes wanlb's nftables table name the uplinks' addresses as they are now; false if it
    /// could not.
    fn update_guard(&self) -> bool {
        let addrs: Vec<Ipv4Addr> = self.shared.uplinks.iter().map(Uplink::addr).collect();
        match (self.guard)(&addrs) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot update wanlb's nftables table for a new address; trying again every second");
                false
            }
        }
    }

    /// Writes the engine's packets for LAN hosts (sequence probes) to TUN.
    fn send_to_lan(&self, probes: Vec<[u8; crate::engine::SEQUENCE_PROBE]>) {
        let mut frame = [0u8; vnet::LEN + crate::engine::SEQUENCE_PROBE];
        for p in probes {
            frame[vnet::LEN..].copy_from_slice(&p);
            if self.tun.send(&frame).is_err() {
                self.shared
                    .io
                    .tun_write_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One round's probes through uplink `i`: an echo request to every target (on Ethernet
    /// once the gateway's MAC is known) and on Ethernet an ARP request to the gateway.
    fn send_round(
        &self,
        i: usize,
        health: &mut LineHealth,
        targets: &[Ipv4Addr],
        now: u64,
        arp_misses: &mut u32,
    ) {
        let uplink = &self.shared.uplinks[i];
        let line = &self.lines[i];
        match uplink.next_hop() {
            Some(next_hop) if !targets.is_empty() => {
                let round = health.start_round(now);
                for &t in targets {
                    let (seq, payload) = self.probe_key.probe(i as u8, t, round);
                    let id = self.probe_key.id();
                    let mut frame = [0u8; ECHO_FRAME];
                    let frame = echo_request(&mut frame, uplink, next_hop, t, (id, seq), &payload);
                    if let Err(e) = line.probe.send(frame) {
                        tracing::debug!(uplink = %uplink.name, error = %e, "probe not sent");
                    }
                }
            }
            None if !targets.is_empty() => health.unsent_round(now),
            // without targets the ARP request below is the round's probe (on a point-to-point
            // link, carrier is)
            _ => {
                health.start_round(now);
            }
        }
        let (Some(arp), Some(gateway)) = (&line.arp, uplink.gateway()) else {
            return;
        };
        let to = uplink
            .gateway_mac()
            .filter(|_| *arp_misses < UNICAST_ARP_TRIES);
        *arp_misses += 1;
        let request = arp::request(uplink.mac, u32::from(uplink.addr()), u32::from(gateway), to);
        if let Err(e) = arp.send(&request) {
            tracing::debug!(uplink = %uplink.name, error = %e, "ARP request not sent");
        }
    }

    fn set_fast_path(&self, i: usize, next_hop: Option<NextHop>) {
        if let Some(fast) = &self.shared.fast_path
            && let Err(e) = fast.set_next_hop(i as u8, next_hop)
        {
            tracing::warn!(uplink = %self.shared.uplinks[i].name, error = %e,
                "cannot update the kernel fast path for this uplink; its flows stay in userspace");
        }
    }

    /// Puts a health verdict into effect.
    fn apply(
        &self,
        i: usize,
        change: Change,
        health: &LineHealth,
        targets: &[Ipv4Addr],
        carrier: bool,
    ) {
        let shared = self.shared;
        let uplink = &shared.uplinks[i];
        let stats = health.stats();
        let up = change.state == State::Up;
        let reason = change.reason.to_string();
        let rtt_ms = stats.rtt_ms_text();
        let loss_pct = stats.loss_pct();
        let probed: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        if up {
            tracing::info!(uplink = %uplink.name, reason = %reason, targets = %probed.join(","),
                rtt_ms = %rtt_ms, loss_pct, "uplink up");
        } else {
            let unanswered: Vec<String> = health
                .unanswered()
                .iter()
                .filter_map(|&t| targets.get(t).map(|a| a.to_string()))
                .collect();
            let unanswered = if unanswered.is_empty() {
                "none".to_string()
            } else {
                unanswered.join(",")
            };
            let gateway_mac = match uplink.link {
                LinkKind::Ethernet => uplink.gateway_mac().map_or("unknown".into(), format_mac),
                LinkKind::PointToPoint => "none (point-to-point)".into(),
            };
            tracing::info!(uplink = %uplink.name, reason = %reason, unanswered = %unanswered,
                targets = %probed.join(","), carrier, gateway_mac = %gateway_mac,
                rtt_ms = %rtt_ms, loss_pct, "uplink down");
            // stop carrying its flows in the kernel first, so they reach the engine
            self.set_fast_path(i, None);
        }
        let carried = shared.carried().unwrap_or_default();
        let probes = shared.engine.set_uplink_up(i as u8, up, &carried);
        shared.carry_out();
        if !probes.is_empty() {
            tracing::info!(uplink = %uplink.name, connections = probes.len(), "resetting TCP connections");
        }
        self.send_to_lan(probes);
        if up && let Some(next_hop) = uplink.next_hop() {
            self.set_fast_path(i, Some(next_hop));
        }
        uplink.update(carrier, stats, Some((change.state, reason.clone())));
        let _ = self.events.send(Event {
            uplink: uplink.name.clone(),
            state: change.state.name(),
            reason,
        });
    }
}

/// The monitor's view of every line, as link events change it.
struct Lines<'a> {
    health: &'a mut [LineHealth],
    targets: &'a [Vec<Ipv4Addr>],
    carrier: &'a mut [bool],
    /// wanlb's nftables table could not follow an address change yet.
    guard_stale: &'a mut bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checksum::checksum;
    use crate::uplink::Live;

    fn uplink(link: LinkKind) -> Uplink {
        Uplink {
            name: "isp1".into(),
            dev: "eth1".into(),
            ifindex: 3,
            link,
            mac: [2, 0, 0, 0, 0, 1],
            live: Live::new(
                Ipv4Addr::new(198, 18, 1, 1),
                Some(Ipv4Addr::new(198, 18, 1, 254)),
            ),
        }
    }

    const TARGET: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);

    fn key() -> ProbeKey {
        ProbeKey::new([9; probe::RANDOM_LEN], (1024, 32767))
    }

    #[test]
    fn an_echo_request_leaves_from_the_uplink_to_its_gateway() {
        let key = key();
        let (seq, payload) = key.probe(0, TARGET, 7);
        let mut frame = [0u8; ECHO_FRAME];
        let f = echo_request(
            &mut frame,
            &uplink(LinkKind::Ethernet),
            NextHop::Gateway([2, 0, 0, 0, 0, 0xfe]),
            TARGET,
            (key.id(), seq),
            &payload,
        )
        .to_vec();
        assert_eq!(f.len(), ECHO_FRAME);
        assert_eq!(f[..14], [2, 0, 0, 0, 0, 0xfe, 2, 0, 0, 0, 0, 1, 8, 0]);
        assert_eq!(f[26..30], [198, 18, 1, 1]);
        assert_eq!(f[30..34], TARGET.octets());
        assert_eq!(checksum(&f[14..34], 0), 0);
        assert_eq!(checksum(&f[34..], 0), 0);
        assert_eq!(f[34], 8);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), key.id());
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), seq);
        assert_eq!(f[42..], payload);
        // its answer, as the target sends it back (padded to Ethernet's minimum)
        let mut reply = f.clone();
        reply[26..30].copy_from_slice(&TARGET.octets());
        reply[30..34].copy_from_slice(&[198, 18, 1, 1]);
        reply[34] = 0;
        reply.resize(60, 0);
        let answer = echo_reply(&reply[ETH_HEADER..]).expect("an echo reply");
        assert_eq!(
            answer,
            EchoReply {
                from: TARGET,
                id: key.id(),
                seq,
                payload: &payload,
            }
        );
        assert_eq!(
            key.round_of(0, answer.from, answer.id, answer.seq, answer.payload),
            Some(7)
        );
        assert_eq!(echo_reply(&reply[ETH_HEADER..ETH_HEADER + 16]), None);
        assert_eq!(echo_reply(&f[ETH_HEADER..]), None, "a request is no answer");
    }

    #[test]
    fn a_header_that_claims_less_than_its_minimum_is_no_echo_reply() {
        // what anyone on the uplink's segment can send to the gateway's MAC, and what the
        // probes' socket filter keeps when the identifier ends in 0x01: a header length of
        // 4 bytes, a total length of 12, the "ICMP header" at the IP identification field
        // (its high byte 0: an echo reply) and the "identifier" at the TTL and the protocol
        for ihl in 0..5u8 {
            for total in 0..20u16 {
                let mut ip = [0u8; 20];
                ip[0] = 0x40 | ihl;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[8] = 0x12;
                ip[9] = 1;
                assert_eq!(echo_reply(&ip), None, "ihl {ihl}, total length {total}");
            }
        }
    }

    #[test]
    fn on_a_point_to_point_link_the_echo_request_is_the_bare_packet() {
        let key = key();
        let (seq, payload) = key.probe(0, TARGET, 7);
        let mut frame = [0u8; ECHO_FRAME];
        let ip = echo_request(
            &mut frame,
            &uplink(LinkKind::PointToPoint),
            NextHop::Peer,
            TARGET,
            (key.id(), seq),
            &payload,
        );
        assert_eq!(ip.len(), ECHO_FRAME - ETH_HEADER);
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[12..16], [198, 18, 1, 1]);
        assert_eq!(ip[16..20], TARGET.octets());
        assert_eq!(checksum(&ip[..20], 0), 0);
        assert_eq!(checksum(&ip[20..], 0), 0);
    }
}
