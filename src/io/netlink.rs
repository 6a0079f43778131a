//! Link state from the kernel: a netlink socket subscribed to link changes, which also asks
//! for the current state of every link once, so carrier is known from the start and every
//! change is heard at once (no polling).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::fd::{check, own, read, write};

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HEADER: usize = 16;
const IFINFOMSG: usize = 16;
const IFF_UP: u32 = 0x1;
/// Operationally up: carrier present (RFC 2863 "up").
const IFF_RUNNING: u32 = 0x40;

#[derive(Debug)]
pub struct LinkWatch {
    fd: OwnedFd,
}

/// One link's state in a netlink message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    /// Administratively up with carrier.
    pub carrier: bool,
}

impl LinkWatch {
    /// Subscribes to link changes and asks for every link's state; both arrive through
    /// [`LinkWatch::read`].
    pub fn open() -> io::Result<LinkWatch> {
        // SAFETY: socket() with integer arguments.
        let fd = own(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: sockaddr_nl is plain old data; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: the address points to a live sockaddr_nl and its size is passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        let watch = LinkWatch { fd };
        watch.ask_all()?;
        Ok(watch)
    }

    /// Asks for every link's state; the answers arrive like changes.
    fn ask_all(&self) -> io::Result<()> {
        let mut dump = [0u8; NLMSG_HEADER + IFINFOMSG];
        let len = dump.len() as u32;
        dump[0..4].copy_from_slice(&len.to_ne_bytes());
        dump[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        dump[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        dump[NLMSG_HEADER] = libc::AF_UNSPEC as u8;
        write(&self.fd, &dump)?;
        Ok(())
    }

    /// Hands every link state waiting on the socket to `f`. When the kernel had more
    /// changes than the socket could queue (ENOBUFS: many links changing at once), some were
    /// lost: every link's state is asked for again.
    pub fn read(&self, mut f: impl FnMut(LinkState)) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read(&self.fd, &mut buf) {
                Ok(n) => parse(&buf[..n], &mut f),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("link changes overflowed the netlink socket; asking again");
                    if let Err(e) = self.ask_all() {
                        tracing::warn!(error = %e, "cannot ask for the links' state again");
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The link states in a buffer of netlink messages; anything malformed ends the walk.
pub fn parse(mut buf: &[u8], f: &mut impl FnMut(LinkState)) {
    while buf.len() >= NLMSG_HEADER {
        let Some(len) = u32_at(buf, 0).map(|l| l as usize) else {
            return;
        };
        if len < NLMSG_HEADER || len > buf.len() {
            return;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let msg = &buf[NLMSG_HEADER..len];
        if kind == RTM_NEWLINK
            && let (Some(index), Some(flags)) = (u32_at(msg, 4), u32_at(msg, 8))
        {
            f(LinkState {
                ifindex: index,
                carrier: flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING,
            });
        }
        // messages are 4-byte aligned
        let next = len.div_ceil(4) * 4;
        buf = buf.get(next..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, index: u32, flags: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HEADER + IFINFOMSG + 6];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[NLMSG_HEADER + 4..NLMSG_HEADER + 8].copy_from_slice(&index.to_ne_bytes());
        m[NLMSG_HEADER + 8..NLMSG_HEADER + 12].copy_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&[0, 0]); // padding to 4 bytes
        m
    }

    #[test]
    fn link_messages_give_carrier_and_nothing_else_counts() {
        let mut buf = message(RTM_NEWLINK, 3, IFF_UP | IFF_RUNNING);
        buf.extend(message(RTM_NEWLINK, 4, IFF_UP));
        buf.extend(message(20, 5, IFF_UP | IFF_RUNNING)); // an address message
        buf.extend(message(RTM_NEWLINK, 6, IFF_RUNNING));
        buf.extend([1, 2, 3]); // truncated garbage
        let mut seen = vec![];
        parse(&buf, &mut |s| seen.push((s.ifindex, s.carrier)));
        assert_eq!(seen, [(3, true), (4, false), (6, false)]);
        // a length that runs past the end stops the walk without a panic
        let mut bad = message(RTM_NEWLINK, 7, 0);
        bad[0] = 200;
        parse(&bad, &mut |_| panic!("nothing to report"));
    }
}
