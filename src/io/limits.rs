//! The process's own resource limits.

use std::io;

/// The most open files wanlb asks for. It needs a few dozen descriptors (sockets per worker
/// and uplink, the TUN queues, the fast path's maps, at most 64 control port connections)
/// and a few more for each `ip` or `nft` it runs; the rest is headroom. The programs it runs
/// inherit the limit, and some close or allocate by it, so it stays far below a hard limit
/// of a million or more.
pub const MAX_OPEN_FILES: u64 = 65536;

/// Raises the soft limit on open files to the hard limit, at most [`MAX_OPEN_FILES`], so
/// that a crowd of connections or a slow hook cannot leave wanlb without the descriptors
/// its own `ip` and `nft` need (the undo at stop among them). Returns the soft limit before
/// and after; a soft limit already as high is left alone.
pub fn raise_open_files() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, into the one on our stack that we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    // RLIM_INFINITY is the largest value: min() caps it too
    let wanted = limit.rlim_max.min(MAX_OPEN_FILES);
    if wanted <= before {
        return Ok((before, before));
    }
    limit.rlim_cur = wanted;
    // SAFETY: setrlimit reads one rlimit, the one on our stack that we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((before, wanted))
}
