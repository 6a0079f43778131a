//! The TUN device's steering program (`ebpf/steering.c`, compiled into the committed
//! `ebpf/steering.o`): each packet the kernel routes to the device goes to the queue of the
//! CPU it is on, so the worker pinned there takes it (see `io/cpu.rs`).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::programs::SocketFilter;
use aya::{Ebpf, include_bytes_aligned};

use super::fd::check;
use super::tun::TunQueue;

static OBJECT: &[u8] = include_bytes_aligned!("../../ebpf/steering.o");
const PROGRAM: &str = "wanlb_queue_of_cpu";
/// _IOR('T', 224, int)
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

fn error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// The object with its program loaded into the kernel.
fn load() -> io::Result<Ebpf> {
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| error("loading ebpf/steering.o", e))?;
    program(&mut ebpf)?.load().map_err(|e| error(PROGRAM, e))?;
    Ok(ebpf)
}

fn program(ebpf: &mut Ebpf) -> io::Result<&mut SocketFilter> {
    ebpf.program_mut(PROGRAM)
        .ok_or_else(|| io::Error::other(format!("{PROGRAM} is not in ebpf/steering.o")))?
        .try_into()
        .map_err(|e| error(PROGRAM, e))
}

/// Loads the program and gives it to the TUN device `queue` belongs to (the device keeps it
/// until it goes, or until it is replaced).
pub fn steer_by_cpu(queue: &TunQueue) -> io::Result<()> {
    let mut ebpf = load()?;
    let fd = program(&mut ebpf)?.fd().map_err(|e| error(PROGRAM, e))?;
    let raw: libc::c_int = fd.as_fd().as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads one int (the program's descriptor) from the pointer,
    // which points at `raw` on our stack; the device takes its own reference to the program.
    check(unsafe { libc::ioctl(queue.raw_fd(), TUNSETSTEERINGEBPF, &raw) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::programs::{TestRun, TestRunOptions};

    /// The program, run by the kernel on each CPU in turn (BPF_PROG_TEST_RUN runs it on the
    /// caller's), names that CPU: the device takes that queue (modulo their number).
    #[test]
    fn a_packet_goes_to_the_queue_of_its_cpu() {
        let mut ebpf = load().expect("loading the steering program (needs root)");
        let program = program(&mut ebpf).expect("program");
        let packet = [0u8; 64];
        for cpu in crate::io::cpu::allowed().expect("affinity") {
            let queue = std::thread::scope(|s| {
                s.spawn(|| {
                    crate::io::cpu::pin_current_thread(&[cpu]).expect("pin");
                    let mut options = TestRunOptions::new();
                    options.data_in = Some(&packet);
                    program.test_run(options).expect("test run").return_value
                })
                .join()
                .expect("thread")
            });
            assert_eq!(queue as usize, cpu);
        }
    }
}
