//! Multi-queue TUN device with the virtio-net header and offloads, via the TUN ioctls.
//!
//! tun-rs was the first choice, but its offload mode splits GSO packets and coalesces GRO in
//! userspace; wanlb wants the opposite: super-packets passed on whole with their header.
//! The ioctls are few, so they live here.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::fd::{check, own, read, set_nonblocking, write};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// One queue of the TUN device; each worker owns one.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
}

fn ifreq(name: &str, flags: libc::c_short) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be 1 to 15 bytes",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    Ok(req)
}

/// Opens `queues` queues of the TUN device `name` (created if absent, gone when the last
/// queue closes). Returns the queues and whether UDP segmentation offload was accepted.
pub fn open(name: &str, queues: usize) -> io::Result<(Vec<TunQueue>, bool)> {
    let path = c"/dev/net/tun";
    let mut out = Vec::with_capacity(queues);
    let mut uso = false;
    for i in 0..queues {
        let fd = open_dev(path)?;
        let mut req = ifreq(name, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE)?;
        // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives on our stack.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) })?;
        if i == 0 {
            uso = set_offload(&fd)?;
        }
        set_nonblocking(&fd)?;
        out.push(TunQueue { fd });
    }
    Ok((out, uso))
}

fn open_dev(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string.
    own(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

/// Checksum and TCP segmentation offload, plus UDP segmentation where the kernel has it.
fn set_offload(fd: &OwnedFd) -> io::Result<bool> {
    let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD,
            base | TUN_F_USO4 | TUN_F_USO6,
        )
    })
    .is_ok()
    {
        return Ok(true);
    }
    // SAFETY: as above.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, base) })?;
    Ok(false)
}

impl TunQueue {
    /// Reads one packet (virtio-net header first). `WouldBlock` when the queue is empty.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(&self.fd, buf)
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        write(&self.fd, buf)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
