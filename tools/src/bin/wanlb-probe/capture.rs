//! `capture-verify`: frames captured on a link, every checksum checked, GSO packets cut into
//! the segments the wire would carry.

use super::*;

#[derive(Default)]
pub(crate) struct Tally {
    complete: u64,
    partial: u64,
    gso: u64,
    /// Segments cut from GSO packets, each checked as the wire would carry it.
    segments: u64,
    /// IP fragments: only their header checksum can be checked one by one.
    fragments: u64,
    bad: Vec<String>,
}

/// Where the transport checksum of `proto` is, from the start of its header.
pub(crate) fn checksum_field(proto: u8) -> Option<usize> {
    match proto {
        wire::PROTO_TCP => Some(wire::tcp::field::CHECKSUM.start),
        wire::PROTO_UDP => Some(wire::udp::field::CHECKSUM.start),
        wire::PROTO_ICMP => Some(wire::icmp::field::CHECKSUM.start),
        _ => None,
    }
}

/// Checks one frame (`vnet` header, then Ethernet) and records the outcome.
pub(crate) fn verify_frame(h: &VnetHeader, frame: &[u8], t: &mut Tally) {
    use wanlb_testkit::checksum::{fold, pseudo_header, sum};
    let Some(Ok(ip)) = frame.get(14..).map(wire::Ipv4Packet::new_checked) else {
        return;
    };
    let (proto, src, dst) = (ip.protocol(), ip.src_addr(), ip.dst_addr());
    if ip.is_fragment() {
        t.fragments += 1;
        if !ip.verify_checksum() {
            t.bad.push(format!(
                "IPv4 header checksum of a fragment: {} -> {}",
                Ipv4Addr::from(src),
                Ipv4Addr::from(dst)
            ));
        }
        return;
    }
    let l4 = ip.payload();
    let total = ip.total_len();
    let Some(at) = checksum_field(proto).filter(|_| l4.len() >= 8) else {
        return;
    };
    let describe = |what: &str| {
        format!(
            "{what}: proto {proto} {} -> {} len {total}",
            Ipv4Addr::from(src),
            Ipv4Addr::from(dst)
        )
    };
    if !ip.verify_checksum() {
        t.bad.push(describe("IPv4 header checksum"));
        return;
    }
    let Some(field) = l4.get(at..at + 2).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        t.bad.push(describe("transport header cut short"));
        return;
    };
    let pseudo = if proto == wire::PROTO_ICMP {
        0
    } else {
        pseudo_header(src, dst, proto, l4.len() as u16)
    };
    if h.gso_type != 0 {
        t.gso += 1;
        if h.needs_csum() {
            match segment_and_check(&ip, h) {
                Ok(n) => t.segments += n,
                Err(e) => t.bad.push(describe(&e)),
            }
        }
    }
    if h.needs_csum() {
        t.partial += 1;
        let placed =
            usize::from(h.csum_start) == 14 + ip.header_len() && usize::from(h.csum_offset) == at;
        // what the device will compute equals the checksum of the final segment iff the
        // field holds the pseudo-header sum (one's complement: 0 and 0xffff are equal)
        let ok = fold(u64::from(field) + (0xffff - u64::from(fold(pseudo)))).is_multiple_of(0xffff);
        if !placed || !ok {
            t.bad.push(describe(&format!(
                "partial checksum {field:04x}, pseudo {:04x}, start {} offset {}",
                fold(pseudo),
                h.csum_start,
                h.csum_offset
            )));
        }
    } else {
        t.complete += 1;
        if !(proto == wire::PROTO_UDP && field == 0) && fold(sum(l4, pseudo)) != 0xffff {
            t.bad.push(describe(&format!("checksum {field:04x}")));
        }
    }
}

pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_UDP_L4: u8 = 5;

/// Cuts a GSO super-packet into the segments the device will send, the way the kernel's
/// TCP/UDP segmentation does (per segment: lengths, sequence number, flags, and the partial
/// checksum adjusted for the segment's length), completes each segment's checksum as the
/// device would, and checks it against a checksum computed from scratch. Returns how many
/// segments were checked.
pub(crate) fn segment_and_check(
    ip: &wire::Ipv4Packet<&[u8]>,
    h: &VnetHeader,
) -> std::result::Result<u64, String> {
    use wanlb_testkit::checksum::{checksum, fold, pseudo_header, sum};
    let gso_type = h.gso_type & 0x7f;
    let mss = usize::from(h.gso_size);
    let (proto, src, dst) = (ip.protocol(), ip.src_addr(), ip.dst_addr());
    let l4 = ip.payload();
    let (hlen, at) = match (gso_type, proto) {
        (GSO_TCPV4, wire::PROTO_TCP) => {
            let segment = wire::TcpSegment::new_checked(l4).map_err(|e| format!("TCP: {e:?}"))?;
            (segment.header_len(), wire::tcp::field::CHECKSUM.start)
        }
        (GSO_UDP_L4, wire::PROTO_UDP) => (wire::udp::HEADER_LEN, wire::udp::field::CHECKSUM.start),
        _ => return Err(format!("GSO type {gso_type} on protocol {proto}")),
    };
    if mss == 0 || hlen > l4.len() {
        return Err(format!("GSO size {mss}, header {hlen}"));
    }
    let payload = &l4[hlen..];
    let field = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let mut n = 0;
    for (k, chunk) in payload.chunks(mss).enumerate() {
        let mut seg = l4[..hlen].to_vec();
        seg.extend_from_slice(chunk);
        let seg_len = seg.len() as u16;
        if gso_type == GSO_TCPV4 {
            let mut t = wire::TcpSegment::new_unchecked(&mut seg[..]);
            t.set_seq_number(t.seq_number().wrapping_add((k * mss) as u32));
            let mut flags = t.flags();
            if (k + 1) * mss < payload.len() {
                flags &= !(wire::tcp::FIN | wire::tcp::PSH); // only on the last segment
            }
            if k > 0 {
                flags &= !wire::tcp::CWR; // only on the first
            }
            t.set_flags(flags);
        } else {
            wire::UdpDatagram::new_unchecked(&mut seg[..]).set_len_field(seg_len);
        }
        // the partial checksum carries the pseudo header with the whole length; the
        // segmentation swaps in the segment's length
        let adjusted = fold(u64::from(field) + u64::from(!(l4.len() as u16)) + u64::from(seg_len));
        seg[at..at + 2].copy_from_slice(&adjusted.to_be_bytes());
        let on_wire = !fold(sum(&seg, 0));
        seg[at..at + 2].copy_from_slice(&[0, 0]);
        let from_scratch = checksum(&seg, pseudo_header(src, dst, proto, seg_len));
        let same = on_wire == from_scratch
            || (on_wire ^ from_scratch == 0xffff && (on_wire == 0 || from_scratch == 0));
        if !same {
            return Err(format!(
                "segment {k} of {}: checksum {on_wire:04x}, should be {from_scratch:04x}",
                payload.len().div_ceil(mss)
            ));
        }
        n += 1;
    }
    Ok(n)
}

pub(crate) fn capture_verify(dev: &str) -> Result<()> {
    use std::sync::atomic::Ordering;
    use wanlb::io::{iface, packet_socket::PacketSocket};
    let index = iface::find(dev)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no interface {dev}"))?
        .index;
    let stop = stop_flag()?;
    let socket = PacketSocket::open_capture(index).map_err(|e| format!("capture on {dev}: {e}"))?;
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 70_000];
    let mut t = Tally::default();
    let mut poller = wanlb::io::Poller::new(&[socket.raw_fd()]);
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= vnet::LEN {
                let h = VnetHeader::read(buf[..vnet::LEN].try_into().expect("10 bytes"));
                verify_frame(&h, &buf[vnet::LEN..n], &mut t);
            }
        }
    }
    println!(
        "checked {} complete {} partial {} gso {} segments {} bad {} fragments {}",
        t.complete + t.partial,
        t.complete,
        t.partial,
        t.gso,
        t.segments,
        t.bad.len(),
        t.fragments
    );
    for b in t.bad.iter().take(10) {
        println!("bad: {b}");
    }
    Ok(())
}
