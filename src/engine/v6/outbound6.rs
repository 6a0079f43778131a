//! An IPv6 packet from the LAN, top to bottom: checked and its extension headers walked, a
//! later fragment sent after its first, an ICMPv6 error translated, or its flow found or
//! opened (on a line chosen as IPv4's are), and its source translated by the line's prefix
//! or to its address.

use super::translate6::{self, Rewrite};
use super::{Line6, Shard6, is_npt_port};
use crate::engine::family::V6;
use crate::engine::flow::{Flow, FlowKey, Segment, TcpState};
use crate::engine::hosts::Network;
use crate::engine::nat::{self, Endpoint};
use crate::engine::offload::Carried;
use crate::engine::translate::End;
use crate::engine::wire::ipv6::Headers;
use crate::engine::wire::{Ipv6Packet, L4Checksum, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, icmpv6};
use crate::engine::wire::{icmp::IcmpMessage, tcp};
use crate::engine::{Direction, DropReason, Engine, Timestamp, UplinkId, Verdict, lock};

use std::sync::atomic::Ordering;

/// What an outbound packet's flow says should happen to it.
enum Found {
    Forward(UplinkId, u16),
    Reset,
    Move,
    New,
}

impl Engine {
    /// An IPv6 packet from the LAN; [`Engine::outbound`] sends those here.
    pub(in crate::engine) fn translate_outbound6(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Result<Verdict, DropReason> {
        let len = pkt.len();
        let mut ip = Ipv6Packet::new_checked(pkt)?;
        let h = ip.headers()?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if is_link_scope(src, dst) {
            return Err(DropReason::Ipv6LinkScope);
        }
        // IPv6 not set up: told so, the host falls back to IPv4 at once
        if self.v6.lan_nets.is_empty() {
            return Err(DropReason::NoIpv6Uplink);
        }
        if !self.v6.is_from_lan(src) {
            return Err(DropReason::NotFromLan);
        }
        let fragment = h.fragment.filter(|f| !f.is_atomic());
        if let Some(f) = fragment {
            if *csum == L4Checksum::Partial {
                return Err(DropReason::FragmentPartialChecksum);
            }
            if !f.is_first() {
                let mut shard = self.v6.shard(dst);
                let (uplink, from) = shard.fragments.later(now, &(src, dst, f.ident))?;
                ip.set_src_addr(from);
                count(&mut shard, uplink, len, Direction::Outbound);
                return Ok(Verdict::Uplink(uplink));
            }
        }
        translate6::check_transport6(&ip, &h)?;
        if h.proto == PROTO_ICMPV6 {
            let message = IcmpMessage::new_unchecked(ip.from(h.transport_at));
            match message.msg_type() {
                icmpv6::ECHO_REQUEST => {}
                t if icmpv6::is_error(t) => {
                    return self
                        .outbound_error6(&mut ip, &h, len, csum)
                        .map(Verdict::Uplink);
                }
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        let (int_port, rem_port) = translate6::ports6(&ip, &h);
        let key = FlowKey {
            int_addr: src,
            rem_addr: dst,
            int_port,
            rem_port,
            proto: h.proto,
        };
        let seg = if h.proto == PROTO_TCP {
            Segment::of_tcp(ip.from(h.transport_at))
        } else {
            Segment::default()
        };
        let lines = self.v6.lines.load();
        let mut shard = self.v6.shard(dst);
        let mut verifies = false;
        let found = match shard.flows.get_mut(&key) {
            Some(flow) if flow.tcp.is_resetting() && seg.flags & tcp::RST == 0 => Found::Reset,
            Some(flow)
                if key.proto != PROTO_TCP
                    && self.must_move6(flow, &lines[usize::from(flow.uplink)]) =>
            {
                Found::Move
            }
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += len as u64;
                // the host got the SYN-ACK sent to its address: a host, not a made-up source
                verifies = key.proto == PROTO_TCP && flow.tcp.acknowledges_syn_ack(&seg);
                self.track6(flow, Direction::Outbound, &seg, carried);
                self.consider_fast_path6(flow);
                Found::Forward(flow.uplink, flow.ext_port)
            }
            None => Found::New,
        };
        if verifies {
            lock(&self.v6.nat).verify(key.int_addr);
        }
        let (uplink, ext_port) = match found {
            Found::Forward(uplink, port) => (uplink, port),
            Found::New => self.open_flow6(&mut shard, now, key, &seg, len, &lines)?,
            Found::Move => {
                self.end_flow6(&mut shard, &key, now);
                self.moved.fetch_add(1, Ordering::Relaxed);
                self.open_flow6(&mut shard, now, key, &seg, len, &lines)?
            }
            Found::Reset => {
                super::answer6::reset_in_place6(ip, &h);
                *csum = L4Checksum::Complete;
                self.resets.fetch_add(1, Ordering::Relaxed);
                self.end_flow6(&mut shard, &key, now);
                return Ok(Verdict::Tun);
            }
        };
        let line = &lines[usize::from(uplink)];
        let to = rewrite_for(line, src, ext_port).ok_or(DropReason::Nptv6Untranslatable)?;
        if let Some(f) = fragment {
            let from = match to {
                Rewrite::Nat(a, _) | Rewrite::Prefix(a) => a,
            };
            shard
                .fragments
                .first(now, (src, dst, f.ident), uplink, from)?;
        }
        translate6::rewrite_end6(&mut ip, &h, End::Source, to, *csum);
        count(&mut shard, uplink, len, Direction::Outbound);
        Ok(Verdict::Uplink(uplink))
    }

    /// Opens the IPv6 flow of a LAN host's packet: its host's share first, then a line that
    /// can translate its source (pin, its UDP socket's line, its destination's, the weighted
    /// pick), then a port of that line's pool unless the line translates it by prefix.
    fn open_flow6(
        &self,
        shard: &mut Shard6,
        now: Timestamp,
        key: FlowKey<V6>,
        seg: &Segment,
        len: usize,
        lines: &[Line6],
    ) -> Result<(UplinkId, u16), DropReason> {
        let answers_syn = seg.flags & (tcp::SYN | tcp::ACK) == tcp::SYN | tcp::ACK;
        if key.proto == PROTO_TCP && (seg.flags & tcp::RST != 0 || answers_syn) {
            return Err(DropReason::NoFlow);
        }
        if self.room.is_full() {
            return Err(DropReason::FlowTableFull);
        }
        let (uplink, current) = self.choose_uplink6(shard, &key, now, lines)?;
        let line = &lines[usize::from(uplink)];
        let by_prefix = line.ext_of(key.int_addr).is_some_and(|(_, npt)| npt);
        let network = Network::of(key.int_addr, &self.v6.lan_nets);
        let mut nat = lock(&self.v6.nat);
        nat.admit(key.int_addr, network)
            .map_err(DropReason::of_refusal)?;
        let ext_port = if by_prefix {
            0
        } else {
            let endpoint = Endpoint {
                addr: key.int_addr,
                port: key.int_port,
                proto: key.proto,
                uplink,
            };
            match nat.acquire(endpoint, current) {
                Ok(port) => port,
                Err(e) => {
                    nat.unadmit(key.int_addr, now);
                    return Err(match e {
                        nat::Exhausted::Pool => DropReason::PortsExhausted,
                        nat::Exhausted::Host(refusal) => DropReason::of_refusal(refusal),
                    });
                }
            }
        };
        drop(nat);
        let flow = Flow {
            key,
            last_seen: now.stamp(),
            ext_port,
            uplink,
            tcp: TcpState::opened(seg),
            hits: 1,
            on_fast_path: false,
            bytes: len as u64,
            epoch: line.epoch,
        };
        let counters = &mut shard.uplinks[usize::from(uplink)];
        counters.flows += 1;
        // from a forwarded port of a line that keeps ports: the forward's, bound to nothing
        if !(by_prefix && self.own_forwarded6(&flow))
            && shard.affinity.attach(key.rem_addr, uplink, now)
        {
            counters.destinations += 1;
        }
        shard.flows.insert(flow);
        self.room.added();
        Ok((uplink, ext_port))
    }

    /// Pin (while its line's IPv6 is up; refused if strict), else a UDP socket's line, else
    /// the destination's line, else the weighted pick: each only if the line can translate
    /// the source. Returns the line and whether the mapping is the socket's newest.
    fn choose_uplink6(
        &self,
        shard: &Shard6,
        key: &FlowKey<V6>,
        now: Timestamp,
        lines: &[Line6],
    ) -> Result<(UplinkId, bool), DropReason> {
        let serves = |u: UplinkId| lines[usize::from(u)].serves(key.int_addr);
        let mut select = lock(&self.v6.select);
        match self.v6.pins.load().lookup(key.rem_addr) {
            Some(pin) if select.is_eligible(pin.uplink) && serves(pin.uplink) => {
                return Ok((pin.uplink, false));
            }
            Some(pin) if pin.strict => return Err(DropReason::PinnedUplinkDown),
            _ => {}
        }
        if key.proto == PROTO_UDP && self.udp_endpoint_affinity.load(Ordering::Relaxed) {
            let eligible = (0..lines.len())
                .filter(|&i| select.is_eligible(crate::engine::uplink_id(i)))
                .fold(0, |m, i| m | crate::engine::uplink_bit(i));
            let newest = lock(&self.v6.nat).newest_uplink_of(
                key.int_addr,
                key.int_port,
                key.proto,
                eligible,
            );
            if let Some(u) = newest.filter(|&u| serves(u)) {
                return Ok((u, true));
            }
        }
        if let Some(u) = shard.affinity.lookup(key.rem_addr, now)
            && select.is_eligible(u)
            && serves(u)
        {
            return Ok((u, true));
        }
        // the weighted pick, past lines that cannot take this source
        for _ in 0..lines.len() {
            match select.weighted() {
                Some(u) if serves(u) => return Ok((u, true)),
                Some(_) => continue,
                None => break,
            }
        }
        Err(DropReason::NoIpv6Uplink)
    }

    /// An ICMPv6 error from the LAN about a packet wanlb delivered there: it must quote a
    /// packet of a live flow as the remote end sent it, and go back to that packet's sender.
    fn outbound_error6(
        &self,
        ip: &mut Ipv6Packet<&mut [u8]>,
        h: &Headers,
        len: usize,
        csum: &mut L4Checksum,
    ) -> Result<UplinkId, DropReason> {
        if !translate6::icmp_checksum_ok6(ip, h, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let quoted = translate6::quoted6(ip, h)?;
        if quoted.protocol() == PROTO_ICMPV6 {
            return Err(DropReason::UnsupportedIcmp);
        }
        if ip.dst_addr() != quoted.src_addr() {
            return Err(DropReason::ForgedIcmpError);
        }
        let key = FlowKey {
            int_addr: quoted.dst_addr(),
            rem_addr: quoted.src_addr(),
            int_port: quoted.dst_port(),
            rem_port: quoted.src_port(),
            proto: quoted.protocol(),
        };
        let lines = self.v6.lines.load();
        let mut shard = self.v6.shard(key.rem_addr);
        let flow = shard
            .flows
            .get_mut(&key)
            .ok_or(DropReason::ForgedIcmpError)?;
        let (uplink, ext_port) = (flow.uplink, flow.ext_port);
        let line = &lines[usize::from(uplink)];
        if line.epoch != flow.epoch {
            return Err(DropReason::ForgedIcmpError);
        }
        let to =
            rewrite_for(line, key.int_addr, ext_port).ok_or(DropReason::Nptv6Untranslatable)?;
        translate6::translate_error6(ip, h, Direction::Outbound, to);
        *csum = L4Checksum::Complete;
        count(&mut shard, uplink, len, Direction::Outbound);
        Ok(uplink)
    }
}

/// Whether a packet from `src` to `dst` stays on its link: from the unspecified address or
/// fe80::/10, or to ff00::/8.
fn is_link_scope(src: u128, dst: u128) -> bool {
    src == 0 || src >> 118 == 0x3fa || dst >> 120 == 0xff
}

/// How a flow of the LAN address `src` with external port `ext_port` (0: by prefix) is
/// translated on `line`; `None` if it cannot be (an all-ones word under NPTv6).
pub(super) fn rewrite_for(line: &Line6, src: u128, ext_port: u16) -> Option<Rewrite> {
    if is_npt_port(ext_port) {
        line.npt?.outbound(src).map(Rewrite::Prefix)
    } else {
        line.facts.addr.map(|a| Rewrite::Nat(a, ext_port))
    }
}

pub(super) fn count(shard: &mut Shard6, uplink: UplinkId, bytes: usize, dir: Direction) {
    let c = &mut shard.uplinks[usize::from(uplink)];
    match dir {
        Direction::Outbound => {
            c.outbound_packets += 1;
            c.outbound_bytes += bytes as u64;
        }
        Direction::Inbound => {
            c.inbound_packets += 1;
            c.inbound_bytes += bytes as u64;
        }
    }
}
