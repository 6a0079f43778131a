//! A packet from an uplink, top to bottom: checked, its source and destination judged, its
//! ICMP error translated, or its flow found (or, at a forwarded port, opened), and its
//! destination translated back to the LAN endpoint.

use super::flow::{FlowKey, ReplyKey, Segment, TcpState};
use super::offload::Carried;
use super::translate::{self, End};
use super::wire::icmp::ECHO_REPLY;
use super::wire::{Ipv4Packet, L4Checksum, PROTO_ICMP, PROTO_TCP, ipv4, tcp};
use super::{
    Direction, DropReason, Engine, Flow, Shard, Timestamp, UplinkId, Verdict, shard_of, uplink_bit,
};
use std::sync::atomic::Ordering;

impl Engine {
    /// A packet that arrived on `uplink`, IPv4 or IPv6 (ethertype 0x86DD: by its version
    /// nibble). On `Verdict::Tun` it has been translated back to the LAN endpoint.
    pub fn inbound(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict {
        self.inbound_carried(now, uplink, pkt, csum, None)
    }

    /// [`Engine::inbound`] of a TCP reset whose flow the fast path may carry: `carried` is
    /// what the fast path carried of it (read just before), which the reset is judged by.
    pub fn inbound_carried(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Verdict {
        match self.translate_inbound(now, uplink, pkt, csum, carried) {
            Ok(()) => Verdict::Tun,
            Err(reason) => self.dropped(reason),
        }
    }

    fn translate_inbound(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Result<(), DropReason> {
        if ipv4::version_of(pkt) == Some(6) {
            return self.translate_inbound6(now, uplink, pkt, csum, carried);
        }
        let len = pkt.len();
        let mut ip = Ipv4Packet::new_checked(pkt)?;
        if ip.is_fragment() {
            return Err(DropReason::Fragment);
        }
        if ip.ttl() <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        translate::check_transport(&ip)?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        // an uplink has no business sending a LAN source: forged (an error that would seem
        // to come from a LAN neighbour, say)
        if !self.lan_nets.is_empty() && self.is_from_lan(src) {
            return Err(DropReason::LanSourceFromUplink);
        }
        if self.uplink_at(src).is_some() {
            return Err(DropReason::OwnAddressFromUplink);
        }
        if usize::from(uplink) >= self.addrs.len() || dst != self.addr_of(uplink).0 {
            return Err(DropReason::NotForUplink);
        }
        let (src_port, dst_port) = translate::ports(&ip);
        let reply = if ip.protocol() == PROTO_ICMP {
            let message = translate::icmp(&ip);
            match message.msg_type() {
                ECHO_REPLY => {}
                _ if message.is_error() => {
                    return self.inbound_error(uplink, &mut ip, len, csum);
                }
                _ => return Err(DropReason::UnsupportedIcmp),
            }
            ReplyKey {
                rem_addr: src,
                rem_port: 0,
                ext_port: src_port,
                proto: PROTO_ICMP,
                uplink,
            }
        } else {
            ReplyKey {
                rem_addr: src,
                rem_port: src_port,
                ext_port: dst_port,
                proto: ip.protocol(),
                uplink,
            }
        };
        let seg = Segment::of(&ip);
        let mut shard = self.shard(reply.rem_addr);
        let (addr, port) = match shard.flows.get_reply_mut(&reply) {
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += len as u64;
                let embryonic = self.track(flow, Direction::Inbound, &seg, carried);
                self.consider_fast_path(flow);
                let key = flow.key;
                self.embryonic_changed(&mut shard, &key, embryonic);
                (key.int_addr, key.int_port)
            }
            None => self.open_forwarded(&mut shard, now, &reply, &seg, len)?,
        };
        translate::rewrite_end(&mut ip, End::Destination, addr, port, *csum);
        shard.count_inbound(uplink, len);
        Ok(())
    }

    /// Opens the flow a packet from an uplink that matches none opens, if it goes to a
    /// forwarded port (for TCP, if it is a SYN): on the forward's uplink for life, to its LAN
    /// host. Returns that LAN end.
    pub(super) fn open_forwarded(
        &self,
        shard: &mut Shard,
        now: Timestamp,
        reply: &ReplyKey,
        seg: &Segment,
        len: usize,
    ) -> Result<(u32, u16), DropReason> {
        let id = self
            .forwards
            .find(reply.proto, reply.uplink, reply.ext_port)
            .ok_or(DropReason::NoFlow)?;
        if self.off_for_cap.load(Ordering::Relaxed) & uplink_bit(reply.uplink.into()) != 0 {
            return Err(DropReason::ForwardUplinkOff);
        }
        if reply.proto == PROTO_TCP
            && seg.flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) != tcp::SYN
        {
            return Err(DropReason::ForwardNotSyn);
        }
        let forward = self.forwards.get(id);
        let key = FlowKey {
            int_addr: forward.host,
            rem_addr: reply.rem_addr,
            int_port: forward.host_port,
            rem_port: reply.rem_port,
            proto: reply.proto,
        };
        if shard.flows.get(&key).is_some() {
            return Err(DropReason::ForwardClash);
        }
        self.admit_forwarded(shard, key.rem_addr, id, now)?;
        if let Err(reason) = self.make_room(shard, shard_of(key.rem_addr), now) {
            self.forwards.closed(id, key.rem_addr);
            return Err(reason);
        }
        self.make_embryonic_room(shard, id, now);
        shard.flows.insert(Flow {
            key,
            last_seen: now.stamp(),
            ext_port: reply.ext_port,
            uplink: reply.uplink,
            tcp: TcpState::opened_by_remote(seg),
            hits: 1,
            on_fast_path: false,
            bytes: len as u64,
            epoch: self.addr_of(reply.uplink).1,
        });
        self.room.added();
        self.embryonic_changed(shard, &key, Some(Err(id)));
        self.forwards.count_opened(id);
        Ok((forward.host, forward.host_port))
    }

    /// An ICMP error from the internet about a packet that left through `uplink`. Errors do
    /// not refresh the flow: they are not traffic of it.
    fn inbound_error(
        &self,
        uplink: UplinkId,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: &mut L4Checksum,
    ) -> Result<(), DropReason> {
        if !translate::icmp_checksum_ok(ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let quoted = translate::quoted(ip)?;
        if quoted.src_addr() != ip.dst_addr() {
            return Err(DropReason::NoFlow);
        }
        if self.uplink_at(quoted.dst_addr()).is_some() {
            return Err(DropReason::OwnAddressFromUplink);
        }
        let (src_port, dst_port) = translate::quoted_ports(&quoted);
        let reply = ReplyKey {
            rem_addr: quoted.dst_addr(),
            rem_port: dst_port,
            ext_port: src_port,
            proto: quoted.protocol(),
            uplink,
        };
        let mut shard = self.shard(reply.rem_addr);
        let flow = shard
            .flows
            .get_reply_mut(&reply)
            .ok_or(DropReason::NoFlow)?;
        let (addr, port) = (flow.key.int_addr, flow.key.int_port);
        translate::translate_error(ip, Direction::Inbound, addr, port);
        *csum = L4Checksum::Complete;
        shard.count_inbound(uplink, len);
        Ok(())
    }
}
