//! Which worker takes each packet (`ebpf/steering.c`, compiled into the committed
//! `ebpf/steering.o`): a flow goes to the worker of the CPU its first packet arrived on, and
//! stays with it. The same program serves the TUN device and each uplink's fanout group of
//! data sockets; the workers are pinned so (see `io/cpu.rs`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::programs::SocketFilter;
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};

use super::fd::check;
use super::tun::TunQueue;

static OBJECT: &[u8] = include_bytes_aligned!("../../ebpf/steering.o");
const PROGRAM: &str = "wanlb_worker_of_flow";
const MAP: &str = "wanlb_flow_workers";
/// Flows whose worker is remembered: only those on the userspace path (the fast path's flows
/// no longer reach the TUN device or the packet sockets). A flow forgotten, the least
/// recently used when the map is full, is steered anew by the CPU its next packet is on.
pub const FLOWS_REMEMBERED: u32 = 65536;
/// _IOR('T', 224, int)
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

fn error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// The steering program loaded into the kernel, with its map of flows.
#[derive(Debug)]
pub struct FlowSteering {
    ebpf: Ebpf,
}

impl FlowSteering {
    /// Loads the program, its map holding at most `flows` flows.
    pub fn load(flows: u32) -> io::Result<FlowSteering> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP, flows)
            .load(OBJECT)
            .map_err(|e| error("loading ebpf/steering.o", e))?;
        program(&mut ebpf)?.load().map_err(|e| error(PROGRAM, e))?;
        Ok(FlowSteering { ebpf })
    }

    /// The program's descriptor, valid while `self` lives: what a fanout group of packet
    /// sockets is given (io/packet_socket.rs).
    pub fn program_fd(&mut self) -> io::Result<RawFd> {
        let fd = program(&mut self.ebpf)?
            .fd()
            .map_err(|e| error(PROGRAM, e))?;
        Ok(fd.as_fd().as_raw_fd())
    }

    /// Gives the program to the TUN device `queue` belongs to (the device keeps it until it
    /// goes, or until it is replaced).
    pub fn steer_tun(&mut self, queue: &TunQueue) -> io::Result<()> {
        let raw: libc::c_int = self.program_fd()?;
        // SAFETY: TUNSETSTEERINGEBPF reads one int (the program's descriptor) from the
        // pointer, which points at `raw` on our stack; the device takes its own reference.
        check(unsafe { libc::ioctl(queue.raw_fd(), TUNSETSTEERINGEBPF, &raw) })?;
        Ok(())
    }
}

fn program(ebpf: &mut Ebpf) -> io::Result<&mut SocketFilter> {
    ebpf.program_mut(PROGRAM)
        .ok_or_else(|| io::Error::other(format!("{PROGRAM} is not in ebpf/steering.o")))?
        .try_into()
        .map_err(|e| error(PROGRAM, e))
}

#[cfg(test)]
#[path = "steering_tests.rs"]
mod tests;
