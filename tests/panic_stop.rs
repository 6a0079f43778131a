//! A panic in any thread of a running wanlb stops it as SIGTERM does (its clean-up runs,
//! then it exits with an error for systemd to restart it), instead of leaving it half alive.
//! No test harness: the harness's own threads would not block SIGTERM, and the raised signal
//! would end the process instead of reaching the waiting thread.

use std::time::Duration;

use wanlb::io::signal;

fn main() {
    signal::block_control_signals().expect("blocking the signals");
    signal::stop_on_panic();
    // if the panic never turns into a SIGTERM, fail rather than wait for ever
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("a_panicking_thread_stops_wanlb_as_sigterm_does ... FAILED: no SIGTERM");
        std::process::exit(1);
    });
    let worker = std::thread::Builder::new()
        .name("wanlb-worker-0".into())
        .spawn(|| panic!("a bug in a worker"))
        .unwrap();
    let sig = signal::wait_for_control_signal().expect("waiting for a signal");
    assert_eq!(sig, libc::SIGTERM);
    assert!(worker.join().is_err(), "the worker panicked");
    println!("test a_panicking_thread_stops_wanlb_as_sigterm_does ... ok");
}
