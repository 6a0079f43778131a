//! SIGINT and SIGTERM as a stop flag: both are blocked in every thread and one thread waits
//! for them, so no handler runs in an arbitrary thread's context.

use std::io;

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    set
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(())
    }
}

/// Waits for SIGINT or SIGTERM (which must be blocked) and returns its number.
pub fn wait_for_stop_signal() -> io::Result<i32> {
    let set = stop_signals();
    let mut sig: libc::c_int = 0;
    // SAFETY: both pointers refer to live values.
    let ret = unsafe { libc::sigwait(&set, &mut sig) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(sig)
    }
}

/// Sends `sig` to this process (used to wake the signal thread when stopping for another
/// reason).
pub fn raise_in_process(sig: i32) {
    // SAFETY: kill() on our own pid with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), sig);
    }
}
