//! Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7): a LAN host's packet to an
//! uplink's address and a NAT port reaches the LAN host whose mapping holds that port, as if
//! it had gone out and come back in.
//!
//! Such a packet belongs to two flows at once. For its sender it is an outbound packet to a
//! remote end that happens to be the uplink's address: it opens or follows the sender's flow
//! there, on that uplink, so it comes from the sender's own mapping (REQ-9a: seen from the
//! sender's external address and port). For its target it is an inbound packet from that
//! external address and port to the target's mapping, filtered as any inbound packet is: it
//! is taken only if the target has a flow to the sender's external address and port, that is
//! if the target sent there first, as hole punching does (address- and port-dependent
//! filtering). Both flows name the uplink's address as their remote end, so they live in one
//! shard.
//!
//! ICMP echo: the identifier is the "port" of both ends, as conntrack takes it. An echo
//! request to an uplink's address whose identifier is another host's external identifier there
//! goes to that host (if it pinged the uplink's address from that identifier: the filter),
//! carrying the sender's external identifier; the host's echo reply, to the uplink's address
//! with that identifier, goes back to the sender. Echo messages no mapping takes, and ICMP
//! errors that quote no hairpinned flow, go to the gateway's own stack untouched
//! ([`Verdict::Hairpin`]), which answers them as it answers the internet.
//!
//! An ICMP error about a hairpinned packet (RFC 5508 REQ-7) is translated twice: as an error
//! from the LAN for the host that sends it (the quoted destination and the outer source), then
//! as an error from outside for the host whose packet it quotes (the quoted source, and the
//! outer destination: REQ-7a).
//!
//! Hairpinned flows stay in userspace (the fast path would send their packets out of the
//! uplink) and ignore their uplink's health: they never leave through it. Fragmented datagrams
//! are not hairpinned: their pieces go to the gateway's own stack, which reassembles them.

use super::flow::{FlowKey, ReplyKey, Segment};
use super::translate::{self, End};
use super::wire::icmp::{ECHO_REPLY, ECHO_REQUEST};
use super::wire::{Ipv4Packet, L4Checksum, PROTO_ICMP};
use super::{Direction, DropReason, Engine, Flow, Timestamp, UplinkId, Verdict, uplink_id};

impl Engine {
    /// The uplink whose address `addr` is now, if any.
    pub(super) fn uplink_at(&self, addr: u32) -> Option<UplinkId> {
        (0..self.addrs.len())
            .map(uplink_id)
            .find(|&u| self.addr_of(u).0 == addr)
    }

    /// Whether `flow` is hairpinned: its remote end is its own uplink's address.
    pub(super) fn is_hairpin(&self, flow: &Flow) -> bool {
        flow.key.rem_addr == self.ext_addr(flow)
    }

    /// A packet from the LAN to the address of `uplink` (`len` bytes as it came). (A fragment
    /// is not hairpinned: the gateway's own stack gets it, see `Engine::outbound_fragment`.)
    pub(super) fn hairpin(
        &self,
        now: Timestamp,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        if ip.protocol() != PROTO_ICMP {
            return self.hairpin_flow(now, ip, len, csum, uplink);
        }
        let message = translate::icmp(ip);
        let (msg_type, is_error) = (message.msg_type(), message.is_error());
        match msg_type {
            ECHO_REQUEST => self.hairpin_flow(now, ip, len, csum, uplink),
            ECHO_REPLY => Ok(self.hairpin_echo_reply(now, ip, len, csum, uplink)),
            _ if is_error => self.hairpin_error(ip, csum, uplink),
            _ => Ok(Verdict::Hairpin),
        }
    }

    /// A TCP segment, UDP datagram or echo request from the LAN to an uplink's address: from
    /// the sender's mapping to the target's, if the target's filter takes it.
    fn hairpin_flow(
        &self,
        now: Timestamp,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        let (int_port, rem_port) = translate::ports(ip);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let key = FlowKey {
            int_addr: src,
            rem_addr: dst,
            int_port,
            rem_port,
            proto: ip.protocol(),
        };
        let seg = Segment::of(ip);
        let echo = key.proto == PROTO_ICMP;
        let mut shard = self.shard(dst);
        // the sender's half: its own mapping on this uplink, opened as any new flow's would be
        let ext_port = match shard.flows.get_mut(&key) {
            Some(flow) => {
                seen(flow, now, len);
                self.track(flow, Direction::Outbound, &seg, None);
                flow.ext_port
            }
            None => match self.open_flow(&mut shard, now, key, &seg, len, Some(uplink)) {
                Ok((_, port)) => port,
                // a host out of identifiers can still ping the gateway
                Err(_) if echo => return Ok(Verdict::Hairpin),
                Err(reason) => return Err(reason),
            },
        };
        // the target's half, as if from outside: from the sender's external endpoint (an echo
        // request names its target by its identifier, and has no remote port)
        let reply = ReplyKey {
            rem_addr: dst,
            rem_port: if echo { 0 } else { ext_port },
            ext_port: if echo { int_port } else { rem_port },
            proto: key.proto,
            uplink,
        };
        let Some(target) = shard.flows.get_reply_mut(&reply) else {
            // the gateway answers an echo request no mapping takes, as from the internet
            return if echo {
                Ok(Verdict::Hairpin)
            } else {
                Err(DropReason::HairpinNoFlow)
            };
        };
        seen(target, now, len);
        self.track(target, Direction::Inbound, &seg, None);
        // the target answers an echo request by its identifier: the sender's external one
        let to = (
            target.key.int_addr,
            if echo { ext_port } else { target.key.int_port },
        );
        translate::rewrite_end(ip, End::Source, dst, ext_port, *csum);
        translate::rewrite_end(ip, End::Destination, to.0, to.1, *csum);
        Ok(Verdict::Hairpin)
    }

    /// An echo reply from the LAN to an uplink's address: the answer to a hairpinned echo
    /// request, back to its sender's mapping; or, if no mapping takes it, the answer to the
    /// gateway's own ping.
    fn hairpin_echo_reply(
        &self,
        now: Timestamp,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Verdict {
        let (id, _) = translate::ports(ip);
        let dst = ip.dst_addr();
        let reply = ReplyKey {
            rem_addr: dst,
            rem_port: 0,
            ext_port: id,
            proto: PROTO_ICMP,
            uplink,
        };
        let mut shard = self.shard(dst);
        let Some(target) = shard.flows.get_reply_mut(&reply) else {
            return Verdict::Hairpin;
        };
        seen(target, now, len);
        self.track(target, Direction::Inbound, &Segment::default(), None);
        let to = (target.key.int_addr, target.key.int_port);
        translate::rewrite_end(ip, End::Source, dst, id, *csum);
        translate::rewrite_end(ip, End::Destination, to.0, to.1, *csum);
        Verdict::Hairpin
    }

    /// An ICMP error from the LAN to an uplink's address. About a hairpinned packet (its
    /// quote names the sender's hairpinned flow), it goes to the host that sent that packet;
    /// otherwise it is about the gateway's own traffic, and goes to the gateway's stack. Errors
    /// do not refresh flows.
    fn hairpin_error(
        &self,
        ip: &mut Ipv4Packet<&mut [u8]>,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        if !translate::icmp_checksum_ok(ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let dst = ip.dst_addr();
        let quoted = translate::quoted(ip)?;
        // an error goes back to the sender of the packet it quotes
        if quoted.src_addr() != dst {
            return Err(DropReason::ForgedIcmpError);
        }
        if quoted.protocol() == PROTO_ICMP {
            return Ok(Verdict::Hairpin);
        }
        let (src_port, dst_port) = translate::quoted_ports(&quoted);
        let key = FlowKey {
            int_addr: quoted.dst_addr(),
            rem_addr: quoted.src_addr(),
            int_port: dst_port,
            rem_port: src_port,
            proto: quoted.protocol(),
        };
        let mut shard = self.shard(dst);
        let Some(sender) = shard.flows.get_mut(&key) else {
            return Ok(Verdict::Hairpin);
        };
        let ext_port = sender.ext_port;
        let reply = ReplyKey {
            rem_addr: dst,
            rem_port: ext_port,
            ext_port: src_port,
            proto: key.proto,
            uplink,
        };
        let target = shard
            .flows
            .get_reply_mut(&reply)
            .ok_or(DropReason::HairpinNoFlow)?;
        let to = (target.key.int_addr, target.key.int_port);
        translate::translate_error(ip, Direction::Outbound, dst, ext_port);
        // the quote now names the sender's external endpoint
        translate::translate_error(ip, Direction::Inbound, to.0, to.1);
        *csum = L4Checksum::Complete;
        Ok(Verdict::Hairpin)
    }
}

/// Counts a packet of `len` bytes in `flow`, seen at `now`.
fn seen(flow: &mut Flow, now: Timestamp, len: usize) {
    flow.last_seen = now.stamp();
    flow.bytes += len as u64;
}
