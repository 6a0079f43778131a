//! Batched datagram I/O (sendmmsg, recvmmsg) on connected or bound UDP sockets, for the
//! traffic generator: one syscall moves many packets.

use std::io;
use std::os::fd::AsRawFd;

use super::fd::check;

/// Sends `count` copies of `payload` on the connected socket `sock`; returns how many the
/// kernel took.
pub fn send_copies(sock: &impl AsRawFd, payload: &[u8], count: usize) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..count).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points to `iov`, which points to `payload`; both outlive the call,
    // and the kernel only reads them.
    let n = check(unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    })?;
    Ok(n as usize)
}

/// Sends `payload` once to each of `dsts` from the unconnected socket `sock`; returns how
/// many the kernel took.
pub fn send_to_each(
    sock: &impl AsRawFd,
    payload: &[u8],
    dsts: &[std::net::SocketAddrV4],
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    let mut names: Vec<libc::sockaddr_in> = dsts
        .iter()
        .map(|d| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: d.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*d.ip()).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..dsts.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, name) in msgs.iter_mut().zip(&mut names) {
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each header points to a live sockaddr_in in `names` and to `iov`, which points
    // to `payload`; all outlive the call and the kernel only reads them.
    let n = check(unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    })?;
    Ok(n as usize)
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
