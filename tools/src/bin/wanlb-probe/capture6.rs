//! `tcp6-watch`: the IPv6 TCP segments crossing a link, one line each, the checksum of each
//! arriving one checked from scratch (with the IPv6 pseudo-header).

use super::*;

/// One IPv6 TCP segment of a captured frame (`vnet` header, then Ethernet), as a line:
/// `tcp6 SRC SPORT DST DPORT flags=FF seq=N ack=N csum=ok|bad|partial`; `None` for anything
/// else. A segment the sender's stack left for the device to complete (partial) cannot be
/// judged here.
pub(crate) fn describe_tcp6(h: &VnetHeader, frame: &[u8]) -> Option<String> {
    use wanlb_testkit::checksum::{fold, sum};
    const TCP_AT: usize = 14 + 40;
    if frame.len() < TCP_AT + 20 || frame[12..14] != [0x86, 0xdd] || frame[14 + 6] != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let l4 = frame.get(TCP_AT..TCP_AT + payload_len)?;
    let addr = |at: usize| <[u8; 16]>::try_from(&frame[at..at + 16]).map(Ipv6Addr::from);
    let (src, dst) = (addr(22).ok()?, addr(38).ok()?);
    let word = |at: usize| u32::from_be_bytes([l4[at], l4[at + 1], l4[at + 2], l4[at + 3]]);
    let csum = if h.needs_csum() {
        "partial"
    } else {
        let pseudo = sum(&frame[22..54], 0) + l4.len() as u64 + u64::from(wire::PROTO_TCP);
        if fold(sum(l4, pseudo)) == 0xffff {
            "ok"
        } else {
            "bad"
        }
    };
    Some(format!(
        "tcp6 {src} {} {dst} {} flags={:02x} seq={} ack={} csum={csum}",
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
        l4[13],
        word(4),
        word(8),
    ))
}

pub(crate) fn tcp6_watch(dev: &str) -> Result<()> {
    use std::sync::atomic::Ordering;
    use wanlb::io::iface;
    use wanlb::io::packet_socket::{self, PacketSocket};
    let index = iface::find(dev)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no interface {dev}"))?
        .index;
    let stop = stop_flag()?;
    let socket = PacketSocket::open_capture_of(index, packet_socket::ETH_P_IPV6)
        .map_err(|e| format!("capture on {dev}: {e}"))?;
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 70_000];
    let mut poller = wanlb::io::Poller::new(&[socket.raw_fd()]);
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        while let Ok(n) = socket.recv(&mut buf) {
            if n < vnet::LEN {
                continue;
            }
            let h = VnetHeader::read(buf[..vnet::LEN].try_into().expect("10 bytes"));
            if let Some(line) = describe_tcp6(&h, &buf[vnet::LEN..n]) {
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
        }
    }
    Ok(())
}
