//! Watching every uplink through that uplink: ICMP echo to the health targets, sent from the
//! uplink's address on its own packet socket to its gateway's MAC, or bare to the far end of a
//! point-to-point link (never through the routing table, which would answer "up" through
//! another uplink), ARP to the gateway of an Ethernet uplink every round, and what the kernel
//! says of each uplink's interface (netlink: carrier, addresses, default routes, the interface
//! going and coming back). The answers feed one [`UplinkHealth`] per uplink; its verdicts, and
//! what the kernel says, are put into effect through [`apply`], the one way each change of an
//! uplink is made.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::engine::wire::icmp::{self, IcmpMessage};
use crate::engine::wire::{Ipv4Packet, PROTO_ICMP, ipv4};
use crate::health::{HealthSettings, UplinkHealth};
use crate::probe::{self, ProbeKey};
use crate::uplink::{Addressing, LinkChange, LinkEvent, NextHop, Uplink, UplinkId};

use super::arp;
use super::fd::Poller;
use super::hook::Events;
use super::metering::Metering;
use super::netlink::LinkWatch;
use super::packet_socket::{ETH_HEADER, ETH_P_IP};
use super::uplink_sockets::UplinkSockets;
use super::worker::{PacketIo, Shared};

mod apply;
mod ipv6;
mod watch6;

use apply::Apply;
use watch6::Watch6;

const ECHO_FRAME: usize = ETH_HEADER + 20 + 8 + probe::PAYLOAD_LEN;
/// How often the loop looks at round deadlines when nothing arrives.
const TICK_MS: i32 = 10;
/// Unanswered unicast ARP requests before asking by broadcast again (a modem swapped for
/// another with the same address has a new MAC), as the kernel's ucast_probes.
const UNICAST_ARP_TRIES: u32 = 2;
/// How long after a failed update of wanlb's nftables table it is tried again.
const TABLE_RETRY: Duration = Duration::from_secs(1);

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
    /// How each uplink's health is judged, in the uplinks' order.
    pub health: Vec<HealthSettings>,
    /// Each uplink's health targets, in the uplinks' order.
    pub targets: Vec<Vec<Ipv4Addr>>,
    /// Each uplink's IPv6 health targets, in the uplinks' order.
    pub targets6: Vec<Vec<Ipv6Addr>>,
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
            frame[6..12].copy_from_slice(&uplink.mac());
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

/// The length of the IP packet `ip` (a link layer's padding beyond it is not the uplink's
/// traffic), or of what was read if its header says more.
fn ip_len(ip: &[u8]) -> usize {
    match ip.get(2..4) {
        Some(&[hi, lo]) => ip.len().min(usize::from(u16::from_be_bytes([hi, lo]))),
        _ => ip.len(),
    }
}

/// An uplink as wanlb's nftables table names it: the address it uses now, and the subnets of
/// its interface (which the kernel routes itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableUplink<'s> {
    pub addr: Ipv4Addr,
    pub subnets: &'s [(Ipv4Addr, u8)],
    /// On a line with IPv6: the address NAT66 uses and the prefix it delegated, now.
    pub v6: Option<TableUplink6>,
}

/// An uplink's IPv6 as wanlb's nftables table names it: the address NAT66 uses, and the
/// prefix it delegated.
pub type TableUplink6 = (Option<Ipv6Addr>, Option<(Ipv6Addr, u8)>);

/// Makes wanlb's nftables table name the uplinks as they are now (in the uplinks' order); the
/// error says why it could not.
pub type TableUpdate<'a> = &'a (dyn Fn(&[TableUplink<'_>]) -> Result<(), String> + Sync);

/// The monitor, as the gateway starts it.
pub struct Monitor<'a, T: PacketIo> {
    pub shared: &'a Shared,
    pub links: LinkWatch,
    /// Each uplink's sockets, and what the kernel says of its interface at start, in the
    /// uplinks' order.
    pub uplinks: Vec<(UplinkSockets<'a>, Addressing)>,
    pub table: TableUpdate<'a>,
    /// The settings in force, which a reload may change.
    pub settings: &'a ArcSwap<MonitorSettings>,
    /// Where the engine's packets for the LAN (sequence probes) are written.
    pub tun: T,
    pub events: Events,
    /// What the probes carry, and what their answers must.
    pub probe_key: ProbeKey,
    /// Each uplink's count against its cap, read every second.
    pub metering: &'a Metering,
}

/// How often the uplinks' byte counters are read: a cap reached takes effect within this of
/// the bytes that reached it (and the time the engine takes to move the uplink's flows).
const METER_EVERY_US: u64 = 1_000_000;

/// The monitor's part of one uplink: its sockets, what the kernel says of its interface, its
/// health as judged so far, and where its sockets are in the poller.
struct Watched<'a> {
    id: UplinkId,
    sockets: UplinkSockets<'a>,
    addressing: Addressing,
    health: UplinkHealth,
    carrier: bool,
    /// Its interface came back as a new one and its sockets could not be opened there: it
    /// stays down.
    stranded: bool,
    arp_misses: u32,
    /// Its health targets, as the settings in force name them.
    targets: Vec<Ipv4Addr>,
    probe_at: usize,
    arp_at: Option<usize>,
    /// Its IPv6, on a line that carries IPv6.
    v6: Option<Watch6>,
}

/// The monitor at work.
struct Running<'a, T: PacketIo> {
    apply: Apply<'a, T>,
    uplinks: Vec<Watched<'a>>,
    links: LinkWatch,
    settings: &'a ArcSwap<MonitorSettings>,
    probe_key: ProbeKey,
    poller: Poller,
    /// An uplink's sockets were opened anew: the poller must watch the new ones.
    poller_stale: bool,
    table_retry: Instant,
    metering: &'a Metering,
}

impl<T: PacketIo> Monitor<'_, T> {
    /// Probes every uplink until `shared.stop` is set.
    pub fn run(self) -> io::Result<()> {
        let applied = self.settings.load_full();
        let mut v6 = Vec::new();
        let each = applied.targets6.iter().zip(&applied.health);
        for (u, (targets6, health)) in self.shared.uplinks.iter().zip(each) {
            v6.push(match u.ipv6() {
                Some(_) => Some(Watch6::open(u, health.clone(), targets6.clone())?),
                None => None,
            });
        }
        let uplinks = self
            .uplinks
            .into_iter()
            .zip(applied.targets.iter().zip(&applied.health))
            .zip(v6)
            .enumerate()
            .map(|(i, (((sockets, addressing), (targets, settings)), v6))| {
                let health = UplinkHealth::new(settings.clone(), targets.len());
                Watched {
                    v6,
                    id: crate::uplink::id_at(i),
                    health: match sockets.arp {
                        Some(_) => health,
                        None => health.without_arp(),
                    },
                    sockets,
                    addressing,
                    carrier: true,
                    stranded: false,
                    arp_misses: 0,
                    targets: targets.clone(),
                    probe_at: 0,
                    arp_at: None,
                }
            })
            .collect();
        let mut running = Running {
            apply: Apply {
                shared: self.shared,
                table: self.table,
                tun: self.tun,
                events: self.events,
                table_stale: false,
                caps: Vec::new(),
            },
            uplinks,
            poller: Poller::new(&[]),
            poller_stale: true,
            links: self.links,
            settings: self.settings,
            probe_key: self.probe_key,
            table_retry: Instant::now(),
            metering: self.metering,
        };
        running.run(applied)
    }
}

impl<'a, T: PacketIo> Running<'a, T> {
    fn run(&mut self, mut applied: Arc<MonitorSettings>) -> io::Result<()> {
        let shared = self.apply.shared;
        let mut buf = [0u8; 2048];
        let mut kernel_says = Vec::new();
        // the links, addresses and routes as they are now; changes come on the socket
        self.resync()?;
        let mut meter_at = 0;
        while !shared.stop.load(Ordering::Relaxed) {
            if shared.now_us() >= meter_at {
                meter_at = shared.now_us() + METER_EVERY_US;
                self.meter();
            }
            if self.poller_stale {
                self.watch_sockets();
            }
            let current = self.settings.load();
            if !Arc::ptr_eq(&current, &applied) {
                for ((w, targets), health) in self
                    .uplinks
                    .iter_mut()
                    .zip(&current.targets)
                    .zip(&current.health)
                {
                    let changed = *targets != w.targets;
                    w.health
                        .reconfigure(health.clone(), changed.then_some(targets.len()));
                    w.targets.clone_from(targets);
                }
                let each = current.targets6.iter().zip(&current.health);
                for (w, (targets, health)) in self.uplinks.iter_mut().zip(each) {
                    if let Some(v6) = &mut w.v6 {
                        let changed = *targets != v6.targets;
                        v6.health
                            .reconfigure(health.clone(), changed.then_some(targets.len()));
                        v6.targets.clone_from(targets);
                    }
                }
                applied = Arc::clone(&current);
            }
            let now = shared.now_us();
            for w in &mut self.uplinks {
                if now >= w.health.next_round_at(now) {
                    send_round(
                        &self.probe_key,
                        &shared.uplinks[w.id],
                        w,
                        now,
                        self.metering,
                    );
                    self.apply.figures(w);
                }
                if let Some(v6) = &mut w.v6
                    && now >= v6.health.next_round_at(now)
                {
                    let uplink = &shared.uplinks[w.id];
                    v6.send_round(&self.probe_key, uplink, w.id, now, self.metering);
                    v6.figures(uplink);
                }
            }
            let next = self
                .uplinks
                .iter()
                .flat_map(|w| {
                    let v6 = w.v6.as_ref().map(|v6| v6.health.next_round_at(now));
                    std::iter::once(w.health.next_round_at(now)).chain(v6)
                })
                .min()
                .unwrap_or(now);
            let wait = next.saturating_sub(shared.now_us()).div_ceil(1000) as i32;
            self.poller.wait(wait.clamp(0, TICK_MS))?;
            let now = shared.now_us();
            if self.poller.is_ready(0) {
                let overflowed = self.links.read(|e| kernel_says.push(e))?;
                self.link_events(kernel_says.drain(..));
                if overflowed {
                    self.resync()?;
                }
            }
            if self.apply.table_stale && self.table_retry.elapsed() >= TABLE_RETRY {
                self.table_retry = Instant::now();
                self.apply.retry_table(&self.uplinks);
            }
            for w in &mut self.uplinks {
                let uplink = &shared.uplinks[w.id];
                if self.poller.is_ready(w.probe_at) {
                    let link_header = uplink.link.header_len();
                    while let Ok(n) = w.sockets.probe.recv(&mut buf) {
                        let Some(ip) = buf[..n].get(link_header..) else {
                            continue;
                        };
                        // what the uplink carried, answer or not (the IP packet's length)
                        self.metering.probe_bytes(usize::from(w.id), ip_len(ip));
                        let Some(reply) = echo_reply(ip) else {
                            continue;
                        };
                        // an answer only if it carries what was sent to that target, through
                        // this uplink: anything else is a guess
                        let Some(t) = w.targets.iter().position(|&a| a == reply.from) else {
                            continue;
                        };
                        let sent = self.probe_key.round_of(
                            w.id,
                            reply.from,
                            reply.id,
                            reply.seq,
                            reply.payload,
                        );
                        if let Some(round) = sent {
                            w.health.answer(round, t, now);
                        }
                    }
                }
                if let Some(v6) = &mut w.v6
                    && self.poller.is_ready(v6.at)
                {
                    v6.receive(&self.probe_key, uplink, w.id, now, self.metering);
                }
                if let (Some(arp), Some(at), Some(gateway)) =
                    (&w.sockets.arp, w.arp_at, uplink.gateway())
                    && self.poller.is_ready(at)
                {
                    while let Ok(n) = arp.recv(&mut buf) {
                        let Some(mac) = arp::sender_mac(&buf[..n], u32::from(gateway)) else {
                            continue;
                        };
                        w.health.arp_answer(now);
                        w.arp_misses = 0;
                        self.apply.gateway_resolved(uplink, mac);
                    }
                }
            }
            for w in &mut self.uplinks {
                for change in w.health.tick(now) {
                    self.apply.verdict(w, change);
                }
                if let Some(v6) = &mut w.v6 {
                    let uplink = &shared.uplinks[w.id];
                    for change in v6.health.tick(now) {
                        v6.verdict(uplink, change);
                    }
                    // the kernel stops carrying the line's IPv6 before the engine takes its
                    // flows back, and starts once the engine takes new ones
                    let hop = v6.fast_path_hop(uplink);
                    if hop == Some(None) {
                        self.apply.set_fast_path6(uplink, None);
                    }
                    let probes = v6.tell(&shared.engine, uplink, &mut w.sockets.filters);
                    self.apply.send_to_lan(probes);
                    if let Some(Some(hop)) = hop {
                        self.apply.set_fast_path6(uplink, Some(hop));
                    }
                }
            }
        }
        self.meter_at_stop();
        Ok(())
    }

    /// Reads every uplink's byte totals (the engine's, the kernel fast path's and the
    /// probes') into the meters, and puts into effect what the caps now do, the balance by
    /// bytes and the failbacks that are due.
    fn meter(&mut self) {
        let shared = self.apply.shared;
        let now = shared.now();
        let Some(totals) = self.totals() else {
            return;
        };
        let (effects, recent) = self
            .metering
            .read(now.as_millis(), &totals, &|i| self.state_name(i));
        shared.engine.set_recent_bytes(&recent);
        self.apply.caps(&effects);
        self.apply.fail_back(now);
        self.metering.save_if_due(now.as_millis());
    }

    /// A last reading at the stop, so the counts saved hold the last second's bytes too;
    /// nothing is put into effect any more.
    fn meter_at_stop(&self) {
        if let Some(totals) = self.totals() {
            let now = self.apply.shared.now().as_millis();
            self.metering.read(now, &totals, &|i| self.state_name(i));
        }
        self.metering.save();
    }

    /// The health state of the uplink at `i`, as the hook names it.
    fn state_name(&self, i: usize) -> &'static str {
        self.apply.shared.uplinks[crate::uplink::id_at(i)]
            .status()
            .state
            .name()
    }

    /// Every uplink's byte total now: the engine's, the kernel fast path's and the probes';
    /// none while the fast path's counters cannot be read.
    fn totals(&self) -> Option<Vec<u64>> {
        let shared = self.apply.shared;
        let fast = match &shared.fast_path {
            Some(f) => match f.totals() {
                Ok(t) => Some(t),
                Err(e) => {
                    // a reading without them would count them twice once they are back
                    tracing::debug!(error = %e, "cannot read the fast path's counters; no reading this second");
                    return None;
                }
            },
            None => None,
        };
        let counters = shared.engine.counters();
        let probes = self.metering.probe_totals();
        let totals: Vec<u64> = counters
            .uplinks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = fast
                    .as_ref()
                    .and_then(|f| f.get(i).copied())
                    .unwrap_or_default();
                c.outbound_bytes + c.inbound_bytes + f.outbound_bytes + f.inbound_bytes + probes[i]
            })
            .collect();
        Some(totals)
    }

    /// Builds the poller anew: netlink first, then each uplink's probe socket and, on an
    /// Ethernet uplink, its ARP socket.
    fn watch_sockets(&mut self) {
        let mut fds = vec![self.links.raw_fd()];
        for w in &mut self.uplinks {
            w.probe_at = fds.len();
            fds.push(w.sockets.probe.raw_fd());
            w.arp_at = w.sockets.arp.as_ref().map(|a| {
                fds.push(a.raw_fd());
                fds.len() - 1
            });
            if let Some(v6) = &mut w.v6 {
                v6.at = fds.len();
                fds.push(v6.socket.raw_fd());
            }
        }
        self.poller = Poller::new(&fds);
        self.poller_stale = false;
    }

    /// Puts what the kernel said about links and addresses into effect, uplink by uplink.
    fn link_events(&mut self, events: impl Iterator<Item = LinkEvent>) {
        for event in events {
            for id in self.ids() {
                if let Some(change) = self.watched(id).addressing.apply(&event) {
                    self.link_change(id, change);
                }
            }
        }
    }

    /// Asks the kernel for every link, address and route, and takes the answer as the truth
    /// (at start, and after changes overflowed the socket).
    fn resync(&mut self) -> io::Result<()> {
        let mut dump = Vec::new();
        self.links.ask_all(&mut |e| dump.push(e))?;
        for id in self.ids() {
            for change in self.watched(id).addressing.resync(&dump) {
                self.link_change(id, change);
            }
        }
        Ok(())
    }

    /// Every uplink's id.
    fn ids(&self) -> impl Iterator<Item = UplinkId> + use<T> {
        (0..self.uplinks.len()).map(crate::uplink::id_at)
    }

    /// The monitor's part of uplink `id`.
    fn watched(&mut self, id: UplinkId) -> &mut Watched<'a> {
        &mut self.uplinks[usize::from(id)]
    }

    /// Puts one change of uplink `id`'s interface into effect.
    fn link_change(&mut self, id: UplinkId, change: LinkChange) {
        let shared = self.apply.shared;
        let w = &mut self.uplinks[usize::from(id)];
        if let Some(v6) = &mut w.v6 {
            let uplink = &shared.uplinks[w.id];
            let stranded = w.stranded;
            for verdict in v6.link_change(uplink, &change, stranded) {
                v6.verdict(uplink, verdict);
            }
        }
        match change {
            // the record first, then the nftables table (the kernel must not answer for the
            // new address or prefix either), the socket filters and the engine
            LinkChange::Address6(_) | LinkChange::Prefix6(_) => {
                self.apply.retry_table(&self.uplinks);
                let w = &mut self.uplinks[usize::from(id)];
                let uplink = &shared.uplinks[w.id];
                if let Some(v6) = &mut w.v6 {
                    let probes = v6.tell(&shared.engine, uplink, &mut w.sockets.filters);
                    self.apply.send_to_lan(probes);
                }
                watch6::log_renumbering(uplink, &change);
                return;
            }
            LinkChange::Router6(_) => return,
            _ => {}
        }
        if let LinkChange::Address(Some(addr)) = change {
            // the record and every copy of the address first, then the health
            self.apply.readdress(&mut self.uplinks, id, addr);
        }
        let w = &mut self.uplinks[usize::from(id)];
        let u = &shared.uplinks[w.id];
        let verdicts = match change {
            LinkChange::Carrier(up) => {
                let up = up && !w.stranded;
                if w.carrier == up {
                    return;
                }
                w.carrier = up;
                tracing::debug!(uplink = %u.name, carrier = up, "carrier");
                let verdict = w.health.carrier(up);
                if verdict.is_none() {
                    self.apply.figures(w);
                }
                vec![verdict]
            }
            LinkChange::Gone => {
                self.apply.interface_gone(w);
                w.carrier = false;
                vec![w.health.carrier(false)]
            }
            LinkChange::Reappeared { ifindex, carrier } => {
                w.stranded = !self.apply.redial(w, ifindex);
                self.poller_stale = true;
                // it has what the kernel says of the new interface: carrier, and the
                // addresses it told already (none, unless it told them all at once)
                w.carrier = carrier && !w.stranded;
                let addressed = w.addressing.current().is_some();
                vec![w.health.carrier(w.carrier), w.health.address(addressed)]
            }
            LinkChange::Address(None) => {
                tracing::info!(uplink = %u.name, dev = %u.dev, address = %u.addr(), "the interface lost the uplink's address");
                vec![w.health.address(false)]
            }
            LinkChange::Address(Some(_)) => vec![w.health.address(true)],
            LinkChange::Gateway(gateway) => {
                self.apply.gateway_changed(w, gateway);
                return;
            }
            LinkChange::Address6(_) | LinkChange::Router6(_) | LinkChange::Prefix6(_) => return,
        };
        for change in verdicts.into_iter().flatten() {
            self.apply.verdict(w, change);
        }
    }
}

/// One round's probes through uplink `w`, whose record is `uplink`: an echo request to every
/// target (on Ethernet once the gateway's MAC is known) and on Ethernet an ARP request to the
/// gateway.
fn send_round(key: &ProbeKey, uplink: &Uplink, w: &mut Watched<'_>, now: u64, metering: &Metering) {
    match uplink.next_hop() {
        Some(next_hop) if !w.targets.is_empty() => {
            let round = w.health.start_round(now);
            for &t in &w.targets {
                let (seq, payload) = key.probe(w.id, t, round);
                let mut frame = [0u8; ECHO_FRAME];
                let frame =
                    echo_request(&mut frame, uplink, next_hop, t, (key.id(), seq), &payload);
                match w.sockets.probe.send(frame) {
                    Ok(_) => metering.probe_bytes(usize::from(w.id), ECHO_FRAME - ETH_HEADER),
                    Err(e) => {
                        tracing::debug!(uplink = %uplink.name, error = %e, "probe not sent")
                    }
                }
            }
        }
        None if !w.targets.is_empty() => w.health.unsent_round(now),
        // without targets the ARP request below is the round's probe (on a point-to-point
        // link, carrier is)
        _ => {
            w.health.start_round(now);
        }
    }
    let (Some(arp), Some(gateway)) = (&w.sockets.arp, uplink.gateway()) else {
        return;
    };
    let to = uplink
        .gateway_mac()
        .filter(|_| w.arp_misses < UNICAST_ARP_TRIES);
    w.arp_misses += 1;
    let request = arp::request(
        uplink.mac(),
        u32::from(uplink.addr()),
        u32::from(gateway),
        to,
    );
    if let Err(e) = arp.send(&request) {
        tracing::debug!(uplink = %uplink.name, error = %e, "ARP request not sent");
    }
}

#[cfg(test)]
mod tests;
