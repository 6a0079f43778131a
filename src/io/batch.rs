//! Batched datagram I/O (sendmmsg, recvmmsg) on connected or bound UDP sockets, for the
//! traffic generator: one syscall moves many packets.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, RawFd};

use super::fd::check;

/// Most datagrams one call sends.
pub const MAX_BATCH: usize = 64;

/// One sendmmsg: `payloads[i]` goes to `names[i]`, or, when `names` is empty, to the socket's
/// connected peer (or bound device). Sends at most [`MAX_BATCH`]; returns how many the kernel
/// took.
pub(crate) fn send_batch(
    fd: RawFd,
    payloads: &[&[u8]],
    names: &[SocketAddrV4],
) -> io::Result<usize> {
    // SAFETY: sockaddr_in is plain old data; all-zero is valid.
    let mut addrs: [libc::sockaddr_in; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (a, &d) in addrs.iter_mut().zip(names) {
        *a = sockaddr(d);
    }
    send_each(fd, payloads, |i| names.get(i).map(|_| &addrs[i]))
}

/// One sendmmsg on a packet socket, every packet to `link` (its device and protocol), for a
/// socket bound to no protocol. Sends at most [`MAX_BATCH`]; returns how many the kernel took.
pub(crate) fn send_batch_via(
    fd: RawFd,
    payloads: &[&[u8]],
    link: &libc::sockaddr_ll,
) -> io::Result<usize> {
    send_each(fd, payloads, |_| Some(link))
}

/// One sendmmsg of the first [`MAX_BATCH`] of `payloads`: payload `i` to the address
/// `name(i)`, or where that is `None` to the socket's connected peer (or bound device).
fn send_each<'a, A: 'a>(
    fd: RawFd,
    payloads: &[&[u8]],
    name: impl Fn(usize) -> Option<&'a A>,
) -> io::Result<usize> {
    let n = payloads.len().min(MAX_BATCH);
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid.
    let (mut iov, mut msgs): ([libc::iovec; MAX_BATCH], [libc::mmsghdr; MAX_BATCH]) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: payloads[i].as_ptr() as *mut _,
            iov_len: payloads[i].len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if let Some(addr) = name(i) {
            msgs[i].msg_hdr.msg_name = (addr as *const A).cast_mut().cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<A>() as libc::socklen_t;
        }
    }
    // SAFETY: the first `n` headers point to live iovecs (each describing a live payload) and,
    // where named, to live addresses of their stated size; the kernel only reads them, and all
    // outlive the call.
    let sent = check(unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) })?;
    Ok(sent as usize)
}

/// Sends up to `count` (at most [`MAX_BATCH`]) copies of `payload` on the connected socket
/// `sock`; returns how many the kernel took.
pub fn send_copies(sock: &impl AsRawFd, payload: &[u8], count: usize) -> io::Result<usize> {
    let copies = [payload; MAX_BATCH];
    send_batch(sock.as_raw_fd(), &copies[..count.min(MAX_BATCH)], &[])
}

/// Sends `payload` once to each of `dsts` (at most [`MAX_BATCH`]) from the unconnected socket
/// `sock`; returns how many the kernel took.
pub fn send_to_each(
    sock: &impl AsRawFd,
    payload: &[u8],
    dsts: &[SocketAddrV4],
) -> io::Result<usize> {
    let copies = [payload; MAX_BATCH];
    send_batch(sock.as_raw_fd(), &copies[..dsts.len().min(MAX_BATCH)], dsts)
}

/// Receives up to `bufs.len()` datagrams without blocking; returns how many arrived (0 when
/// none was queued).
pub fn recv_many(sock: &impl AsRawFd, bufs: &mut [[u8; 2048]]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(&mut iovs) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each header points to one iovec describing one live buffer of `bufs`; all
    // outlive the call.
    let ret = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    match check(ret) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Makes the kernel cut each datagram sent on `sock` into `segment`-byte datagrams as late as
/// possible (UDP GSO, UDP_SEGMENT): one send becomes one GSO super-packet on the way out.
pub fn set_udp_segment(sock: &impl AsRawFd, segment: u16) -> io::Result<()> {
    const UDP_SEGMENT: libc::c_int = 103;
    let value = libc::c_int::from(segment);
    // SAFETY: `value` is a live c_int and its size is passed.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_UDP,
            UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A raw IPv4 socket for UDP: the caller writes the UDP header and its checksum, the kernel
/// the IP header. Datagrams sent this way carry a complete checksum computed in software, as
/// a NIC that offloads nothing would deliver them.
#[derive(Debug)]
pub struct RawUdp {
    fd: std::os::fd::OwnedFd,
}

impl RawUdp {
    pub fn open() -> io::Result<RawUdp> {
        // SAFETY: socket() with constant arguments; the result is checked and owned.
        let fd = super::fd::own(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP)
        })?;
        Ok(RawUdp { fd })
    }

    /// Sends `udp` (a UDP header and payload) to `dst`'s address.
    pub fn send_to(&self, udp: &[u8], dst: SocketAddrV4) -> io::Result<usize> {
        let sa = sockaddr(dst);
        // SAFETY: `udp` is valid for reads of its length and `sa` is a sockaddr_in whose
        // size is passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                udp.as_ptr().cast(),
                udp.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// A raw IPv4 socket that sends whole packets, IP header included (IPPROTO_RAW), from any
/// source address: the stress generator's floods with made-up sources.
#[derive(Debug)]
pub struct RawIp {
    fd: std::os::fd::OwnedFd,
}

impl RawIp {
    pub fn open() -> io::Result<RawIp> {
        // SAFETY: socket() with constant arguments; the result is checked and owned.
        let fd = super::fd::own(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)
        })?;
        Ok(RawIp { fd })
    }

    /// One sendmmsg: `packets[i]` (a whole IPv4 packet) towards `dsts[i]`, which the kernel
    /// routes it by (the port is not used). Sends at most [`MAX_BATCH`], and no more packets
    /// than addresses; returns how many the kernel took.
    pub fn send_each(&self, packets: &[&[u8]], dsts: &[SocketAddrV4]) -> io::Result<usize> {
        let n = packets.len().min(dsts.len());
        send_batch(self.fd.as_raw_fd(), &packets[..n], &dsts[..n])
    }
}
