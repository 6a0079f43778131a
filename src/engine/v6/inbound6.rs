//! An IPv6 packet from a line, top to bottom: checked, its source and destination judged,
//! its ICMPv6 error translated, or its flow found (closed by default, RFC 6092: nothing
//! unsolicited reaches the LAN, by prefix or not), and its destination translated back.

use super::forward6::Knock;
use super::outbound6::count;
use super::translate6::{self, Rewrite};
use super::{Line6, is_npt_flow};
use crate::engine::flow::{FlowKey, ReplyKey, Segment};
use crate::engine::offload::Carried;
use crate::engine::translate::End;
use crate::engine::wire::icmp::IcmpMessage;
use crate::engine::wire::ipv6::Headers;
use crate::engine::wire::{Ipv6Packet, L4Checksum, PROTO_ICMPV6, PROTO_TCP, icmpv6};
use crate::engine::{Direction, DropReason, Engine, Timestamp, UplinkId};

/// Which of a line's IPv6 addresses a packet from it goes to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arrived {
    /// The line's own address (NAT66): the flow is found by its external port.
    Nat,
    /// An address of the line's prefix (NPTv6), of this LAN address.
    Prefix(u128),
}

impl Engine {
    /// An IPv6 packet from `uplink`; [`Engine::inbound`] sends those here.
    pub(in crate::engine) fn translate_inbound6(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Result<(), DropReason> {
        let len = pkt.len();
        let mut ip = Ipv6Packet::new_checked(pkt)?;
        let h = ip.headers()?;
        if ip.hop_limit() <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        // a fragment: the first piece is translated below like any packet and its mapping
        // kept; a later one follows it (the filter held for the first)
        let fragment = h.fragment.filter(|f| !f.is_atomic());
        if let Some(f) = fragment {
            if *csum == L4Checksum::Partial {
                return Err(DropReason::FragmentPartialChecksum);
            }
            if !f.is_first() {
                let mut shard = self.v6.shard(src);
                let (on, to) = shard.fragments.later(now, &(src, dst, f.ident))?;
                if on != uplink {
                    return Err(DropReason::FragmentWithoutFirst);
                }
                ip.set_dst_addr(to);
                count(&mut shard, uplink, len, Direction::Inbound);
                return Ok(());
            }
        }
        translate6::check_transport6(&ip, &h)?;
        if self.v6.is_from_lan(src) {
            return Err(DropReason::LanSourceFromUplink);
        }
        let line = self.v6.line(uplink).ok_or(DropReason::NotForUplink)?;
        if self.is_own_address6(src) {
            return Err(DropReason::OwnAddressFromUplink);
        }
        let arrived = arrived_at(&line, dst)?;
        if h.proto == PROTO_ICMPV6 {
            let message = IcmpMessage::new_unchecked(ip.from(h.transport_at));
            match message.msg_type() {
                icmpv6::ECHO_REPLY => {}
                // an error fits in the minimum MTU: a fragmented one is made up
                _ if fragment.is_some() => return Err(DropReason::Fragment),
                t if icmpv6::is_error(t) => {
                    return self.inbound_error6(uplink, &line, arrived, &mut ip, &h, len, csum);
                }
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        let (src_port, dst_port) = translate6::ports6(&ip, &h);
        let (rem_port, port) = match h.proto {
            PROTO_ICMPV6 => (0, src_port),
            _ => (src_port, dst_port),
        };
        let seg = if h.proto == PROTO_TCP {
            Segment::of_tcp(ip.from(h.transport_at))
        } else {
            Segment::default()
        };
        let mut shard = self.v6.shard(src);
        let flow = match arrived {
            Arrived::Nat => shard.flows.get_reply_mut(&ReplyKey {
                rem_addr: src,
                rem_port,
                ext_port: port,
                proto: h.proto,
                uplink,
            }),
            Arrived::Prefix(int_addr) => shard.flows.get_mut(&FlowKey {
                int_addr,
                rem_addr: src,
                int_port: port,
                rem_port,
                proto: h.proto,
            }),
        };
        // closed by default: a flow a LAN host opened on this line, at this address, or one a
        // forward opens now
        let flow = flow
            .filter(|f| f.uplink == uplink && f.epoch == line.epoch)
            .filter(|f| is_npt_flow(f) == matches!(arrived, Arrived::Prefix(_)));
        let (host, host_port) = match flow {
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += len as u64;
                self.track6(flow, Direction::Inbound, &seg, carried);
                self.consider_fast_path6(flow);
                (flow.key.int_addr, flow.key.int_port)
            }
            None => {
                let knock = Knock {
                    uplink,
                    arrived,
                    proto: h.proto,
                    rem_addr: src,
                    rem_port,
                    port,
                };
                self.open_forwarded6(&mut shard, now, &knock, &seg, len, line.epoch)?
            }
        };
        let to = match arrived {
            Arrived::Nat => Rewrite::Nat(host, host_port),
            Arrived::Prefix(int_addr) => Rewrite::Prefix(int_addr),
        };
        if let Some(f) = fragment {
            let int_addr = match to {
                Rewrite::Nat(a, _) | Rewrite::Prefix(a) => a,
            };
            shard
                .fragments
                .first(now, (src, dst, f.ident), uplink, int_addr)?;
        }
        translate6::rewrite_end6(&mut ip, &h, End::Destination, to, *csum);
        count(&mut shard, uplink, len, Direction::Inbound);
        Ok(())
    }

    /// Whether `addr` is a line's own IPv6 address, or in the prefix a line translates to.
    fn is_own_address6(&self, addr: u128) -> bool {
        self.v6.lines.load().iter().any(|l| {
            l.facts.addr == Some(addr) || l.npt.is_some_and(|n| n.external().contains(addr))
        })
    }

    /// An ICMPv6 error from the internet about a packet that left through `uplink`: found by
    /// the packet it quotes, rewritten with it; its source (the router that sent it: a Packet
    /// Too Big's above all) kept. Errors do not refresh the flow.
    #[allow(clippy::too_many_arguments)]
    fn inbound_error6(
        &self,
        uplink: UplinkId,
        line: &Line6,
        arrived: Arrived,
        ip: &mut Ipv6Packet<&mut [u8]>,
        h: &Headers,
        len: usize,
        csum: &mut L4Checksum,
    ) -> Result<(), DropReason> {
        if !translate6::icmp_checksum_ok6(ip, h, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let quoted = translate6::quoted6(ip, h)?;
        if quoted.src_addr() != ip.dst_addr() {
            return Err(DropReason::NoFlow);
        }
        if self.is_own_address6(quoted.dst_addr()) {
            return Err(DropReason::OwnAddressFromUplink);
        }
        let (src_port, dst_port) = match quoted.protocol() {
            PROTO_ICMPV6 => (quoted.src_port(), 0),
            _ => (quoted.src_port(), quoted.dst_port()),
        };
        let (proto, rem_addr) = (quoted.protocol(), quoted.dst_addr());
        let mut shard = self.v6.shard(rem_addr);
        let flow = match arrived {
            Arrived::Nat => shard.flows.get_reply_mut(&ReplyKey {
                rem_addr,
                rem_port: dst_port,
                ext_port: src_port,
                proto,
                uplink,
            }),
            Arrived::Prefix(int_addr) => shard.flows.get_mut(&FlowKey {
                int_addr,
                rem_addr,
                int_port: src_port,
                rem_port: dst_port,
                proto,
            }),
        };
        let flow = flow
            .filter(|f| f.uplink == uplink && f.epoch == line.epoch)
            .filter(|f| is_npt_flow(f) == matches!(arrived, Arrived::Prefix(_)))
            .ok_or(DropReason::NoFlow)?;
        let to = match arrived {
            Arrived::Nat => Rewrite::Nat(flow.key.int_addr, flow.key.int_port),
            Arrived::Prefix(int_addr) => Rewrite::Prefix(int_addr),
        };
        translate6::translate_error6(ip, h, Direction::Inbound, to);
        *csum = L4Checksum::Complete;
        count(&mut shard, uplink, len, Direction::Inbound);
        Ok(())
    }
}

/// Where on `line` a packet to `dst` arrived.
fn arrived_at(line: &Line6, dst: u128) -> Result<Arrived, DropReason> {
    if line.facts.addr == Some(dst) {
        return Ok(Arrived::Nat);
    }
    match &line.npt {
        Some(npt) if npt.external().contains(dst) => npt
            .inbound(dst)
            .map(Arrived::Prefix)
            .ok_or(DropReason::Nptv6Untranslatable),
        _ => Err(DropReason::NotForUplink),
    }
}
