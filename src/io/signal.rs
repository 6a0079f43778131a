//! SIGINT, SIGTERM and SIGHUP (stop) and SIGUSR1 (report status): blocked in every thread and
//! waited for by one, so no handler runs in an arbitrary thread's context, and none of them
//! ends the process before it has removed what it added.

use std::io;

fn control_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR1);
    }
    set
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in the calling thread and every thread it starts
/// afterwards.
pub fn block_control_signals() -> io::Result<()> {
    let set = control_signals();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(())
    }
}

/// Waits for SIGINT, SIGTERM, SIGHUP or SIGUSR1 (which must be blocked) and returns its number.
pub fn wait_for_control_signal() -> io::Result<i32> {
    let set = control_signals();
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

/// Makes a panic in any thread stop the whole gateway the way SIGTERM does, once the panic is
/// reported: a worker or monitor that died alone would leave wanlb half alive (a dead monitor
/// freezes every line's health, a dead worker black-holes its share of the LAN) with nothing
/// to restart it. The stop removes what wanlb added, then it exits with an error, which makes
/// systemd start it again.
pub fn stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            "a thread panicked: stopping"
        );
        raise_in_process(libc::SIGTERM);
    }));
}
