//! Complete packets for a socket that takes no virtio-net header: what a device that offloads
//! nothing would be handed. A partial checksum is completed, and a GSO super-packet is cut into
//! the segments the kernel would have cut it into (TCP: sequence numbers, FIN, PSH and CWR;
//! UDP: lengths), each with its own IP header and complete checksums. Point-to-point uplinks
//! need this: see `BareSender` in io/packet_socket.rs.

use super::vnet::{self, VnetHeader};
use crate::engine::checksum::{checksum, pseudo_header};
use crate::engine::wire::tcp::{self, TcpSegment};
use crate::engine::wire::udp::{self, UdpDatagram};
use crate::engine::wire::{Ipv4Packet, PROTO_TCP as TCP, PROTO_UDP as UDP};

const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP_L4: u8 = 5;
/// Set with GSO_TCPV4 when the segments carry ECN: only CWR needs care, done for every TCP.
const GSO_ECN: u8 = 0x80;

/// A frame that cannot be made into complete packets: headers that do not hold together, or
/// a kind of GSO an IPv4 gateway is never handed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsendable;

/// Complete IP packets, one after another in one buffer, reused from batch to batch.
#[derive(Debug, Default)]
pub struct Packets {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Packets {
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// How many packets it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The packets, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.data[s..e])
    }

    /// Adds the complete packets `frame` (a virtio-net header, then an IPv4 packet) makes.
    /// On error nothing is added.
    pub fn add(&mut self, frame: &[u8]) -> Result<(), Unsendable> {
        let (header, ip) = frame
            .split_first_chunk::<{ vnet::LEN }>()
            .ok_or(Unsendable)?;
        let header = VnetHeader::read(header);
        let ip = Ipv4Packet::new_checked(ip).map_err(|_| Unsendable)?;
        let (before, start) = (self.ends.len(), self.data.len());
        let added = match (header.gso_type & !GSO_ECN, ip.protocol()) {
            (GSO_NONE, _) => self.whole(ip.datagram(), &header),
            (GSO_TCPV4, TCP) => self.segments(&ip, &header),
            (GSO_UDP_L4, UDP) => self.segments(&ip, &header),
            _ => Err(Unsendable),
        };
        if added.is_err() {
            self.ends.truncate(before);
            self.data.truncate(start);
        }
        added
    }

    /// `ip` as it is, its checksum completed if `header` says it is partial.
    fn whole(&mut self, ip: &[u8], header: &VnetHeader) -> Result<(), Unsendable> {
        let at = self.data.len();
        self.data.extend_from_slice(ip);
        if header.needs_csum() {
            let start = at + usize::from(header.csum_start);
            let field = start + usize::from(header.csum_offset);
            if field + 2 > self.data.len() {
                return Err(Unsendable);
            }
            // the field holds the pseudo header's sum, which the sum from `start` takes in
            let mut c = checksum(&self.data[start..], 0);
            let udp = Ipv4Packet::new_unchecked(ip).protocol() == UDP;
            if c == 0 && udp && usize::from(header.csum_offset) == udp::field::CHECKSUM.start {
                c = 0xffff; // 0 would mean "no checksum"
            }
            self.data[field..field + 2].copy_from_slice(&c.to_be_bytes());
        }
        self.ends.push(self.data.len());
        Ok(())
    }

    /// The segments of GSO packet `ip` (TCP or UDP): `gso_size` bytes of payload each, the
    /// last one shorter.
    fn segments(&mut self, ip: &Ipv4Packet<&[u8]>, header: &VnetHeader) -> Result<(), Unsendable> {
        let proto = ip.protocol();
        let l4 = ip.payload();
        let l4_header = if proto == TCP {
            let segment = TcpSegment::new_checked(l4).map_err(|_| Unsendable)?;
            segment.header_len()
        } else {
            UdpDatagram::new_checked(l4).map_err(|_| Unsendable)?;
            udp::HEADER_LEN
        };
        let mss = usize::from(header.gso_size);
        if l4_header > l4.len() || mss == 0 {
            return Err(Unsendable);
        }
        let ihl = ip.header_len();
        let headers = ihl + l4_header;
        let payload = &l4[l4_header..];
        if payload.is_empty() {
            return self.whole(ip.datagram(), header);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let id = ip.ident();
        let seq = TcpSegment::new_unchecked(l4).seq_number();
        let count = payload.len().div_ceil(mss);
        for (k, chunk) in payload.chunks(mss).enumerate() {
            let at = self.data.len();
            self.data.extend_from_slice(&ip.datagram()[..headers]);
            self.data.extend_from_slice(chunk);
            let len = u16::try_from(self.data.len() - at).map_err(|_| Unsendable)?;
            let mut segment = Ipv4Packet::new_unchecked(&mut self.data[at..]);
            segment.set_total_len(len);
            // as the kernel's segmentation does: one IP identifier after another
            segment.set_ident(id.wrapping_add(k as u16));
            segment.fill_checksum();
            let l4_len = len - ihl as u16;
            let pseudo = pseudo_header(src, dst, proto, l4_len);
            let l4 = segment.payload_mut();
            if proto == TCP {
                let mut t = TcpSegment::new_unchecked(&mut l4[..]);
                t.set_seq_number(seq.wrapping_add((k * mss) as u32));
                let mut flags = t.flags();
                if k + 1 < count {
                    flags &= !(tcp::FIN | tcp::PSH);
                }
                if k > 0 {
                    flags &= !tcp::CWR;
                }
                t.set_flags(flags);
                t.set_checksum(0);
                let c = checksum(l4, pseudo);
                TcpSegment::new_unchecked(l4).set_checksum(c);
            } else {
                let mut u = UdpDatagram::new_unchecked(&mut l4[..]);
                u.set_len_field(l4_len);
                u.set_checksum(0);
                let c = match checksum(l4, pseudo) {
                    0 => 0xffff,
                    c => c,
                };
                UdpDatagram::new_unchecked(l4).set_checksum(c);
            }
            self.ends.push(self.data.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checksum::fold;
    use wanlb_testkit::{Ipv4Packet, TCP_ACK, TCP_FIN, TCP_PSH};

    const LAN_SIDE: [u8; 4] = [198, 18, 5, 1];
    const SERVER: [u8; 4] = [198, 19, 0, 1];

    /// `packet` as TUN hands it over: the transport checksum partial (the pseudo header's
    /// sum, uncomplemented) when `header` says so, behind the virtio-net header.
    fn frame(packet: &[u8], header: VnetHeader) -> Vec<u8> {
        let mut p = packet.to_vec();
        if header.needs_csum() {
            let l4 = usize::from(header.csum_start);
            let len = (p.len() - l4) as u16;
            let ip = crate::engine::wire::Ipv4Packet::new_checked(&p[..]).unwrap();
            let pseudo = pseudo_header(ip.src_addr(), ip.dst_addr(), ip.protocol(), len);
            let at = l4 + usize::from(header.csum_offset);
            p[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
        }
        let mut f = [0u8; vnet::LEN];
        header.write(&mut f);
        let mut out = f.to_vec();
        out.extend_from_slice(&p);
        out
    }

    fn partial(offset: u16) -> VnetHeader {
        VnetHeader {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: offset,
            ..VnetHeader::default()
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn a_partial_checksum_is_completed_and_a_complete_one_left_alone() {
        let udp = Ipv4Packet::udp(LAN_SIDE, SERVER, 40000, 53, &payload(101)).build();
        let tcp = Ipv4Packet::tcp(LAN_SIDE, SERVER, 40000, 443, &payload(7)).build();
        let mut packets = Packets::default();
        packets.add(&frame(&udp, partial(6))).unwrap();
        packets.add(&frame(&tcp, partial(16))).unwrap();
        packets.add(&frame(&udp, VnetHeader::default())).unwrap();
        let out: Vec<&[u8]> = packets.iter().collect();
        assert_eq!(out, [&udp[..], &tcp[..], &udp[..]]);
    }

    #[test]
    fn a_tcp_gso_packet_becomes_the_segments_the_kernel_would_send() {
        let data = payload(2500);
        let big = |p: Ipv4Packet| p.seq(1000).id(7);
        let gso = big(Ipv4Packet::tcp(LAN_SIDE, SERVER, 40000, 443, &data))
            .flags(TCP_ACK | TCP_PSH | TCP_FIN | tcp::CWR)
            .build();
        let header = VnetHeader {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            hdr_len: 40,
            ..partial(16)
        };
        let mut packets = Packets::default();
        packets.add(&frame(&gso, header)).unwrap();
        let segment = |k: usize, flags: u8| {
            let chunk = &data[k * 1000..data.len().min((k + 1) * 1000)];
            Ipv4Packet::tcp(LAN_SIDE, SERVER, 40000, 443, chunk)
                .seq(1000 + k as u32 * 1000)
                .id(7 + k as u16)
                .flags(flags)
                .build()
        };
        let expected = [
            segment(0, TCP_ACK | tcp::CWR),
            segment(1, TCP_ACK),
            segment(2, TCP_ACK | TCP_PSH | TCP_FIN),
        ];
        let out: Vec<&[u8]> = packets.iter().collect();
        assert_eq!(out, expected.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn a_udp_gso_packet_becomes_datagrams() {
        let data = payload(2001);
        let gso = Ipv4Packet::udp(LAN_SIDE, SERVER, 40000, 443, &data)
            .id(0xffff)
            .build();
        let header = VnetHeader {
            gso_type: GSO_UDP_L4,
            gso_size: 1000,
            ..partial(6)
        };
        let mut packets = Packets::default();
        packets.add(&frame(&gso, header)).unwrap();
        let out: Vec<Vec<u8>> = packets.iter().map(<[u8]>::to_vec).collect();
        let expected: Vec<Vec<u8>> = data
            .chunks(1000)
            .enumerate()
            .map(|(k, chunk)| {
                Ipv4Packet::udp(LAN_SIDE, SERVER, 40000, 443, chunk)
                    .id(0xffffu16.wrapping_add(k as u16))
                    .build()
            })
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn what_cannot_be_made_complete_is_refused_and_adds_nothing() {
        let tcp = Ipv4Packet::tcp(LAN_SIDE, SERVER, 40000, 443, &payload(3000)).build();
        let mut packets = Packets::default();
        packets.add(&frame(&tcp, partial(16))).unwrap();
        let gso = |gso_type, gso_size| VnetHeader {
            gso_type,
            gso_size,
            ..partial(16)
        };
        let whole = frame(&tcp, gso(GSO_TCPV4, 1000));
        let mut beyond = frame(&tcp, partial(16));
        beyond[8..10].copy_from_slice(&3019u16.to_le_bytes());
        let mut short_header = whole.clone();
        short_header[vnet::LEN + 32] = 0x20; // a TCP header of 8 bytes
        for bad in [
            &whole[..5],                             // no header
            &whole[..vnet::LEN + 30],                // cut short
            &frame(&tcp, gso(4, 1000))[..],          // TCP over IPv6
            &frame(&tcp, gso(GSO_UDP_L4, 1000))[..], // UDP GSO on TCP
            &frame(&tcp, gso(GSO_TCPV4, 0))[..],     // no segment size
            &beyond[..],                             // checksum beyond the end
            &short_header[..],                       // no room for TCP's fields
        ] {
            assert_eq!(packets.add(bad), Err(Unsendable));
        }
        assert_eq!(packets.len(), 1);
        assert_eq!(packets.iter().next(), Some(&tcp[..]));
    }
}
