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
//! uplink) and ignore their uplink's health: they never cross the line. Fragmented datagrams
//! are not hairpinned: their pieces go to the gateway's own stack, which reassembles them.

use super::flow::{Dir, FlowKey, ReplyKey, Segment};
use super::icmp::{self, Embedded, ErrorDirection};
use super::packet::{self, End, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Ipv4, PROTO_ICMP};
use super::{DropReason, Engine, Flow, L4Checksum, Timestamp, UplinkId, Verdict, uplink_id};

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

    /// A packet from the LAN to the address of `uplink`, validated as `ip`. (A fragment is
    /// not hairpinned: the gateway's own stack gets it, see `Engine::outbound_fragment`.)
    pub(super) fn hairpin(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        if ip.proto != PROTO_ICMP {
            return self.hairpin_flow(now, pkt, ip, csum, uplink);
        }
        match ip.icmp_type(pkt) {
            ICMP_ECHO_REQUEST => self.hairpin_flow(now, pkt, ip, csum, uplink),
            ICMP_ECHO_REPLY => Ok(self.hairpin_echo_reply(now, pkt, ip, csum, uplink)),
            t if icmp::is_error(t) => self.hairpin_error(pkt, ip, csum, uplink),
            _ => Ok(Verdict::Hairpin),
        }
    }

    /// A TCP segment, UDP datagram or echo request from the LAN to an uplink's address: from
    /// the sender's mapping to the target's, if the target's filter takes it.
    fn hairpin_flow(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        let (int_port, rem_port) = ip.ports(pkt);
        let key = FlowKey {
            int_addr: ip.src,
            rem_addr: ip.dst,
            int_port,
            rem_port,
            proto: ip.proto,
        };
        let seg = Segment::parse(pkt, ip);
        let len = pkt.len();
        let echo = ip.proto == PROTO_ICMP;
        let mut shard = self.shard(ip.dst);
        // the sender's half: its own mapping on this uplink, opened as any new flow's would be
        let ext_port = match shard.flows.get_mut(&key) {
            Some(flow) => {
                seen(flow, now, len);
                self.track(flow, Dir::Out, &seg);
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
            rem_addr: ip.dst,
            rem_port: if echo { 0 } else { ext_port },
            ext_port: if echo { int_port } else { rem_port },
            proto: ip.proto,
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
        self.track(target, Dir::In, &seg);
        // the target answers an echo request by its identifier: the sender's external one
        let to = (
            target.key.int_addr,
            if echo { ext_port } else { target.key.int_port },
        );
        packet::rewrite(pkt, ip, End::Source, ip.dst, ext_port, *csum);
        packet::rewrite(pkt, ip, End::Destination, to.0, to.1, *csum);
        Ok(Verdict::Hairpin)
    }

    /// An echo reply from the LAN to an uplink's address: the answer to a hairpinned echo
    /// request, back to its sender's mapping; or, if no mapping takes it, the answer to the
    /// gateway's own ping.
    fn hairpin_echo_reply(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Verdict {
        let (id, _) = ip.ports(pkt);
        let reply = ReplyKey {
            rem_addr: ip.dst,
            rem_port: 0,
            ext_port: id,
            proto: PROTO_ICMP,
            uplink,
        };
        let mut shard = self.shard(ip.dst);
        let Some(target) = shard.flows.get_reply_mut(&reply) else {
            return Verdict::Hairpin;
        };
        seen(target, now, pkt.len());
        self.track(target, Dir::In, &Segment::default());
        let to = (target.key.int_addr, target.key.int_port);
        packet::rewrite(pkt, ip, End::Source, ip.dst, id, *csum);
        packet::rewrite(pkt, ip, End::Destination, to.0, to.1, *csum);
        Verdict::Hairpin
    }

    /// An ICMP error from the LAN to an uplink's address. About a hairpinned packet (its
    /// quote names the sender's hairpinned flow), it goes to the host that sent that packet;
    /// otherwise it is about the gateway's own traffic, and goes to the gateway's stack. Errors
    /// do not refresh flows.
    fn hairpin_error(
        &self,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
        uplink: UplinkId,
    ) -> Result<Verdict, DropReason> {
        if !icmp::checksum_ok(pkt, ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let emb = Embedded::parse(pkt, ip)?;
        // an error goes back to the sender of the packet it quotes
        if emb.src != ip.dst {
            return Err(DropReason::ForgedIcmpError);
        }
        if emb.proto == PROTO_ICMP {
            return Ok(Verdict::Hairpin);
        }
        let key = FlowKey {
            int_addr: emb.dst,
            rem_addr: emb.src,
            int_port: emb.dst_port,
            rem_port: emb.src_port,
            proto: emb.proto,
        };
        let mut shard = self.shard(ip.dst);
        let Some(sender) = shard.flows.get_mut(&key) else {
            return Ok(Verdict::Hairpin);
        };
        let ext_port = sender.ext_port;
        let reply = ReplyKey {
            rem_addr: ip.dst,
            rem_port: ext_port,
            ext_port: emb.src_port,
            proto: emb.proto,
            uplink,
        };
        let target = shard
            .flows
            .get_reply_mut(&reply)
            .ok_or(DropReason::HairpinNoFlow)?;
        let to = (target.key.int_addr, target.key.int_port);
        icmp::translate(pkt, ip, &emb, ErrorDirection::Outbound, ip.dst, ext_port);
        // the quote now names the sender's external endpoint
        let emb = Embedded::parse(pkt, ip)?;
        icmp::translate(pkt, ip, &emb, ErrorDirection::Inbound, to.0, to.1);
        *csum = L4Checksum::Complete;
        Ok(Verdict::Hairpin)
    }
}

/// Counts a packet of `len` bytes in `flow`, seen at `now`.
fn seen(flow: &mut Flow, now: Timestamp, len: usize) {
    flow.last_seen = now.stamp();
    flow.bytes += len as u64;
}
