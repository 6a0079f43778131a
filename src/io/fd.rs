//! Owned file descriptors: read, write, poll, with errors as `io::Error`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns a -1 return into the errno it stands for.
pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Takes ownership of a descriptor a syscall just returned.
pub(crate) fn own(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: `fd` was just returned by a successful syscall and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, which is valid for writes.
    check_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub(crate) fn write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, which is valid for reads.
    check_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

pub(crate) fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` and the length passed is its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Several descriptors watched as one (an epoll instance, level-triggered): poll(2) reports
/// it readable while any of them is, so a caller that polls one descriptor per source can
/// take a source made of several.
#[derive(Debug)]
pub struct PollSet {
    fd: OwnedFd,
}

impl PollSet {
    pub fn new(fds: &[RawFd]) -> io::Result<PollSet> {
        // SAFETY: epoll_create1 with a flag only.
        let fd = own(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        for &watched in fds {
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: watched as u64,
            };
            // SAFETY: both descriptors are open, `event` is a live epoll_event the kernel
            // copies.
            check(unsafe {
                libc::epoll_ctl(fd.as_raw_fd(), libc::EPOLL_CTL_ADD, watched, &mut event)
            })?;
        }
        Ok(PollSet { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits for any of a fixed set of descriptors to become readable; allocates only once.
#[derive(Debug)]
pub struct Poller {
    fds: Vec<libc::pollfd>,
}

impl Poller {
    pub fn new(fds: &[RawFd]) -> Poller {
        Poller {
            fds: fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Waits until a descriptor is readable or `timeout_ms` passes (0: just look). An
    /// interrupted wait counts as a timeout, so callers re-check their stop flag.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        for p in &mut self.fds {
            p.revents = 0;
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        let ret = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Whether descriptor `i` (in the order given to `new`) was readable at the last wait.
    pub fn is_ready(&self, i: usize) -> bool {
        self.fds[i].revents & (libc::POLLIN | libc::POLLERR) != 0
    }
}

/// Takes an exclusive advisory lock on `file` without waiting; false if another process
/// holds it. The kernel releases it when the file closes or the process dies.
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor `file` owns, with integer flags.
    let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads, and one clock for the
/// whole machine, so times taken in different network namespaces compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
