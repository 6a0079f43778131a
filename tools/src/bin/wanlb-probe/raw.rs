//! Packets made by hand on raw sockets: what a forger sends (echo replies to keep a dead line
//! "up", an ICMP error quoting someone else's flow), and what a host sees of the echo requests
//! that reach it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use wanlb::engine::wire;
use wanlb_testkit::Ipv4Packet;

use super::Result;

/// A raw IPv4 socket: what is sent on it is a whole IP packet, header included (IPPROTO_RAW),
/// and it receives a copy of every packet of `proto` that reaches this host.
struct RawIp {
    fd: OwnedFd,
}

impl RawIp {
    fn open(proto: libc::c_int) -> Result<RawIp> {
        // SAFETY: socket() with constant arguments; the result is checked, then owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a socket just made and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RawIp { fd })
    }

    /// Sends `packet`, a whole IPv4 packet, towards its destination address.
    fn send(&self, packet: &[u8]) -> Result<()> {
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `packet` is valid for reads of its length and `sa` is a sockaddr_in whose
        // size is passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(format!(
                "send to {dst}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Receives one packet into `buf`, waiting at most `timeout`; `None` if none came.
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>> {
        let mut poller = wanlb::io::Poller::new(&[self.fd.as_raw_fd()]);
        poller
            .wait(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .map_err(|e| e.to_string())?;
        if !poller.is_ready(0) {
            return Ok(None);
        }
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        Ok(usize::try_from(n).ok())
    }
}

/// Sends echo replies to `to`, as if from each of `from`, with each identifier of `ids` and
/// each sequence number of `seqs`, over and over for `seconds`; prints how many it sent. A
/// forger near an uplink (on the modem's segment, say) keeping a line "up" after it died.
pub fn forge_echo_replies(
    to: Ipv4Addr,
    from: &[Ipv4Addr],
    ids: &[u16],
    seqs: (u16, u16),
    seconds: f64,
) -> Result<()> {
    let raw = RawIp::open(libc::IPPROTO_RAW)?;
    let mut forged = Vec::new();
    for seq in seqs.0..=seqs.1 {
        for &id in ids {
            for &f in from {
                forged.push(Ipv4Packet::icmp_echo_reply(f, to, id, seq, b"wanlb-hc").build());
            }
        }
    }
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    println!("forging");
    while Instant::now() < until {
        for p in &forged {
            raw.send(p)?;
            sent += 1;
        }
    }
    println!("sent {sent}");
    Ok(())
}

/// Sends, from `from` to `to`, an ICMP port unreachable quoting a UDP datagram from
/// `quote_src` to `quote_dst` (its header and first 8 bytes, as a host's stack quotes one).
pub fn port_unreachable(
    from: Ipv4Addr,
    to: Ipv4Addr,
    quote_src: SocketAddrV4,
    quote_dst: SocketAddrV4,
) -> Result<()> {
    let quoted = Ipv4Packet::udp(
        *quote_src.ip(),
        *quote_dst.ip(),
        quote_src.port(),
        quote_dst.port(),
        b"quoted datagram",
    )
    .build();
    let error = Ipv4Packet::icmp(from, to, 3, 3, [0; 4], &quoted[..28]).build();
    RawIp::open(libc::IPPROTO_RAW)?.send(&error)?;
    println!("sent");
    Ok(())
}

/// Prints "SEEN SOURCE IDENTIFIER" for the first echo request that reaches this host within
/// `seconds` (the host's own stack still answers it).
pub fn icmp_seen(seconds: f64) -> Result<()> {
    let raw = RawIp::open(libc::IPPROTO_ICMP)?;
    println!("listening");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut buf = [0u8; 2048];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Some(n) = raw.recv(&mut buf, left)? else {
            continue;
        };
        let Ok(ip) = wire::Ipv4Packet::new_checked(&buf[..n]) else {
            continue;
        };
        let request = wire::IcmpMessage::new_checked(ip.payload())
            .ok()
            .filter(|m| m.msg_type() == wire::icmp::ECHO_REQUEST);
        if let Some(request) = request {
            let src = Ipv4Addr::from(ip.src_addr());
            println!("SEEN {src} {}", request.echo_ident());
            return Ok(());
        }
    }
    Err(format!("no echo request in {seconds} s"))
}
