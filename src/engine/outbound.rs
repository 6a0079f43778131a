//! A packet from the LAN, top to bottom: checked, its fragment's place found (a later piece is
//! done there), sent to the hairpin if it goes to an uplink's address, its ICMP error
//! translated, or its flow found or opened, and its source translated.

use super::flow::{FlowKey, Segment};
use super::fragment::Fragment;
use super::offload::Carried;
use super::translate::{self, End};
use super::wire::icmp::ECHO_REQUEST;
use super::wire::{Ipv4Packet, L4Checksum, PROTO_ICMP, PROTO_TCP, ipv4, tcp};
use super::{Direction, DropReason, Engine, Timestamp, UplinkId, Verdict, answer, fragment, lock};

use std::sync::atomic::Ordering;

/// An outbound fragment, once [`Engine::outbound_fragment`] has looked at it.
enum Piece {
    /// The first piece: translate it as a whole packet, then remember its mapping.
    First(Fragment),
    /// A later piece, translated and bound for this uplink.
    Sent(UplinkId),
    /// A piece of a datagram to an uplink's address: not hairpinned, but left to the gateway's
    /// own stack, which reassembles it.
    Local,
}

/// What an outbound packet's flow says should happen to it.
enum Found {
    /// Translate it for this uplink, external port and address.
    Forward(UplinkId, u16, u32),
    /// Its connection is being ended: answer it with a reset.
    Reset,
    /// Its uplink is leaving service: end the flow and open it anew elsewhere.
    Move,
    New,
}

impl Engine {
    /// A packet from the LAN (read from TUN), IPv4 or IPv6 (by its version nibble). On
    /// `Verdict::Uplink` it has been translated to that uplink's address (IPv6: its address or
    /// its prefix): the caller sends it with the ethertype of its version (0x86DD for 6) to the
    /// uplink's router for that family. On `Verdict::Tun` of an IPv6 packet (a reset), the
    /// answer's length is 40 bytes plus its payload length. `csum` says how the kernel left the transport checksum and is
    /// updated if the engine completes it.
    pub fn outbound(&self, now: Timestamp, pkt: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        self.outbound_carried(now, pkt, csum, None)
    }

    /// [`Engine::outbound`] of a TCP reset whose flow the fast path may carry: `carried` is
    /// what the fast path carried of it (read just before), which the
    /// reset is judged by.
    pub fn outbound_carried(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Verdict {
        match self.translate_outbound(now, pkt, csum, carried) {
            Ok(verdict) => verdict,
            Err(reason) => self.dropped(reason),
        }
    }

    pub(super) fn dropped(&self, reason: DropReason) -> Verdict {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
        Verdict::Drop(reason)
    }

    fn translate_outbound(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
        carried: Option<&Carried>,
    ) -> Result<Verdict, DropReason> {
        if ipv4::version_of(pkt) == Some(6) {
            return self.translate_outbound6(now, pkt, csum, carried);
        }
        let len = pkt.len();
        let mut ip = Ipv4Packet::new_checked(pkt)?;
        // a fragment: the first piece is translated below like any packet and its mapping
        // kept; a later piece follows that mapping and is done here
        let first_piece = if ip.is_fragment() {
            match self.outbound_fragment(now, &mut ip, len, *csum)? {
                Piece::First(piece) => Some(piece),
                Piece::Sent(uplink) => return Ok(Verdict::Uplink(uplink)),
                Piece::Local => return Ok(Verdict::Hairpin),
            }
        } else {
            translate::check_transport(&ip)?;
            None
        };
        if !self.is_from_lan(ip.src_addr()) {
            return Err(DropReason::NotFromLan);
        }
        if let Some(uplink) = self.uplink_at(ip.dst_addr()) {
            return self.hairpin(now, &mut ip, len, csum, uplink);
        }
        if ip.protocol() == PROTO_ICMP {
            let message = translate::icmp(&ip);
            match message.msg_type() {
                ECHO_REQUEST => {}
                _ if message.is_error() => {
                    return self.outbound_error(&mut ip, len, csum).map(Verdict::Uplink);
                }
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        let (int_port, rem_port) = translate::ports(&ip);
        let key = FlowKey {
            int_addr: ip.src_addr(),
            rem_addr: ip.dst_addr(),
            int_port,
            rem_port,
            proto: ip.protocol(),
        };
        let seg = Segment::of(&ip);
        let mut shard = self.shard(key.rem_addr);
        let mut embryonic = None;
        let mut verifies = false;
        let found = match shard.flows.get_mut(&key) {
            // the host's own reset ends it anyway: never answer a reset with one
            Some(flow) if flow.tcp.is_resetting() && seg.flags & tcp::RST == 0 => Found::Reset,
            Some(flow) if key.proto != PROTO_TCP && self.must_move(flow) => Found::Move,
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += len as u64;
                // the host got the SYN-ACK sent to its address: a host, not a made-up source
                verifies = key.proto == PROTO_TCP
                    && flow.tcp.acknowledges_syn_ack(&seg)
                    && self.forward_of(flow).is_none();
                embryonic = self.track(flow, Direction::Outbound, &seg, carried);
                self.consider_fast_path(flow);
                Found::Forward(flow.uplink, flow.ext_port, self.ext_addr(flow))
            }
            None => Found::New,
        };
        if verifies {
            lock(&self.nat).verify(key.int_addr);
        }
        self.embryonic_changed(&mut shard, &key, embryonic);
        let opened = |(uplink, port): (UplinkId, u16)| (uplink, port, self.addr_of(uplink).0);
        let (uplink, ext_port, addr) = match found {
            Found::Forward(uplink, port, addr) => (uplink, port, addr),
            Found::New => opened(self.open_flow(&mut shard, now, key, &seg, len, None)?),
            Found::Move => {
                self.end_flow(&mut shard, &key, now);
                self.moved.fetch_add(1, Ordering::Relaxed);
                opened(self.open_flow(&mut shard, now, key, &seg, len, None)?)
            }
            Found::Reset => {
                answer::reset_in_place(ip);
                *csum = L4Checksum::Complete;
                self.resets.fetch_add(1, Ordering::Relaxed);
                // the connection is over: its port goes back, and the same four-tuple may
                // open anew on a healthy uplink
                self.end_flow(&mut shard, &key, now);
                return Ok(Verdict::Tun);
            }
        };
        if let Some(piece) = &first_piece {
            let id = shard.fragments.first(now, piece, uplink, addr)?;
            fragment::rewrite_id(&mut ip, id);
        }
        translate::rewrite_end(&mut ip, End::Source, addr, ext_port, *csum);
        shard.count_outbound(uplink, len);
        Ok(Verdict::Uplink(uplink))
    }

    /// A fragment from the LAN. The first piece comes back, checked, to be translated as a
    /// whole packet is; a later one is translated here by its first piece's mapping: source
    /// address (and identification) and IP header checksum (see [`fragment`]).
    fn outbound_fragment(
        &self,
        now: Timestamp,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: L4Checksum,
    ) -> Result<Piece, DropReason> {
        let piece = Fragment::of(ip)?;
        if csum == L4Checksum::Partial {
            return Err(DropReason::FragmentPartialChecksum);
        }
        if self.uplink_at(piece.key.dst).is_some() {
            return if self.is_from_lan(piece.key.src) {
                Ok(Piece::Local)
            } else {
                Err(DropReason::NotFromLan)
            };
        }
        if piece.is_first() {
            piece.check_first(ip)?;
            return Ok(Piece::First(piece));
        }
        let mut shard = self.shard(piece.key.dst);
        let to = shard.fragments.later(now, &piece)?;
        fragment::rewrite_later(ip, &to);
        shard.count_outbound(to.uplink, len);
        Ok(Piece::Sent(to.uplink))
    }

    /// An ICMP error from the LAN about a packet wanlb delivered there (a port unreachable for
    /// a closed UDP socket, say): it must quote that packet, of a live flow, as the remote end
    /// sent it to the LAN host, and go back to its sender; anything else would leave from an
    /// uplink's address to whomever the LAN host chose. Its source may be any LAN address (a
    /// router in front of the host, RFC 5508 REQ-5c).
    fn outbound_error(
        &self,
        ip: &mut Ipv4Packet<&mut [u8]>,
        len: usize,
        csum: &mut L4Checksum,
    ) -> Result<UplinkId, DropReason> {
        if !translate::icmp_checksum_ok(ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let quoted = translate::quoted(ip)?;
        if quoted.protocol() == PROTO_ICMP {
            return Err(DropReason::UnsupportedIcmp);
        }
        if ip.dst_addr() != quoted.src_addr() {
            return Err(DropReason::ForgedIcmpError);
        }
        let (src_port, dst_port) = translate::quoted_ports(&quoted);
        let key = FlowKey {
            int_addr: quoted.dst_addr(),
            rem_addr: quoted.src_addr(),
            int_port: dst_port,
            rem_port: src_port,
            proto: quoted.protocol(),
        };
        let mut shard = self.shard(key.rem_addr);
        let flow = shard
            .flows
            .get_mut(&key)
            .ok_or(DropReason::ForgedIcmpError)?;
        let (uplink, ext_port) = (flow.uplink, flow.ext_port);
        let addr = self.ext_addr(flow);
        translate::translate_error(ip, Direction::Outbound, addr, ext_port);
        *csum = L4Checksum::Complete;
        shard.count_outbound(uplink, len);
        Ok(uplink)
    }
}
